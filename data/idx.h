// IDX files (the MNIST / Fashion-MNIST format), gzip-compressed or raw.
//
// An IDX file is a big-endian header { 0, 0, type, ndims, dim[0..ndims) } followed by the data.
// Images are type 0x08 (ubyte) with 3 dims (count, rows, cols), magic 2051; labels are ubyte
// with 1 dim, magic 2049. zlib's gzread reads raw files unchanged, so one path reads both.
// Every error names the file and what is wrong with it; a corrupt file never crashes.
#pragma once

#include <cstdint>
#include <string>

#include "data/dataset.h"
#include "runtime/status.h"

namespace edgetrain {

enum class Split { kTrain, kTest };

// Where Debian's dataset-fashion-mnist package puts the files.
inline constexpr const char* kDefaultFashionMnistDir = "/usr/share/datasets/fashion-mnist/";

// Reads an images file and its labels file into a uint8 Dataset of count x rows x cols x 1.
// limit >= 0 reads only the first `limit` images (and labels); labels must be < num_classes.
Result<Dataset> load_idx(const std::string& images_path, const std::string& labels_path,
                         int num_classes, int64_t limit = -1);

// {dir}/train-images-idx3-ubyte.gz + train-labels-idx1-ubyte.gz (Split::kTrain) or the
// t10k-* pair (Split::kTest); 10 classes with Fashion-MNIST's class names. Reads MNIST too
// (same file names), only the class names then do not apply.
Result<Dataset> load_fashion_mnist(const std::string& dir = kDefaultFashionMnistDir,
                                   Split split = Split::kTrain, int64_t limit = -1);

// Fashion-MNIST's per-pixel mean and standard deviation of the training set in [0,1], as used by
// the PyTorch peer (shared/peers/torch_fmnist_retrain.py).
inline constexpr float kFashionMnistMean = 0.2860f;
inline constexpr float kFashionMnistStd = 0.3530f;

}  // namespace edgetrain
