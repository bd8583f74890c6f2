// The safetensors file format (https://huggingface.co/docs/safetensors): an 8-byte little-endian
// header length N, N bytes of JSON header
//   {"__metadata__": {str: str}, "<name>": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}}
// and then the data section, where every tensor occupies bytes [b, e) in row-major order.
//
// The reader validates the whole header before anything reads data, so a corrupt or hostile
// file fails with a message naming the file and the tensor instead of reading out of bounds.
// Tensor data is read on demand with pread, converting to float32 / int64 in bounded chunks:
// loading never holds a second copy of the whole file in memory.
//
// The writer produces F32 files atomically (temporary file in the same directory, fsync,
// rename), so an existing weights file survives a full disk or a crash mid-write.
//
// This file knows nothing about models; models/weights.h maps files onto a ParameterStore.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "runtime/status.h"

namespace edgetrain {

// Every dtype of the format, so any valid file opens and validates. Conversion is offered for
// F32/F16/BF16 (to float) and I64/I32 (to int64).
enum class SafetensorsDType : uint8_t {
  kBool, kU8, kI8, kF8E5M2, kF8E4M3, kI16, kU16, kF16, kBF16, kI32, kU32, kF32, kF64, kI64, kU64,
};
const char* safetensors_dtype_name(SafetensorsDType dtype);  // "F32"
size_t safetensors_dtype_size(SafetensorsDType dtype);       // bytes per element

// Headers larger than this are rejected before allocating (same limit as the reference reader).
constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;

struct SafetensorsTensorInfo {
  std::string name;
  SafetensorsDType dtype = SafetensorsDType::kF32;
  std::vector<int64_t> shape;  // as stored (PyTorch order), any rank; [] is a scalar
  uint64_t begin = 0;          // byte range [begin, end) within the data section
  uint64_t end = 0;
  int64_t numel() const;
};

class SafetensorsReader {
 public:
  // Opens and validates `path`: header length against the file size and the limit, JSON
  // syntax, every entry's dtype, shape and data_offsets, shape * dtype size == end - begin,
  // offsets inside the data section, and tensors tiling the data section exactly (no overlap,
  // no gap, nothing after the last tensor), as the format requires.
  static Result<SafetensorsReader> open(const std::string& path);

  SafetensorsReader(SafetensorsReader&& other) noexcept;
  SafetensorsReader& operator=(SafetensorsReader&& other) noexcept;
  SafetensorsReader(const SafetensorsReader&) = delete;
  SafetensorsReader& operator=(const SafetensorsReader&) = delete;
  ~SafetensorsReader();

  const std::string& path() const { return path_; }
  // Tensors in header order.
  const std::vector<SafetensorsTensorInfo>& tensors() const { return tensors_; }
  // nullptr when the file has no tensor of that name.
  const SafetensorsTensorInfo* find(std::string_view name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // Reads a F32, F16 or BF16 tensor as float32 into out[0, count); count must equal numel().
  Status read_f32(const SafetensorsTensorInfo& tensor, float* out, int64_t count) const;
  // Reads an I64 or I32 tensor as int64 into out[0, count); count must equal numel().
  Status read_i64(const SafetensorsTensorInfo& tensor, int64_t* out, int64_t count) const;
  // Convenience: the tensor named `name` as a new float vector.
  Result<std::vector<float>> read_f32(std::string_view name) const;

 private:
  SafetensorsReader() = default;
  Status read_bytes(uint64_t offset, void* dst, size_t bytes, const SafetensorsTensorInfo& t) const;
  Status check_count(const SafetensorsTensorInfo& tensor, int64_t count) const;

  std::string path_;
  int fd_ = -1;
  uint64_t data_start_ = 0;  // file offset of the data section: 8 + header length
  std::vector<SafetensorsTensorInfo> tensors_;
  std::unordered_map<std::string, size_t> index_;  // name -> position in tensors_
  std::map<std::string, std::string> metadata_;
};

// A tensor to be written: its name and shape (PyTorch order); the writer stores F32.
struct SafetensorsTensorDecl {
  std::string name;
  std::vector<int64_t> shape;
};

// Streams an F32 safetensors file: the header at create(), then the data of every declared
// tensor in declaration order through write() (in as many pieces as convenient), then commit().
//
// Atomic: bytes go to "<path>.tmp.<pid>" in the target's directory; commit() fflushes, fsyncs
// and renames it over `path`, so readers see the old file or the complete new one, never a
// torn one. A writer that fails or is destroyed without commit() removes its temporary file
// and leaves `path` untouched.
class SafetensorsWriter {
 public:
  // Metadata goes into "__metadata__" (omitted when empty). Fails on an empty, duplicate or
  // reserved ("__metadata__") name, a negative dimension, or when the temporary file cannot be
  // created.
  static Result<SafetensorsWriter> create(const std::string& path,
                                          std::vector<SafetensorsTensorDecl> tensors,
                                          const std::map<std::string, std::string>& metadata = {});

  SafetensorsWriter(SafetensorsWriter&& other) noexcept;
  SafetensorsWriter& operator=(SafetensorsWriter&& other) noexcept;
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;
  ~SafetensorsWriter();

  // Appends the next `count` floats of the data section (tensor after tensor, in declaration
  // order). Writing more than was declared is an error.
  Status write(const float* data, int64_t count);
  // Checks every declared float was written, then flush + fsync + rename over the target.
  Status commit();

  const std::string& temp_path() const { return temp_path_; }

 private:
  SafetensorsWriter() = default;
  Status fail(const std::string& what, int err);  // closes and removes the temporary file
  void abandon();

  std::string path_;
  std::string temp_path_;
  std::FILE* file_ = nullptr;
  uint64_t floats_expected_ = 0;
  uint64_t floats_written_ = 0;
};

// One F32 tensor to write with write_safetensors (data holds numel floats, row-major).
struct SafetensorsF32Tensor {
  std::string name;
  std::vector<int64_t> shape;
  const float* data = nullptr;
};

// Writes a whole F32 file atomically with SafetensorsWriter.
Status write_safetensors(const std::string& path, const std::vector<SafetensorsF32Tensor>& tensors,
                         const std::map<std::string, std::string>& metadata = {});

// Half-precision conversions used by the reader (exact: every F16/BF16 value is a float).
float f16_to_f32(uint16_t bits);
float bf16_to_f32(uint16_t bits);

}  // namespace edgetrain
