#include "data/transforms.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <new>
#include <string>

namespace edgetrain {

Preprocess fashion_mnist_preprocess() {
  Preprocess p;
  p.pad = 2;
  p.out_channels = 3;
  p.mean = {0.2860f, 0.2860f, 0.2860f};
  p.std = {0.3530f, 0.3530f, 0.3530f};
  return p;
}

Preprocess imagenet_preprocess() {
  Preprocess p;
  p.out_channels = 3;
  p.mean = {0.485f, 0.456f, 0.406f};
  p.std = {0.229f, 0.224f, 0.225f};
  return p;
}

Status check_preprocess(const Dataset& d, const Preprocess& p) {
  const int cin = d.channels();
  if (p.out_channels != 1 && p.out_channels != 3)
    return invalid_argument("preprocess: out_channels must be 1 or 3, got " +
                            std::to_string(p.out_channels));
  if (!(cin == p.out_channels || (cin == 1 && p.out_channels == 3)))
    return invalid_argument("preprocess: cannot make " + std::to_string(p.out_channels) +
                            " channels from a dataset with " + std::to_string(cin) +
                            " (only equal counts, or gray replicated to 3)");
  if (p.pad < 0 || p.random_crop_pad < 0)
    return invalid_argument("preprocess: pad " + std::to_string(p.pad) + " and random_crop_pad " +
                            std::to_string(p.random_crop_pad) + " must be non-negative");
  for (int c = 0; c < p.out_channels; ++c) {
    if (!(p.std[c] > 0.f) || !std::isfinite(p.std[c]) || !std::isfinite(p.mean[c]))
      return invalid_argument("preprocess: channel " + std::to_string(c) + " has mean " +
                              std::to_string(p.mean[c]) + " and std " + std::to_string(p.std[c]) +
                              " (std must be positive and finite)");
  }
  return Status::ok();
}

int64_t output_height(const Dataset& d, const Preprocess& p) { return d.height() + 2 * p.pad; }
int64_t output_width(const Dataset& d, const Preprocess& p) { return d.width() + 2 * p.pad; }

int64_t floats_per_image(const Dataset& d, const Preprocess& p) {
  return output_height(d, p) * output_width(d, p) * p.out_channels;
}

Shape batch_shape(const Dataset& d, const Preprocess& p, int64_t batch) {
  return Shape{batch, output_height(d, p), output_width(d, p), p.out_channels};
}

namespace {

inline float to01(uint8_t v) { return static_cast<float>(v) / 255.0f; }
inline float to01(float v) { return v; }

// One image. `src` is HxWxCin; `out` is OHxOWxCout. The output pixel (oy, ox) shows the padded
// image's pixel (oy + dy, fx + dx) with fx = ox, or OW-1-ox when flipped; the padded image's
// pixel (py, px) is the source pixel (py - pad, px - pad), or 0 outside the source.
template <typename T>
void fill_one(const T* src, int h, int w, int cin, const Preprocess& p, int dy, int dx, bool flip,
              float* out) {
  const int oh = h + 2 * p.pad, ow = w + 2 * p.pad, cout = p.out_channels;
  // (x - mean) / std, in this form (not x * inv_std + bias) so the numbers equal the peer's.
  float zero_value[3];
  for (int c = 0; c < cout; ++c) zero_value[c] = (0.f - p.mean[c]) / p.std[c];
  for (int oy = 0; oy < oh; ++oy) {
    const int sy = oy + dy - p.pad;
    float* row = out + static_cast<int64_t>(oy) * ow * cout;
    if (sy < 0 || sy >= h) {
      for (int ox = 0; ox < ow; ++ox)
        for (int c = 0; c < cout; ++c) row[ox * cout + c] = zero_value[c];
      continue;
    }
    const T* srow = src + static_cast<int64_t>(sy) * w * cin;
    for (int ox = 0; ox < ow; ++ox) {
      const int sx = (flip ? ow - 1 - ox : ox) + dx - p.pad;
      float* o = row + ox * cout;
      if (sx < 0 || sx >= w) {
        for (int c = 0; c < cout; ++c) o[c] = zero_value[c];
      } else if (cin == cout) {
        for (int c = 0; c < cout; ++c) o[c] = (to01(srow[sx * cin + c]) - p.mean[c]) / p.std[c];
      } else {  // gray replicated
        const float v = to01(srow[sx]);
        for (int c = 0; c < cout; ++c) o[c] = (v - p.mean[c]) / p.std[c];
      }
    }
  }
}

}  // namespace

void fill_batch(const Dataset& d, const int64_t* indices, int64_t count, const Preprocess& p,
                float* images_nhwc, int32_t* labels, uint64_t aug_seed) {
  ET_CHECK(check_preprocess(d, p).is_ok());
  const int64_t per_image = floats_per_image(d, p);
  const bool augment = p.random_flip || p.random_crop_pad > 0;
  for (int64_t k = 0; k < count; ++k) {
    const int64_t i = indices[k];
    ET_CHECK(i >= 0 && i < d.size());
    int dy = 0, dx = 0;
    bool flip = false;
    if (augment) {
      DataRng rng(mix_seed(aug_seed, static_cast<uint64_t>(k)));
      const uint64_t span = 2 * static_cast<uint64_t>(p.random_crop_pad) + 1;
      dy = static_cast<int>(rng.below(span)) - p.random_crop_pad;
      dx = static_cast<int>(rng.below(span)) - p.random_crop_pad;
      flip = p.random_flip && (rng.next_u64() >> 63) != 0;
    }
    float* out = images_nhwc + k * per_image;
    if (d.pixel_type() == PixelType::kU8)
      fill_one(d.image_u8(i), d.height(), d.width(), d.channels(), p, dy, dx, flip, out);
    else
      fill_one(d.image_f32(i), d.height(), d.width(), d.channels(), p, dy, dx, flip, out);
    if (labels) labels[k] = d.label(i);
  }
}

Result<Dataset> apply_domain_shift(const Dataset& source, const DomainShift& shift) {
  if (!(shift.noise_sigma >= 0.f) || !std::isfinite(shift.noise_sigma))
    return invalid_argument("domain shift: noise_sigma must be finite and >= 0, got " +
                            std::to_string(shift.noise_sigma));
  const int h = source.height(), w = source.width(), c = source.channels();
  // np.rot90 on (H, W) gives (W, H).
  const int oh = shift.rotate90_ccw ? w : h, ow = shift.rotate90_ccw ? h : w;
  ET_ASSIGN_OR_RETURN(Dataset out, Dataset::allocate(PixelType::kF32, source.size(), oh, ow, c,
                                                     source.num_classes()));
  out.set_class_names(source.class_names());
  std::unique_ptr<float[]> x(new (std::nothrow) float[static_cast<size_t>(source.pixels_per_image())]);
  if (!x) return out_of_memory("domain shift: cannot allocate one image");

  DataRng rng(shift.seed);
  const double sigma = shift.noise_sigma;
  for (int64_t n = 0; n < source.size(); ++n) {
    source.read_pixels01(n, x.get());
    float* y = out.mutable_image_f32(n);
    for (int i = 0; i < oh; ++i) {
      for (int j = 0; j < ow; ++j) {
        // Counter-clockwise: output row i is input column W-1-i read top to bottom.
        const int si = shift.rotate90_ccw ? j : i;
        const int sj = shift.rotate90_ccw ? w - 1 - i : j;
        for (int ch = 0; ch < c; ++ch) {
          float v = x[(static_cast<int64_t>(si) * w + sj) * c + ch];
          if (shift.invert) v = 1.0f - v;
          // The peer draws float64 noise and adds it as float32, in output (C) order.
          if (sigma > 0) v += static_cast<float>(sigma * rng.normal());
          y[(static_cast<int64_t>(i) * ow + j) * c + ch] = std::clamp(v, 0.0f, 1.0f);
        }
      }
    }
    out.mutable_labels()[n] = source.label(n);
  }
  return out;
}

}  // namespace edgetrain
