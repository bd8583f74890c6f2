#include "data/image_folder.h"

#include <stb_image.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>

namespace edgetrain {

namespace fs = std::filesystem;

namespace {

// Python's round() of diff / 2 (half to even), as torchvision's center_crop computes offsets.
int center_offset(int diff) {
  const int k = diff / 2;
  if (diff % 2 == 0) return k;
  return k % 2 == 0 ? k : k + 1;
}

// Resampling weights of `out_count` consecutive output samples starting at output index
// `out_first`, for an axis of in_size input samples scaled to out_size: PIL's precompute_coeffs
// with the bilinear (triangle) filter, widened by the scale factor when shrinking.
struct AxisWeights {
  std::vector<int> first, count;  // input window per output sample
  std::vector<float> w;           // count weights per output sample, stride max_taps
  int max_taps = 0;
};

AxisWeights axis_weights(int in_size, int out_size, int out_first, int out_count) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filter_scale = std::max(scale, 1.0);
  const double support = filter_scale;  // triangle support 1, widened
  AxisWeights a;
  a.max_taps = static_cast<int>(std::ceil(support)) * 2 + 1;
  a.first.resize(static_cast<size_t>(out_count));
  a.count.resize(static_cast<size_t>(out_count));
  a.w.assign(static_cast<size_t>(out_count) * a.max_taps, 0.f);
  std::vector<double> ws(static_cast<size_t>(a.max_taps));
  for (int k = 0; k < out_count; ++k) {
    const double center = (out_first + k + 0.5) * scale;
    const int lo = std::max(static_cast<int>(center - support + 0.5), 0);
    const int hi = std::min(static_cast<int>(center + support + 0.5), in_size);
    double total = 0;
    const int n = std::min(hi - lo, a.max_taps);
    for (int t = 0; t < n; ++t) {
      const double x = (lo + t - center + 0.5) / filter_scale;
      ws[static_cast<size_t>(t)] = std::max(0.0, 1.0 - std::fabs(x));
      total += ws[static_cast<size_t>(t)];
    }
    a.first[static_cast<size_t>(k)] = lo;
    a.count[static_cast<size_t>(k)] = n;
    for (int t = 0; t < n; ++t)
      a.w[static_cast<size_t>(k) * a.max_taps + t] = static_cast<float>(total > 0 ? ws[static_cast<size_t>(t)] / total : 0);
  }
  return a;
}

std::string lower(std::string s) {
  for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

}  // namespace

void resize_center_crop(const uint8_t* src, int h, int w, int c, int shorter, int crop,
                        uint8_t* dst, std::vector<float>* scratch) {
  ET_CHECK(shorter >= crop && crop > 0 && h > 0 && w > 0);
  // torchvision Resize(int): the shorter side becomes `shorter`, the other keeps the ratio.
  int rh, rw;
  if (h <= w) {
    rh = shorter;
    rw = static_cast<int>(static_cast<int64_t>(shorter) * w / h);
  } else {
    rw = shorter;
    rh = static_cast<int>(static_cast<int64_t>(shorter) * h / w);
  }
  const int top = center_offset(rh - crop), left = center_offset(rw - crop);
  const AxisWeights ax = axis_weights(w, rw, left, crop);
  const AxisWeights ay = axis_weights(h, rh, top, crop);

  // Horizontal pass over the input rows the vertical pass reads: rows [y0, y1) x crop x c.
  const int y0 = ay.first.front();
  const int y1 = ay.first.back() + ay.count.back();
  scratch->resize(static_cast<size_t>(y1 - y0) * crop * c);
  float* tmp = scratch->data();
  for (int y = y0; y < y1; ++y) {
    const uint8_t* row = src + static_cast<int64_t>(y) * w * c;
    float* trow = tmp + static_cast<int64_t>(y - y0) * crop * c;
    for (int x = 0; x < crop; ++x) {
      const float* wt = ax.w.data() + static_cast<size_t>(x) * ax.max_taps;
      const uint8_t* s = row + static_cast<int64_t>(ax.first[x]) * c;
      for (int ch = 0; ch < c; ++ch) {
        float acc = 0;
        for (int t = 0; t < ax.count[x]; ++t) acc += wt[t] * s[t * c + ch];
        trow[x * c + ch] = acc;
      }
    }
  }
  // Vertical pass into the crop.
  for (int y = 0; y < crop; ++y) {
    const float* wt = ay.w.data() + static_cast<size_t>(y) * ay.max_taps;
    const float* base = tmp + static_cast<int64_t>(ay.first[y] - y0) * crop * c;
    uint8_t* orow = dst + static_cast<int64_t>(y) * crop * c;
    for (int i = 0; i < crop * c; ++i) {
      float acc = 0;
      for (int t = 0; t < ay.count[y]; ++t) acc += wt[t] * base[static_cast<int64_t>(t) * crop * c + i];
      orow[i] = static_cast<uint8_t>(std::clamp(std::lround(acc), 0l, 255l));
    }
  }
}

bool has_image_extension(const std::string& path) {
  static const char* const kExtensions[] = {".jpg", ".jpeg", ".png", ".bmp", ".gif",
                                            ".tga", ".ppm", ".pgm", ".pnm"};
  const std::string ext = lower(fs::path(path).extension().string());
  for (const char* e : kExtensions)
    if (ext == e) return true;
  return false;
}

Result<Dataset> load_image_folder(const std::string& root, const ImageFolderOptions& options,
                                  ImageFolderReport* report) {
  const int crop = options.crop_size;
  const int shorter = options.resize_shorter_side > 0 ? options.resize_shorter_side : crop;
  if (crop <= 0 || crop > 16384 || shorter > 16384)
    return invalid_argument(root + ": crop_size " + std::to_string(crop) + " and resize " +
                            std::to_string(shorter) + " must be in 1..16384");
  if (shorter < crop)
    return invalid_argument(root + ": resize_shorter_side " + std::to_string(shorter) +
                            " is smaller than crop_size " + std::to_string(crop));

  std::error_code ec;
  if (!fs::exists(root, ec)) return not_found(root + ": no such directory");
  if (!fs::is_directory(root, ec)) return invalid_argument(root + ": not a directory");

  // Class folders, sorted by name (hidden ones ignored), as torchvision's find_classes.
  std::vector<std::string> classes;
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::error_code ec2;
    if (!name.empty() && name[0] != '.' && it->is_directory(ec2)) classes.push_back(name);
  }
  if (ec) return io_error(root + ": cannot list: " + ec.message());
  if (classes.empty()) return not_found(root + ": no class sub-folders");
  std::sort(classes.begin(), classes.end());

