// Channel-slice vectors for the hand-written kernels over NHWC's contiguous channels: GCC vector
// extensions of 16 floats (one AVX-512 register, or two AVX2 ones) and 8 floats (a tail of 8),
// with plain floats for what remains. Internal to ops/.
#pragma once

#include <cstdint>
#include <cstring>

namespace edgetrain::simd {

typedef float V16 __attribute__((vector_size(64)));
typedef float V8 __attribute__((vector_size(32)));

template <class V> inline V load(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <> inline float load<float>(const float* p) { return *p; }
template <class V> inline void store(float* p, const V& v) { std::memcpy(p, &v, sizeof v); }

// f.operator()<V>(c) over slices covering [0, channels): 16 wide, then 8, then single channels.
template <class F>
inline void for_slices(int64_t channels, F&& f) {
  int64_t c = 0;
  for (; c + 16 <= channels; c += 16) f.template operator()<V16>(c);
  for (; c + 8 <= channels; c += 8) f.template operator()<V8>(c);
  for (; c < channels; ++c) f.template operator()<float>(c);
}

}  // namespace edgetrain::simd
