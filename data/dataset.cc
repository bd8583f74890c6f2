#include "data/dataset.h"

#include <cmath>
#include <cstring>
#include <new>
#include <numeric>

namespace edgetrain {

namespace {

uint64_t splitmix64(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

// Images larger than this are a corrupt header, not a data set (2^36 bytes = 64 GiB).
constexpr int64_t kMaxDatasetBytes = int64_t{1} << 36;

template <typename T>
std::unique_ptr<T[]> try_alloc_zeroed(int64_t n) {
  // Value-initialised and nothrow: an allocation failure becomes a Status, not an exception.
  return std::unique_ptr<T[]>(new (std::nothrow) T[static_cast<size_t>(n)]());
}

}  // namespace

// ---------------------------------------------------------------------------------- DataRng

DataRng::DataRng(uint64_t seed) {
  uint64_t st = seed;
  for (uint64_t& s : s_) s = splitmix64(&st);
}

uint64_t DataRng::next_u64() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

uint64_t DataRng::below(uint64_t n) {
  // Lemire's multiply-and-reject: unbiased without a division in the common case.
  unsigned __int128 m = static_cast<unsigned __int128>(next_u64()) * n;
  uint64_t low = static_cast<uint64_t>(m);
  if (low < n) {
    const uint64_t threshold = (0 - n) % n;
    while (low < threshold) {
      m = static_cast<unsigned __int128>(next_u64()) * n;
      low = static_cast<uint64_t>(m);
    }
  }
  return static_cast<uint64_t>(m >> 64);
}

float DataRng::uniform01() { return static_cast<float>(next_u64() >> 40) * 0x1.0p-24f; }

double DataRng::normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  // 53-bit uniforms; u1 in (0, 1] so the log is finite.
  const double u1 = static_cast<double>((next_u64() >> 11) + 1) * 0x1.0p-53;
  const double u2 = static_cast<double>(next_u64() >> 11) * 0x1.0p-53;
  const double r = std::sqrt(-2.0 * std::log(u1));
  const double theta = 2.0 * M_PI * u2;
  spare_ = r * std::sin(theta);
  has_spare_ = true;
  return r * std::cos(theta);
}

uint64_t mix_seed(uint64_t seed, uint64_t stream) {
  uint64_t st = seed ^ (stream * 0xD1B54A32D192ED03ull);
  splitmix64(&st);
  return splitmix64(&st);
}

// ---------------------------------------------------------------------------------- Dataset

Result<Dataset> Dataset::allocate(PixelType type, int64_t count, int height, int width,
                                  int channels, int num_classes) {
  const char* tname = type == PixelType::kU8 ? "uint8" : "float32";
  const std::string what = "dataset of " + std::to_string(count) + " images " +
                           std::to_string(height) + "x" + std::to_string(width) + "x" +
                           std::to_string(channels) + " " + tname;
  if (count < 0 || height <= 0 || width <= 0 || channels <= 0)
    return invalid_argument(what + ": sizes must be positive");
  if (num_classes <= 0)
    return invalid_argument(what + ": num_classes must be positive, got " +
                            std::to_string(num_classes));
  const int64_t elem = type == PixelType::kU8 ? 1 : 4;
  const int64_t per_image = int64_t{height} * width * channels * elem;
  if (per_image > kMaxDatasetBytes || (count > 0 && per_image > kMaxDatasetBytes / count))
    return invalid_argument(what + ": more than 64 GiB of pixels");

  Dataset d;
  d.type_ = type;
  d.count_ = count;
  d.height_ = height;
  d.width_ = width;
  d.channels_ = channels;
  d.num_classes_ = num_classes;
  const int64_t n = count * int64_t{height} * width * channels;
  // Allocate at least one element so an empty dataset still has valid (unused) pointers.
  if (type == PixelType::kU8)
    d.u8_ = try_alloc_zeroed<uint8_t>(std::max<int64_t>(n, 1));
  else
    d.f32_ = try_alloc_zeroed<float>(std::max<int64_t>(n, 1));
  d.labels_ = try_alloc_zeroed<int32_t>(std::max<int64_t>(count, 1));
  if ((!d.u8_ && !d.f32_) || !d.labels_)
    return out_of_memory(what + ": cannot allocate " + std::to_string(n * elem) + " bytes");
  return d;
}

size_t Dataset::bytes() const {
  const size_t elem = type_ == PixelType::kU8 ? 1 : 4;
  return static_cast<size_t>(count_ * pixels_per_image()) * elem +
         static_cast<size_t>(count_) * sizeof(int32_t);
}

const uint8_t* Dataset::image_u8(int64_t i) const {
  ET_CHECK(type_ == PixelType::kU8 && i >= 0 && i < count_);
  return u8_.get() + i * pixels_per_image();
}

uint8_t* Dataset::mutable_image_u8(int64_t i) {
  ET_CHECK(type_ == PixelType::kU8 && i >= 0 && i < count_);
  return u8_.get() + i * pixels_per_image();
}

const float* Dataset::image_f32(int64_t i) const {
  ET_CHECK(type_ == PixelType::kF32 && i >= 0 && i < count_);
  return f32_.get() + i * pixels_per_image();
}

float* Dataset::mutable_image_f32(int64_t i) {
  ET_CHECK(type_ == PixelType::kF32 && i >= 0 && i < count_);
  return f32_.get() + i * pixels_per_image();
}

void Dataset::read_pixels01(int64_t i, float* out) const {
  const int64_t n = pixels_per_image();
  if (type_ == PixelType::kF32) {
    std::memcpy(out, image_f32(i), static_cast<size_t>(n) * sizeof(float));
    return;
  }
  // Division (not multiplication by 1/255) so the values equal numpy's `u8.astype(f32) / 255`.
  const uint8_t* p = image_u8(i);
  for (int64_t k = 0; k < n; ++k) out[k] = static_cast<float>(p[k]) / 255.0f;
}

void Dataset::truncate(int64_t count) {
  ET_CHECK(count >= 0 && count <= count_);
  count_ = count;
}

// ---------------------------------------------------------------------- subsets and orders

Result<Dataset> select(const Dataset& source, const std::vector<int64_t>& indices) {
  const int64_t n = static_cast<int64_t>(indices.size());
  for (int64_t k = 0; k < n; ++k) {
    if (indices[k] < 0 || indices[k] >= source.size())
      return invalid_argument("select: index " + std::to_string(indices[k]) + " at position " +
                              std::to_string(k) + " is outside the dataset of " +
                              std::to_string(source.size()) + " images");
  }
  ET_ASSIGN_OR_RETURN(Dataset out,
                      Dataset::allocate(source.pixel_type(), n, source.height(), source.width(),
                                        source.channels(), source.num_classes()));
  out.set_class_names(source.class_names());
  const size_t px = static_cast<size_t>(source.pixels_per_image());
  for (int64_t k = 0; k < n; ++k) {
    if (source.pixel_type() == PixelType::kU8)
      std::memcpy(out.mutable_image_u8(k), source.image_u8(indices[k]), px);
    else
      std::memcpy(out.mutable_image_f32(k), source.image_f32(indices[k]), px * sizeof(float));
    out.mutable_labels()[k] = source.label(indices[k]);
  }
  return out;
}

Result<std::vector<int64_t>> random_subset_indices(int64_t n, int64_t count, uint64_t seed) {
  if (n < 0 || count < 0 || count > n)
    return invalid_argument("random subset: cannot draw " + std::to_string(count) +
                            " distinct indices from " + std::to_string(n));
  // Partial Fisher-Yates: the first `count` slots of a shuffled [0, n).
  std::vector<int64_t> all(static_cast<size_t>(n));
  std::iota(all.begin(), all.end(), int64_t{0});
  DataRng rng(seed);
  for (int64_t k = 0; k < count; ++k) {
    const int64_t j = k + static_cast<int64_t>(rng.below(static_cast<uint64_t>(n - k)));
    std::swap(all[static_cast<size_t>(k)], all[static_cast<size_t>(j)]);
  }
  all.resize(static_cast<size_t>(count));
  return all;
}

Result<Dataset> subset(const Dataset& source, int64_t count, uint64_t seed) {
  ET_ASSIGN_OR_RETURN(std::vector<int64_t> idx, random_subset_indices(source.size(), count, seed));
  return select(source, idx);
}

void epoch_permutation(int64_t n, uint64_t seed, int64_t epoch, int64_t* out) {
  for (int64_t k = 0; k < n; ++k) out[k] = k;
  DataRng rng(mix_seed(seed, static_cast<uint64_t>(epoch)));
  for (int64_t k = n - 1; k > 0; --k) {
    const int64_t j = static_cast<int64_t>(rng.below(static_cast<uint64_t>(k + 1)));
    std::swap(out[k], out[j]);
  }
}

// ---------------------------------------------------------------------------- BatchIterator

Result<BatchIterator> BatchIterator::create(int64_t dataset_size, int64_t batch_size,
                                            bool shuffle, bool drop_last, uint64_t seed) {
  if (dataset_size < 0)
    return invalid_argument("batch iterator: dataset size " + std::to_string(dataset_size) +
                            " is negative");
  if (batch_size <= 0)
    return invalid_argument("batch iterator: batch size must be positive, got " +
                            std::to_string(batch_size));
  BatchIterator it;
  it.n_ = dataset_size;
  it.batch_size_ = batch_size;
  it.shuffle_ = shuffle;
  it.drop_last_ = drop_last;
  it.seed_ = seed;
  it.order_.reset(new (std::nothrow) int64_t[static_cast<size_t>(std::max<int64_t>(dataset_size, 1))]);
  if (!it.order_)
    return out_of_memory("batch iterator: cannot allocate the order of " +
                         std::to_string(dataset_size) + " indices");
  it.start_epoch(0);
  return it;
}

void BatchIterator::start_epoch(int64_t epoch) {
  if (shuffle_) {
    epoch_permutation(n_, seed_, epoch, order_.get());
  } else {
    for (int64_t k = 0; k < n_; ++k) order_[k] = k;
  }
  pos_ = 0;
}

bool BatchIterator::next(Batch* batch) {
  const int64_t left = n_ - pos_;
  if (left <= 0 || (drop_last_ && left < batch_size_)) return false;
  batch->indices = order_.get() + pos_;
  batch->count = std::min(left, batch_size_);
  pos_ += batch->count;
  return true;
}

int64_t BatchIterator::batches_per_epoch() const {
  return drop_last_ ? n_ / batch_size_ : (n_ + batch_size_ - 1) / batch_size_;
}

}  // namespace edgetrain
