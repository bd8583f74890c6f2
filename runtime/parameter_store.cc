#include "runtime/parameter_store.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>

namespace edgetrain {

Result<ParameterStore> ParameterStore::create(const std::vector<ParamSpec>& specs) {
  ParameterStore store;
  store.specs_ = specs;
  int64_t offset = 0;
  for (const ParamSpec& s : specs) {
    if (s.shape.numel() <= 0) return invalid_argument("parameter '" + s.name + "' has an empty shape " + s.shape.to_string());
    store.offsets_.push_back(offset);
    offset += (s.shape.numel() + 15) / 16 * 16;
  }
  store.total_floats_ = offset;
  size_t bytes = static_cast<size_t>(std::max<int64_t>(offset, 16)) * sizeof(float);
  void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  if (p == nullptr) return out_of_memory("cannot allocate " + std::to_string(bytes) + " bytes of parameters");
  std::memset(p, 0, bytes);
  store.base_ = static_cast<float*>(p);
  store.storage_ = std::unique_ptr<float[], void (*)(float*)>(store.base_, [](float* q) { std::free(q); });
  return store;
}

int ParameterStore::find(const std::string& name) const {
  for (size_t i = 0; i < specs_.size(); ++i)
    if (specs_[i].name == name) return static_cast<int>(i);
  return -1;
}

void ParameterStore::initialize(uint64_t seed) {
  Rng rng(seed);
  for (int i = 0; i < size(); ++i) {
    const ParamSpec& s = specs_[static_cast<size_t>(i)];
    float* d = data(i);
    int64_t n = s.shape.numel();
    switch (s.init) {
      case ParamInit::kZeros:
        std::fill(d, d + n, 0.0f);
        break;
      case ParamInit::kOnes:
        std::fill(d, d + n, 1.0f);
        break;
      case ParamInit::kKaimingNormalFanOut: {
        // torch: fan_out = out_channels * kh * kw (per group size is ignored for fan_out).
        int64_t fan_out = s.shape[0] * s.shape[1] * s.shape[2];
        double std_dev = std::sqrt(2.0 / static_cast<double>(fan_out));
        for (int64_t k = 0; k < n; ++k) d[k] = static_cast<float>(rng.normal() * std_dev);
        break;
      }
      case ParamInit::kNormal001:
        for (int64_t k = 0; k < n; ++k) d[k] = static_cast<float>(rng.normal() * 0.01);
        break;
      case ParamInit::kUniformFanIn: {
        double bound = 1.0 / std::sqrt(static_cast<double>(std::max<int64_t>(1, s.fan_in)));
        for (int64_t k = 0; k < n; ++k) d[k] = static_cast<float>((rng.uniform() * 2 - 1) * bound);
        break;
      }
    }
  }
}

static uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

Rng::Rng(uint64_t seed) {
  for (uint64_t& s : s_) s = splitmix64(seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t Rng::next_u64() {
  uint64_t result = rotl(s_[1] * 5, 7) * 9;
  uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() { return static_cast<double>(next_u64() >> 11) * (1.0 / 9007199254740992.0); }

double Rng::normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  double u1 = uniform(), u2 = uniform();
  if (u1 < 1e-300) u1 = 1e-300;
  double r = std::sqrt(-2.0 * std::log(u1));
  spare_ = r * std::sin(2 * M_PI * u2);
  has_spare_ = true;
  return r * std::cos(2 * M_PI * u2);
}

uint64_t Rng::below(uint64_t n) { return n == 0 ? 0 : next_u64() % n; }

}  // namespace edgetrain
