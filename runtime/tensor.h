// Shapes, element types and non-owning tensor views. Activations are NHWC float32; conv weights
// are OHWI ([Cout][kh][kw][Cin/groups]); linear weights are [out][in] as in torch.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>

namespace edgetrain {

enum class DType : uint8_t {
  kF32,  // activations, parameters, gradients
  kI32,  // class labels
  kU64,  // packed bit masks (sparse bitmap storage)
};

constexpr size_t dtype_size(DType t) { return t == DType::kU64 ? 8 : 4; }
const char* dtype_name(DType t);

// A static shape of rank 0..4. Rank-4 shapes are NHWC (or OHWI for conv weights).
struct Shape {
  static constexpr int kMaxRank = 4;
  int rank = 0;
  std::array<int64_t, kMaxRank> dims{};

  Shape() = default;
  Shape(std::initializer_list<int64_t> d) {
    for (int64_t v : d) dims[rank++] = v;
  }
  int64_t operator[](int i) const { return dims[i]; }
  int64_t& operator[](int i) { return dims[i]; }
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < rank; ++i) n *= dims[i];
    return n;
  }
  // NHWC accessors for rank-4 shapes.
  int64_t n() const { return dims[0]; }
  int64_t h() const { return dims[1]; }
  int64_t w() const { return dims[2]; }
  int64_t c() const { return dims[3]; }
  bool operator==(const Shape& o) const {
    if (rank != o.rank) return false;
    for (int i = 0; i < rank; ++i)
      if (dims[i] != o.dims[i]) return false;
    return true;
  }
  bool operator!=(const Shape& o) const { return !(*this == o); }
  std::string to_string() const;  // "[8, 32, 32, 3]"
};

// A non-owning view of float32 data with its shape.
struct TensorView {
  float* data = nullptr;
  Shape shape;
  int64_t numel() const { return shape.numel(); }
};

}  // namespace edgetrain
