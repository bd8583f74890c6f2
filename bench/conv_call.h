// One conv kernel call on random buffers, for the conv microbenchmarks: the slots of each
// direction (ops/op.h: forward {x, w, b?} -> {y}; backward data {dy, w} -> {dx}; backward weight
// {dy, x} -> {dw?, db?}), its planned workspace and a thread pool of EDGETRAIN_THREADS threads
// (default 2, the target's cores). Set kernel policies (tap pruning, Winograd) before building
// one: the workspace is sized here.
#pragma once

#include <cstdlib>
#include <new>
#include <random>
#include <vector>

#include "ops/conv2d.h"
#include "runtime/thread_pool.h"

namespace edgetrain::bench {

// 64-byte aligned, as the arena places every tensor (memory/arena.h), so that the kernels take
// the paths they take in training (the depthwise kernels' streaming stores need it).
template <class T>
struct Aligned64 {
  using value_type = T;
  Aligned64() = default;
  template <class U> Aligned64(const Aligned64<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{64})); }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t{64}); }
  template <class U> bool operator==(const Aligned64<U>&) const { return true; }
};
using Buffer = std::vector<float, Aligned64<float>>;

inline Buffer random_buffer(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  // 16 floats of slack: XNNPACK may read past the end of its input.
  Buffer v(static_cast<size_t>(n) + 16);
  for (float& x : v) x = dist(rng);
  return v;
}

inline int bench_threads() {
  const char* t = std::getenv("EDGETRAIN_THREADS");
  return t ? std::atoi(t) : 2;
}

class ConvCall {
 public:
  ConvCall(const Attrs& attrs, const Shape& xs, const Shape& ws, OpKind op)
      : attrs_(attrs), info_(op_info(op)), pool_(bench_threads()) {
    const Shape ys = conv2d_output_shape(xs, ws, attrs.conv).value();
    x_ = random_buffer(xs.numel(), 1), w_ = random_buffer(ws.numel(), 2), y_ = random_buffer(ys.numel(), 3);
    const Shape bias{ws[0]};
    if (op == OpKind::kConv2d) {
      in_ = {x_.data(), w_.data(), nullptr}, in_shape_ = {xs, ws, bias};
      out_ = {y_.data()}, out_shape_ = {ys};
    } else if (op == OpKind::kConv2dBackwardData) {
      in_ = {y_.data(), w_.data()}, in_shape_ = {ys, ws};
      out_ = {x_.data()}, out_shape_ = {xs};
    } else {
      in_ = {y_.data(), x_.data()}, in_shape_ = {ys, xs};
      out_ = {w_.data(), nullptr}, out_shape_ = {ws, bias};
    }
    const size_t bytes = info_.workspace(attrs_, in_shape_.data(), static_cast<int>(in_.size()), out_shape_.data(),
                                         static_cast<int>(out_.size()));
    workspace_.resize(bytes / sizeof(float) + 1);
    call_.attrs = &attrs_;
    call_.in = in_.data(), call_.in_shape = in_shape_.data(), call_.n_in = static_cast<int>(in_.size());
    call_.out = out_.data(), call_.out_shape = out_shape_.data(), call_.n_out = static_cast<int>(out_.size());
    call_.workspace = workspace_.data(), call_.workspace_bytes = bytes;
    call_.parallel = pool_.parallel();
  }
  ConvCall(const ConvCall&) = delete;
  ConvCall& operator=(const ConvCall&) = delete;

  void run() { info_.fast(call_); }

 private:
  Attrs attrs_;
  const OpInfo& info_;
  ThreadPool pool_;
  Buffer x_, w_, y_, workspace_;
  std::vector<void*> in_, out_;
  std::vector<Shape> in_shape_, out_shape_;
  KernelCall call_;
};

}  // namespace edgetrain::bench
