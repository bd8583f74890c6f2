// From stored images to a training batch, and the domain-shift generator.
//
// fill_batch turns dataset images into one normalised NHWC float batch in a buffer the caller
// owns (the executor's input tensor): per pixel, in this order,
//   x in [0,1]  ->  zero-pad `pad` pixels each side  ->  [augment: random crop with zero padding,
//   random horizontal flip]  ->  replicate gray to 3 channels  ->  (x - mean[c]) / std[c].
// Padding happens before normalisation (padded pixels become -mean/std), as in torchvision's
// Pad + Normalize and in shared/peers/torch_fmnist_retrain.py.
#pragma once

#include <array>
#include <cstdint>

#include "data/dataset.h"
#include "runtime/status.h"
#include "runtime/tensor.h"

namespace edgetrain {

struct Preprocess {
  int pad = 0;           // zero pixels added on each side (28 -> 32: pad 2)
  int out_channels = 3;  // 1 or 3; a 1-channel dataset is replicated to 3
  std::array<float, 3> mean{0.f, 0.f, 0.f};  // per output channel, in [0,1] units
  std::array<float, 3> std{1.f, 1.f, 1.f};
  // Augmentation, drawn per sample from (aug_seed, position in the batch).
  bool random_flip = false;  // horizontal, probability 1/2
  int random_crop_pad = 0;   // torchvision RandomCrop(size, padding=this): shift by -p..p, zero fill
};

// zero-pad 2 (28x28 -> 32x32), 3 channels, (x - 0.2860) / 0.3530: the peer's pipeline.
Preprocess fashion_mnist_preprocess();
// 3 channels, ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225), no padding.
Preprocess imagenet_preprocess();

// Checks that `p` fits `d` (channels 1 or 3 in and out, positive std, non-negative paddings).
// Call once before the training loop; fill_batch only re-checks it as an invariant.
Status check_preprocess(const Dataset& d, const Preprocess& p);

// Size of one preprocessed image and of a batch: [batch, H + 2 pad, W + 2 pad, out_channels].
int64_t output_height(const Dataset& d, const Preprocess& p);
int64_t output_width(const Dataset& d, const Preprocess& p);
int64_t floats_per_image(const Dataset& d, const Preprocess& p);
Shape batch_shape(const Dataset& d, const Preprocess& p, int64_t batch);

// Writes images indices[0..count) of `d` into images_nhwc (count * floats_per_image floats) and
// their labels into labels (count int32; may be null). Allocates nothing. Indices must be valid
// and `p` must pass check_preprocess (internal invariants, checked). The augmentation of sample
// k depends only on (aug_seed, k): pass a different seed per step.
void fill_batch(const Dataset& d, const int64_t* indices, int64_t count, const Preprocess& p,
                float* images_nhwc, int32_t* labels, uint64_t aug_seed);

// The retraining task's domain shift, on each [0,1] image: rotate 90 degrees counter-clockwise
// (numpy np.rot90(x, k=1, axes=(1,2)): out[i][j] = in[j][W-1-i], so HxW becomes WxH), invert
// (1 - x), add Gaussian noise N(0, noise_sigma), clip to [0,1]. Same semantics as shift() in
// shared/peers/torch_fmnist_retrain.py; the noise comes from DataRng(seed), not numpy's.
struct DomainShift {
  bool rotate90_ccw = true;
  bool invert = true;
  float noise_sigma = 0.2f;  // 0: no noise
  uint64_t seed = 0;         // the peer uses 1234 for the train subset, 5678 for the test set
};

// A float32 dataset of the shifted images (labels and class names copied).
Result<Dataset> apply_domain_shift(const Dataset& source, const DomainShift& shift);

}  // namespace edgetrain
