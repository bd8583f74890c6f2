// An in-memory labelled image set, plus what selects and orders its images: a seeded random
// generator, fixed-seed subsets, per-epoch permutations and a batch iterator.
//
// Images are stored compactly, one contiguous HWC block per image, either as uint8 (as decoded
// from IDX or image files: Fashion-MNIST train is 60000x28x28 = 47 MB) or as float32 in [0,1]
// (for generated data, such as domain-shifted images whose noise uint8 cannot represent).
// Conversion to normalised float batches happens per batch in data/transforms.h.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/status.h"

namespace edgetrain {

// Seeded, deterministic random numbers for the data side (xoshiro256**, seeded by splitmix64).
// Its own small class because data/ does not depend on the runtime.
class DataRng {
 public:
  explicit DataRng(uint64_t seed);
  uint64_t next_u64();
  uint64_t below(uint64_t n);  // uniform in [0, n), unbiased; n > 0
  float uniform01();           // uniform in [0, 1), 24 random bits
  double normal();             // N(0, 1), Box-Muller (keeps the spare value)

 private:
  uint64_t s_[4];
  bool has_spare_ = false;
  double spare_ = 0;
};

// Mixes a seed with a stream number (epoch, sample index) into an independent seed.
uint64_t mix_seed(uint64_t seed, uint64_t stream);

enum class PixelType : uint8_t {
  kU8,   // 0..255, as decoded
  kF32,  // [0, 1]
};

class Dataset {
 public:
  // `count` images of height x width x channels pixels, zero-filled, labels 0. Fails with
  // kInvalidArgument on non-positive sizes and kOutOfMemory when the images do not fit.
  static Result<Dataset> allocate(PixelType type, int64_t count, int height, int width,
                                  int channels, int num_classes);

  Dataset() = default;
  Dataset(Dataset&&) noexcept = default;
  Dataset& operator=(Dataset&&) noexcept = default;

  int64_t size() const { return count_; }
  int height() const { return height_; }
  int width() const { return width_; }
  int channels() const { return channels_; }
  int64_t pixels_per_image() const { return int64_t{height_} * width_ * channels_; }
  PixelType pixel_type() const { return type_; }
  int num_classes() const { return num_classes_; }
  // Class names in label order; empty when the source has none.
  const std::vector<std::string>& class_names() const { return class_names_; }
  void set_class_names(std::vector<std::string> names) { class_names_ = std::move(names); }
  // Bytes held by images and labels.
  size_t bytes() const;

  // Image i as stored (HWC). Only the accessor matching pixel_type() may be called.
  const uint8_t* image_u8(int64_t i) const;
  uint8_t* mutable_image_u8(int64_t i);
  const float* image_f32(int64_t i) const;
  float* mutable_image_f32(int64_t i);
  // Image i as float in [0,1] (HWC), whatever the storage type.
  void read_pixels01(int64_t i, float* out) const;

  int32_t label(int64_t i) const { return labels_[i]; }
  const int32_t* labels() const { return labels_.get(); }
  int32_t* mutable_labels() { return labels_.get(); }

  // Forgets images from `count` on (a loader that skipped bad files). Memory is kept.
  void truncate(int64_t count);

 private:
  PixelType type_ = PixelType::kU8;
  int64_t count_ = 0;
  int height_ = 0, width_ = 0, channels_ = 0;
  int num_classes_ = 0;
  std::unique_ptr<uint8_t[]> u8_;
  std::unique_ptr<float[]> f32_;
  std::unique_ptr<int32_t[]> labels_;
  std::vector<std::string> class_names_;
};

// The images at `indices`, in that order, copied into a new Dataset of the same pixel type.
Result<Dataset> select(const Dataset& source, const std::vector<int64_t>& indices);

// `count` distinct indices of [0, n) drawn without replacement (in draw order), from `seed`.
// Like numpy's rng.choice(n, count, replace=False) in meaning, not in the exact numbers.
Result<std::vector<int64_t>> random_subset_indices(int64_t n, int64_t count, uint64_t seed);

// A fixed-seed random subset of `count` images (the retraining set of the domain-shift task).
Result<Dataset> subset(const Dataset& source, int64_t count, uint64_t seed);

// Writes a permutation of [0, n) into out[0..n) that depends only on (seed, epoch), so a run
// can be resumed at any epoch and gives the same order.
void epoch_permutation(int64_t n, uint64_t seed, int64_t epoch, int64_t* out);

// Walks a dataset in batches of indices: per epoch either in order or in the epoch permutation.
// Holds the index buffer; next() does not allocate.
//
//   ET_ASSIGN_OR_RETURN(auto it, BatchIterator::create(ds.size(), 32, true, false, seed));
//   it.start_epoch(epoch);
//   for (Batch b; it.next(&b);) fill_batch(ds, b.indices, b.count, ...);
class BatchIterator {
 public:
  struct Batch {
    const int64_t* indices = nullptr;
    int64_t count = 0;
  };

  // drop_last: skip a final batch smaller than batch_size (as torch's DataLoader(drop_last)).
  static Result<BatchIterator> create(int64_t dataset_size, int64_t batch_size, bool shuffle,
                                      bool drop_last, uint64_t seed);

  BatchIterator() = default;
  BatchIterator(BatchIterator&&) noexcept = default;
  BatchIterator& operator=(BatchIterator&&) noexcept = default;

  // Resets to the first batch of `epoch` (shuffled with (seed, epoch) when shuffle is on).
  void start_epoch(int64_t epoch);
  // The next batch of the current epoch, false after the last one.
  bool next(Batch* batch);
  int64_t batches_per_epoch() const;
  int64_t batch_size() const { return batch_size_; }

 private:
  int64_t n_ = 0, batch_size_ = 0, pos_ = 0;
  bool shuffle_ = false, drop_last_ = false;
  uint64_t seed_ = 0;
  std::unique_ptr<int64_t[]> order_;
};

}  // namespace edgetrain