  // Image files per class, walked recursively and sorted so labels and order are reproducible.
  std::vector<std::pair<std::string, int32_t>> files;
  for (size_t k = 0; k < classes.size(); ++k) {
    const fs::path dir = fs::path(root) / classes[k];
    std::vector<std::string> found;
    for (fs::recursive_directory_iterator it(dir, fs::directory_options::follow_directory_symlink, ec), end;
         !ec && it != end; it.increment(ec)) {
      std::error_code ec2;
      if (it->is_regular_file(ec2) && has_image_extension(it->path().string()))
        found.push_back(it->path().string());
    }
    if (ec) return io_error(dir.string() + ": cannot list: " + ec.message());
    std::sort(found.begin(), found.end());
    if (options.max_per_class >= 0 && static_cast<int64_t>(found.size()) > options.max_per_class)
      found.resize(static_cast<size_t>(options.max_per_class));
    for (std::string& f : found) files.emplace_back(std::move(f), static_cast<int32_t>(k));
  }
  if (files.empty())
    return not_found(root + ": no image files (.jpg .jpeg .png .bmp .gif .tga .ppm .pgm .pnm) in " +
                     std::to_string(classes.size()) + " class folders");

  ET_ASSIGN_OR_RETURN(Dataset ds, Dataset::allocate(PixelType::kU8, static_cast<int64_t>(files.size()),
                                                    crop, crop, 3, static_cast<int>(classes.size())));
  ds.set_class_names(classes);
  if (report) *report = ImageFolderReport{};

  std::vector<float> scratch;
  int64_t n = 0;
  for (const auto& [path, label] : files) {
    int w = 0, h = 0, file_channels = 0;
    errno = 0;
    // 3 requested channels: stb converts gray, gray+alpha and RGBA to RGB (alpha dropped).
    std::unique_ptr<stbi_uc, void (*)(void*)> pixels(
        stbi_load(path.c_str(), &w, &h, &file_channels, 3), stbi_image_free);
    if (!pixels) {
      const int e = errno;
      std::string reason = stbi_failure_reason() ? stbi_failure_reason() : "unknown stb_image error";
      if (e != 0 && reason.find("fopen") != std::string::npos) reason += ": " + std::string(std::strerror(e));
      if (!options.skip_bad_files) return corrupt_data(path + ": cannot decode image: " + reason);
      if (report) {
        ++report->skipped;
        if (report->skipped_files.size() < 20) report->skipped_files.push_back(path + ": " + reason);
      }
      continue;
    }
    resize_center_crop(pixels.get(), h, w, 3, shorter, crop, ds.mutable_image_u8(n), &scratch);
    ds.mutable_labels()[n] = label;
    ++n;
  }
  if (n == 0)
    return corrupt_data(root + ": none of the " + std::to_string(files.size()) +
                        " image files could be decoded");
  ds.truncate(n);
  return ds;
}

}  // namespace edgetrain
