// Parameters and buffers (batch-norm running statistics) of one model in one flat, 64-byte
// aligned block with a typed view per tensor. Shared by the training and evaluation programs of
// the same model, so weights never get copied between them.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/graph.h"
#include "runtime/status.h"

namespace edgetrain {

class ParameterStore {
 public:
  // Lays out every ParamSpec of the graph; contents start at zero (call initialize()).
  static Result<ParameterStore> create(const std::vector<ParamSpec>& specs);

  ParameterStore() = default;
  ParameterStore(ParameterStore&&) noexcept = default;
  ParameterStore& operator=(ParameterStore&&) noexcept = default;

  // torchvision's initialisation for each tensor, from a seeded generator (deterministic).
  void initialize(uint64_t seed);

  int size() const { return static_cast<int>(specs_.size()); }
  const ParamSpec& spec(int i) const { return specs_[static_cast<size_t>(i)]; }
  const std::vector<ParamSpec>& specs() const { return specs_; }
  float* data(int i) { return base_ + offsets_[static_cast<size_t>(i)]; }
  const float* data(int i) const { return base_ + offsets_[static_cast<size_t>(i)]; }
  int find(const std::string& name) const;  // -1 when absent
  int64_t total_floats() const { return total_floats_; }
  size_t bytes() const { return static_cast<size_t>(total_floats_) * sizeof(float); }

 private:
  std::vector<ParamSpec> specs_;
  std::vector<int64_t> offsets_;  // in floats, each 16-float aligned
  int64_t total_floats_ = 0;
  std::unique_ptr<float[], void (*)(float*)> storage_{nullptr, [](float*) {}};
  float* base_ = nullptr;
};

// Deterministic random numbers for initialisation, shuffling and noise (xoshiro256**).
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next_u64();
  double uniform();                      // [0, 1)
  double normal();                       // N(0, 1), Box-Muller
  uint64_t below(uint64_t n);            // [0, n)
 private:
  uint64_t s_[4];
  bool has_spare_ = false;
  double spare_ = 0;
};

}  // namespace edgetrain
