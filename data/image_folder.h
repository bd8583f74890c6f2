// Image folders in torchvision's ImageFolder layout: root/<class name>/<image file>, one
// sub-folder per class, classes in sorted name order (label = position). Every image is decoded
// with stb_image, converted to RGB, resized so its shorter side is `resize_shorter_side`
// (bilinear, antialiased when shrinking) and center-cropped to crop_size x crop_size at load
// time, so the dataset holds crop_size^2 * 3 bytes per image whatever the file sizes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "runtime/status.h"

namespace edgetrain {

struct ImageFolderOptions {
  int crop_size = 224;             // side of the stored square image
  int resize_shorter_side = 256;   // torchvision Resize(256) + CenterCrop(224); <= 0: crop_size
  bool skip_bad_files = false;     // false: the first undecodable file is an error
  int64_t max_per_class = -1;      // >= 0: only the first files (in sorted order) of each class
};

struct ImageFolderReport {
  int64_t skipped = 0;                    // undecodable files left out (skip_bad_files)
  std::vector<std::string> skipped_files; // "path: stb's reason", the first 20
};

// Files with these extensions (case-insensitive) are images; other files are ignored:
// .jpg .jpeg .png .bmp .gif .tga .ppm .pgm .pnm.
bool has_image_extension(const std::string& path);

// Loads root/<class>/<files>; a uint8 RGB Dataset with class_names() set. Errors: root missing
// or without class folders, no images at all, an image stb cannot decode (its path and stb's
// reason), bad options. `report` (may be null) receives what skip_bad_files left out.
Result<Dataset> load_image_folder(const std::string& root, const ImageFolderOptions& options,
                                  ImageFolderReport* report = nullptr);

// Resizes an HxWxC uint8 image so its shorter side is `shorter` (torchvision's rule: the longer
// side is int(shorter * long / short)), then writes the centered crop x crop window (top/left
// offset round((resized - crop) / 2)) into dst. Bilinear (triangle filter) with the filter
// widened by the scale when shrinking, as PIL does. `scratch` is reused between calls.
// Needs shorter >= crop.
void resize_center_crop(const uint8_t* src, int h, int w, int c, int shorter, int crop,
                        uint8_t* dst, std::vector<float>* scratch);

}  // namespace edgetrain
