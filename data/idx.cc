#include "data/idx.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <new>

namespace edgetrain {

namespace {

constexpr int kUbyteType = 0x08;

// An open gzip (or raw) file; closes itself.
class GzFile {
 public:
  ~GzFile() {
    if (f_) gzclose(f_);
  }
  Status open(const std::string& path) {
    path_ = path;
    errno = 0;
    f_ = gzopen(path.c_str(), "rb");
    if (!f_) {
      const int e = errno;
      const std::string why = e ? std::strerror(e) : "gzopen failed";
      if (e == ENOENT) return not_found(path + ": cannot open: " + why);
      return io_error(path + ": cannot open: " + why);
    }
    return Status::ok();
  }

  // Reads exactly n bytes of `what` ("header", "pixels", "labels") or says why it cannot.
  Status read_exact(void* dst, int64_t n, const char* what) {
    auto* out = static_cast<unsigned char*>(dst);
    int64_t got = 0;
    while (got < n) {
      // gzread takes an unsigned and returns an int: read at most 1 GiB per call.
      const unsigned chunk = static_cast<unsigned>(std::min<int64_t>(n - got, int64_t{1} << 30));
      const int r = gzread(f_, out + got, chunk);
      if (r < 0) return corrupt_data(path_ + ": cannot read " + what + ": " + zlib_reason());
      if (r == 0) {
        std::string msg = path_ + ": truncated: expected " + std::to_string(n) + " bytes of " +
                          what + ", got " + std::to_string(got);
        int err = Z_OK;
        gzerror(f_, &err);
        if (err != Z_OK) msg += " (" + zlib_reason() + ")";
        return corrupt_data(msg);
      }
      got += r;
    }
    return Status::ok();
  }

 private:
  std::string zlib_reason() {
    int err = Z_OK;
    const char* m = gzerror(f_, &err);
    if (err == Z_ERRNO) return std::strerror(errno);
    std::string reason = m && *m ? m : "zlib error";
    // zlib prefixes the path ("path: unexpected end of file"); the caller names it already.
    if (reason.rfind(path_ + ": ", 0) == 0) reason.erase(0, path_.size() + 2);
    return reason;
  }

  gzFile f_ = nullptr;
  std::string path_;
};

uint32_t big_endian_u32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

// Reads the header of an IDX file of unsigned bytes with `ndims` dimensions into dims.
Status read_header(GzFile& f, const std::string& path, int ndims, const char* kind,
                   uint32_t* dims) {
  unsigned char magic[4];
  ET_RETURN_IF_ERROR(f.read_exact(magic, 4, "header"));
  const uint32_t expected = (uint32_t{kUbyteType} << 8) | static_cast<uint32_t>(ndims);
  const uint32_t got = big_endian_u32(magic);
  if (got != expected) {
    std::string msg = path + ": bad magic number " + hex32(got) + ", expected " +
                      hex32(expected) + " (IDX " + kind + " file of unsigned bytes, " +
                      std::to_string(ndims) + " dimension" + (ndims > 1 ? "s" : "") + ")";
    if (magic[0] == 0 && magic[1] == 0 && magic[2] == kUbyteType)
      msg += "; this file has " + std::to_string(magic[3]) + " dimensions";
    return corrupt_data(msg);
  }
  unsigned char raw[4 * 3];
  ET_RETURN_IF_ERROR(f.read_exact(raw, 4 * ndims, "header"));
  for (int d = 0; d < ndims; ++d) dims[d] = big_endian_u32(raw + 4 * d);
  return Status::ok();
}

}  // namespace

Result<Dataset> load_idx(const std::string& images_path, const std::string& labels_path,
                         int num_classes, int64_t limit) {
  if (num_classes <= 0 || num_classes > 256)
    return invalid_argument(labels_path + ": num_classes must be in 1..256 for byte labels, got " +
                            std::to_string(num_classes));
  GzFile images, labels;
  ET_RETURN_IF_ERROR(images.open(images_path));
  ET_RETURN_IF_ERROR(labels.open(labels_path));

  uint32_t idims[3], ldims[1];
  ET_RETURN_IF_ERROR(read_header(images, images_path, 3, "images", idims));
  ET_RETURN_IF_ERROR(read_header(labels, labels_path, 1, "labels", ldims));
  const int64_t count = idims[0], rows = idims[1], cols = idims[2];
  if (rows == 0 || cols == 0 || rows > 65535 || cols > 65535)
    return corrupt_data(images_path + ": bad image size " + std::to_string(rows) + "x" +
                        std::to_string(cols) + " in the header");
  if (ldims[0] != count)
    return corrupt_data(images_path + " holds " + std::to_string(count) + " images but " +
                        labels_path + " holds " + std::to_string(ldims[0]) + " labels");
  const int64_t n = limit >= 0 ? std::min(limit, count) : count;

  ET_ASSIGN_OR_RETURN(Dataset ds, Dataset::allocate(PixelType::kU8, n, static_cast<int>(rows),
                                                    static_cast<int>(cols), 1, num_classes));
  if (n == 0) return ds;
  ET_RETURN_IF_ERROR(images.read_exact(ds.mutable_image_u8(0), n * rows * cols, "pixels"));

  std::unique_ptr<uint8_t[]> raw(new (std::nothrow) uint8_t[static_cast<size_t>(n)]);
  if (!raw) return out_of_memory(labels_path + ": cannot allocate " + std::to_string(n) + " labels");
  ET_RETURN_IF_ERROR(labels.read_exact(raw.get(), n, "labels"));
  int32_t* out = ds.mutable_labels();
  for (int64_t i = 0; i < n; ++i) {
    if (raw[i] >= num_classes)
      return corrupt_data(labels_path + ": label " + std::to_string(raw[i]) + " of image " +
                          std::to_string(i) + " is outside 0.." + std::to_string(num_classes - 1));
    out[i] = raw[i];
  }
  return ds;
}

Result<Dataset> load_fashion_mnist(const std::string& dir, Split split, int64_t limit) {
  std::string base = dir.empty() ? std::string(".") : dir;
  if (base.back() != '/') base += '/';
  const std::string prefix = split == Split::kTrain ? "train" : "t10k";
  // The .gz names as distributed; an unpacked copy (no .gz) is used when only that exists.
  auto pick = [&](const std::string& name) {
    std::error_code ec;
    const std::string gz = base + name + ".gz", raw = base + name;
    return !std::filesystem::exists(gz, ec) && std::filesystem::exists(raw, ec) ? raw : gz;
  };
  ET_ASSIGN_OR_RETURN(Dataset ds, load_idx(pick(prefix + "-images-idx3-ubyte"),
                                           pick(prefix + "-labels-idx1-ubyte"), 10, limit));
  ds.set_class_names({"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"});
  return ds;
}

}  // namespace edgetrain
