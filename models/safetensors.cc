// safetensors reader (validate the header completely, then pread tensors on demand) and the
// atomic F32 writer.
#include "models/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <numeric>

#include "runtime/json.h"

namespace edgetrain {

// The format is little-endian and so are the machines edgetrain targets (x86-64, AArch64); F32
// data is copied as is.
static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

namespace {

struct DTypeEntry {
  SafetensorsDType dtype;
  const char* name;
  size_t size;
};

constexpr DTypeEntry kDTypes[] = {
    {SafetensorsDType::kBool, "BOOL", 1},      {SafetensorsDType::kU8, "U8", 1},
    {SafetensorsDType::kI8, "I8", 1},          {SafetensorsDType::kF8E5M2, "F8_E5M2", 1},
    {SafetensorsDType::kF8E4M3, "F8_E4M3", 1}, {SafetensorsDType::kI16, "I16", 2},
    {SafetensorsDType::kU16, "U16", 2},        {SafetensorsDType::kF16, "F16", 2},
    {SafetensorsDType::kBF16, "BF16", 2},      {SafetensorsDType::kI32, "I32", 4},
    {SafetensorsDType::kU32, "U32", 4},        {SafetensorsDType::kF32, "F32", 4},
    {SafetensorsDType::kF64, "F64", 8},        {SafetensorsDType::kI64, "I64", 8},
    {SafetensorsDType::kU64, "U64", 8},
};
static_assert(std::size(kDTypes) == static_cast<size_t>(SafetensorsDType::kU64) + 1,
              "every SafetensorsDType needs a name and size");

const DTypeEntry* find_dtype(std::string_view name) {
  for (const DTypeEntry& e : kDTypes)
    if (name == e.name) return &e;
  return nullptr;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string errno_text(int err) { return std::strerror(err); }

// Elements converted per chunk when a tensor needs conversion: bounded extra memory (256 KiB).
constexpr size_t kConvertChunk = 32768;

}  // namespace

const char* safetensors_dtype_name(SafetensorsDType dtype) { return kDTypes[static_cast<size_t>(dtype)].name; }
size_t safetensors_dtype_size(SafetensorsDType dtype) { return kDTypes[static_cast<size_t>(dtype)].size; }

int64_t SafetensorsTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exponent = (h >> 10) & 0x1Fu;
  uint32_t mantissa = h & 0x3FFu;
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24, exact in float.
    float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return sign ? -magnitude : magnitude;
  }
  uint32_t bits;
  if (exponent == 0x1F) {
    bits = sign | 0x7F800000u | (mantissa << 13);  // infinity or NaN (payload kept)
  } else {
    bits = sign | ((exponent + (127 - 15)) << 23) | (mantissa << 13);
  }
  return std::bit_cast<float>(bits);
}

float bf16_to_f32(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

// ---------------------------------------------------------------------------------------------
// Reader

namespace {

// Reads exactly `bytes` at `offset`; false (errno set, or 0 for a short file) otherwise.
bool pread_all(int fd, void* dst, size_t bytes, uint64_t offset) {
  auto* p = static_cast<char*>(dst);
  while (bytes > 0) {
    ssize_t got = ::pread(fd, p, bytes, static_cast<off_t>(offset));
    if (got < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (got == 0) {
      errno = 0;  // the file shrank since it was validated
      return false;
    }
    p += got;
    bytes -= static_cast<size_t>(got);
    offset += static_cast<uint64_t>(got);
  }
  return true;
}

// Parses one header entry into `info` (name already set); returns the problem or "".
std::string parse_entry(const JsonValue& entry, SafetensorsTensorInfo& info) {
  if (!entry.is_object()) return "entry is not an object";
  const JsonValue* dtype = entry.find("dtype");
  if (dtype == nullptr || !dtype->is_string()) return "missing \"dtype\" string";
  const DTypeEntry* dt = find_dtype(dtype->as_string());
  if (dt == nullptr) return "unknown dtype \"" + dtype->as_string().substr(0, 40) + "\"";
  info.dtype = dt->dtype;

  const JsonValue* shape = entry.get_array("shape");
  if (shape == nullptr) return "missing \"shape\" array";
  uint64_t numel = 1;
  for (const JsonValue& d : shape->items()) {
    if (!d.is_int() || d.as_int() < 0) return "shape has an entry that is not a non-negative integer";
    info.shape.push_back(d.as_int());
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(d.as_int()), &numel))
      return "shape " + shape_string(info.shape) + " overflows";
  }

  const JsonValue* offsets = entry.get_array("data_offsets");
  if (offsets == nullptr || offsets->size() != 2 || !offsets->at(0)->is_int() ||
      !offsets->at(1)->is_int() || offsets->at(0)->as_int() < 0 || offsets->at(1)->as_int() < 0)
    return "\"data_offsets\" is not an array of two non-negative integers";
  info.begin = static_cast<uint64_t>(offsets->at(0)->as_int());
  info.end = static_cast<uint64_t>(offsets->at(1)->as_int());
  if (info.end < info.begin)
    return "data_offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) + "] end before they begin";

  uint64_t bytes;
  if (__builtin_mul_overflow(numel, static_cast<uint64_t>(dt->size), &bytes))
    return "shape " + shape_string(info.shape) + " overflows";
  if (bytes != info.end - info.begin)
    return "shape " + shape_string(info.shape) + " of " + dt->name + " needs " + std::to_string(bytes) +
           " bytes but data_offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) +
           "] hold " + std::to_string(info.end - info.begin);
  return "";
}

}  // namespace

Result<SafetensorsReader> SafetensorsReader::open(const std::string& path) {
  const std::string where = "safetensors '" + path + "'";
  SafetensorsReader r;
  r.path_ = path;
  r.fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (r.fd_ < 0) {
    int err = errno;
    if (err == ENOENT) return not_found(where + ": no such file");
    return io_error(where + ": cannot open: " + errno_text(err));
  }
  struct stat st;
  if (::fstat(r.fd_, &st) != 0) return io_error(where + ": cannot stat: " + errno_text(errno));
  if (!S_ISREG(st.st_mode)) return invalid_argument(where + ": not a regular file");
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);

  unsigned char len_bytes[8];
  if (file_size < 8) return corrupt_data(where + ": " + std::to_string(file_size) + " bytes is too short for the 8-byte header length");
  if (!pread_all(r.fd_, len_bytes, 8, 0)) return io_error(where + ": cannot read the header length: " + errno_text(errno));
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  if (header_len > kSafetensorsMaxHeaderBytes)
    return corrupt_data(where + ": header length " + std::to_string(header_len) + " exceeds the limit of " +
                        std::to_string(kSafetensorsMaxHeaderBytes) + " bytes (not a safetensors file?)");
  if (header_len > file_size - 8)
    return corrupt_data(where + ": header length " + std::to_string(header_len) + " runs past the end of the " +
                        std::to_string(file_size) + "-byte file (truncated?)");
  r.data_start_ = 8 + header_len;
  const uint64_t data_size = file_size - r.data_start_;

  std::string header(header_len, '\0');
  if (!pread_all(r.fd_, header.data(), header.size(), 8))
    return io_error(where + ": cannot read the header: " + errno_text(errno));
  // The format requires the header to start with '{' (trailing spaces are padding).
  if (header.empty() || header[0] != '{') return corrupt_data(where + ": header does not start with '{'");
  JsonParseOptions json_options;
  json_options.max_depth = 8;  // a valid header nests 3 deep
  Result<JsonValue> parsed = parse_json(header, json_options);
  if (!parsed.is_ok()) return corrupt_data(where + ": header: " + parsed.status().message());
  const JsonValue& root = parsed.value();

  for (const JsonMember& m : root.members()) {
    if (m.key == "__metadata__") {
      if (!m.value.is_object()) return corrupt_data(where + ": \"__metadata__\" is not an object");
      for (const JsonMember& kv : m.value.members()) {
        if (!kv.value.is_string())
          return corrupt_data(where + ": metadata value of \"" + kv.key + "\" is not a string");
        r.metadata_[kv.key] = kv.value.as_string();
      }
      continue;
    }
    SafetensorsTensorInfo info;
    info.name = m.key;
    std::string problem = parse_entry(m.value, info);
    if (!problem.empty()) return corrupt_data(where + ": tensor '" + m.key + "': " + problem);
    if (info.end > data_size)
      return corrupt_data(where + ": tensor '" + m.key + "': data_offsets [" + std::to_string(info.begin) + ", " +
                          std::to_string(info.end) + "] go past the end of the " + std::to_string(data_size) +
                          "-byte data section (truncated?)");
    r.index_.emplace(info.name, r.tensors_.size());  // names are unique: the parser rejects duplicates
    r.tensors_.push_back(std::move(info));
  }

  // The tensors must tile the data section: sorted by offset, each begins where the previous
  // ended, the first at 0 and the last at the end. This rules out overlaps (two names aliasing
  // bytes), gaps and trailing bytes.
  std::vector<size_t> order(r.tensors_.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const SafetensorsTensorInfo& x = r.tensors_[a];
    const SafetensorsTensorInfo& y = r.tensors_[b];
    return x.begin != y.begin ? x.begin < y.begin : x.end < y.end;
  });
  uint64_t expected = 0;
  const SafetensorsTensorInfo* previous = nullptr;
  for (size_t k : order) {
    const SafetensorsTensorInfo& t = r.tensors_[k];
    if (t.begin < expected)
      return corrupt_data(where + ": tensor '" + t.name + "' bytes [" + std::to_string(t.begin) + ", " +
                          std::to_string(t.end) + ") overlap tensor '" + previous->name + "' bytes [" +
                          std::to_string(previous->begin) + ", " + std::to_string(previous->end) + ")");
    if (t.begin > expected)
      return corrupt_data(where + ": tensor '" + t.name + "' begins at byte " + std::to_string(t.begin) +
                          " of the data section, leaving a gap after " +
                          (previous ? "tensor '" + previous->name + "'" : std::string("the header")) +
                          " which ends at " + std::to_string(expected) + " (tensors must be contiguous)");
    expected = t.end;
    previous = &t;
  }
  if (expected != data_size)
    return corrupt_data(where + ": " + std::to_string(data_size - expected) +
                        " bytes after the last tensor (the data section must end with it)");
  return r;
}

SafetensorsReader::SafetensorsReader(SafetensorsReader&& o) noexcept
    : path_(std::move(o.path_)),
      fd_(std::exchange(o.fd_, -1)),
      data_start_(o.data_start_),
      tensors_(std::move(o.tensors_)),
      index_(std::move(o.index_)),
      metadata_(std::move(o.metadata_)) {}

SafetensorsReader& SafetensorsReader::operator=(SafetensorsReader&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(o.path_);
    fd_ = std::exchange(o.fd_, -1);
    data_start_ = o.data_start_;
    tensors_ = std::move(o.tensors_);
    index_ = std::move(o.index_);
    metadata_ = std::move(o.metadata_);
  }
  return *this;
}

SafetensorsReader::~SafetensorsReader() {
  if (fd_ >= 0) ::close(fd_);
}

const SafetensorsTensorInfo* SafetensorsReader::find(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

Status SafetensorsReader::check_count(const SafetensorsTensorInfo& t, int64_t count) const {
  if (count != t.numel())
    return invalid_argument("safetensors '" + path_ + "': tensor '" + t.name + "' has " + std::to_string(t.numel()) +
                            " elements, caller expected " + std::to_string(count));
  return Status::ok();
}

Status SafetensorsReader::read_bytes(uint64_t offset, void* dst, size_t bytes, const SafetensorsTensorInfo& t) const {
  if (pread_all(fd_, dst, bytes, data_start_ + offset)) return Status::ok();
  int err = errno;
  return io_error("safetensors '" + path_ + "': tensor '" + t.name + "': " +
                  (err == 0 ? std::string("file is shorter than when it was opened") : errno_text(err)));
}

Status SafetensorsReader::read_f32(const SafetensorsTensorInfo& t, float* out, int64_t count) const {
  ET_RETURN_IF_ERROR(check_count(t, count));
  const size_t n = static_cast<size_t>(count);
  switch (t.dtype) {
    case SafetensorsDType::kF32:
      return read_bytes(t.begin, out, n * sizeof(float), t);
    case SafetensorsDType::kF16:
    case SafetensorsDType::kBF16: {
      // Read 16-bit values into the tail of a bounded buffer chunk by chunk and widen them.
      std::vector<uint16_t> half(std::min(n, kConvertChunk));
      const bool is_f16 = t.dtype == SafetensorsDType::kF16;
      for (size_t done = 0; done < n; done += half.size()) {
        size_t m = std::min(half.size(), n - done);
        ET_RETURN_IF_ERROR(read_bytes(t.begin + done * 2, half.data(), m * 2, t));
        for (size_t k = 0; k < m; ++k) out[done + k] = is_f16 ? f16_to_f32(half[k]) : bf16_to_f32(half[k]);
      }
      return Status::ok();
    }
    default:
      return unsupported("safetensors '" + path_ + "': tensor '" + t.name + "' has dtype " +
                         safetensors_dtype_name(t.dtype) + "; only F32, F16 and BF16 read as float");
  }
}

Status SafetensorsReader::read_i64(const SafetensorsTensorInfo& t, int64_t* out, int64_t count) const {
  ET_RETURN_IF_ERROR(check_count(t, count));
  const size_t n = static_cast<size_t>(count);
  switch (t.dtype) {
    case SafetensorsDType::kI64:
      return read_bytes(t.begin, out, n * sizeof(int64_t), t);
    case SafetensorsDType::kI32: {
      std::vector<int32_t> narrow(std::min(n, kConvertChunk));
      for (size_t done = 0; done < n; done += narrow.size()) {
        size_t m = std::min(narrow.size(), n - done);
        ET_RETURN_IF_ERROR(read_bytes(t.begin + done * 4, narrow.data(), m * 4, t));
        for (size_t k = 0; k < m; ++k) out[done + k] = narrow[k];
      }
      return Status::ok();
    }
    default:
      return unsupported("safetensors '" + path_ + "': tensor '" + t.name + "' has dtype " +
                         safetensors_dtype_name(t.dtype) + "; only I64 and I32 read as integers");
  }
}

Result<std::vector<float>> SafetensorsReader::read_f32(std::string_view name) const {
  const SafetensorsTensorInfo* t = find(name);
  if (t == nullptr) return not_found("safetensors '" + path_ + "': no tensor '" + std::string(name) + "'");
  std::vector<float> data(static_cast<size_t>(t->numel()));
  ET_RETURN_IF_ERROR(read_f32(*t, data.data(), t->numel()));
  return data;
}

// ---------------------------------------------------------------------------------------------
// Writer

Result<SafetensorsWriter> SafetensorsWriter::create(const std::string& path,
                                                    std::vector<SafetensorsTensorDecl> tensors,
                                                    const std::map<std::string, std::string>& metadata) {
  const std::string where = "cannot write weights '" + path + "'";
  JsonValue header = JsonValue::object();
  if (!metadata.empty()) {
    JsonValue& meta = header.set("__metadata__", JsonValue::object());
    for (const auto& [key, value] : metadata) meta.set(key, value);
  }
  uint64_t offset = 0;
  for (const SafetensorsTensorDecl& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__")
      return invalid_argument(where + ": invalid tensor name '" + t.name + "'");
    if (header.find(t.name) != nullptr) return invalid_argument(where + ": duplicate tensor name '" + t.name + "'");
    uint64_t numel = 1;
    JsonValue shape = JsonValue::array();
    for (int64_t d : t.shape) {
      if (d < 0 || __builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel))
        return invalid_argument(where + ": tensor '" + t.name + "' has invalid shape " + shape_string(t.shape));
      shape.push_back(d);
    }
    JsonValue entry = JsonValue::object();
    entry.set("dtype", "F32");
    entry.set("shape", std::move(shape));
    JsonValue offsets = JsonValue::array();
    offsets.push_back(offset);
    offset += numel * sizeof(float);
    offsets.push_back(offset);
    entry.set("data_offsets", std::move(offsets));
    header.set(t.name, std::move(entry));
  }
  std::string header_text = to_json(header);
  // Pad with spaces so the data section starts 8-byte aligned in the file (as the reference
  // writer does): a reader that maps the file can then view the data in place.
  header_text.append((8 - header_text.size() % 8) % 8, ' ');

  SafetensorsWriter w;
  w.path_ = path;
  w.temp_path_ = path + ".tmp." + std::to_string(::getpid());
  w.floats_expected_ = offset / sizeof(float);
  // Our own process id names the temporary file, so a leftover one can only be ours.
  ::unlink(w.temp_path_.c_str());
  int fd = ::open(w.temp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    int err = errno;
    return io_error(where + ": cannot create temporary file '" + w.temp_path_ + "': " + errno_text(err));
  }
  w.file_ = ::fdopen(fd, "wb");
  if (w.file_ == nullptr) {
    int err = errno;
    ::close(fd);
    ::unlink(w.temp_path_.c_str());
    return io_error(where + ": " + errno_text(err));
  }
  unsigned char len_bytes[8];
  uint64_t len = header_text.size();
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<unsigned char>(len >> (8 * i));
  if (std::fwrite(len_bytes, 1, 8, w.file_) != 8 ||
      std::fwrite(header_text.data(), 1, header_text.size(), w.file_) != header_text.size())
    return w.fail("writing the header", errno);
  return w;
}

SafetensorsWriter::SafetensorsWriter(SafetensorsWriter&& o) noexcept
    : path_(std::move(o.path_)),
      temp_path_(std::move(o.temp_path_)),
      file_(std::exchange(o.file_, nullptr)),
      floats_expected_(o.floats_expected_),
      floats_written_(o.floats_written_) {}

SafetensorsWriter& SafetensorsWriter::operator=(SafetensorsWriter&& o) noexcept {
  if (this != &o) {
    abandon();
    path_ = std::move(o.path_);
    temp_path_ = std::move(o.temp_path_);
    file_ = std::exchange(o.file_, nullptr);
    floats_expected_ = o.floats_expected_;
    floats_written_ = o.floats_written_;
  }
  return *this;
}

SafetensorsWriter::~SafetensorsWriter() { abandon(); }

void SafetensorsWriter::abandon() {
  if (file_ == nullptr) return;
  std::fclose(file_);
  file_ = nullptr;
  ::unlink(temp_path_.c_str());
}

Status SafetensorsWriter::fail(const std::string& what, int err) {
  abandon();
  return io_error("cannot write weights '" + path_ + "': " + what + " failed: " + errno_text(err) +
                  " (the previous file, if any, is unchanged)");
}

Status SafetensorsWriter::write(const float* data, int64_t count) {
  if (file_ == nullptr) return internal_error("SafetensorsWriter for '" + path_ + "' used after it finished or failed");
  if (count < 0 || static_cast<uint64_t>(count) > floats_expected_ - floats_written_) {
    abandon();
    return invalid_argument("cannot write weights '" + path_ + "': " + std::to_string(count) +
                            " more floats than the " + std::to_string(floats_expected_) + " declared");
  }
  if (std::fwrite(data, sizeof(float), static_cast<size_t>(count), file_) != static_cast<size_t>(count))
    return fail("writing tensor data", errno);
  floats_written_ += static_cast<uint64_t>(count);
  return Status::ok();
}

Status SafetensorsWriter::commit() {
  if (file_ == nullptr) return internal_error("SafetensorsWriter for '" + path_ + "' used after it finished or failed");
  if (floats_written_ != floats_expected_) {
    abandon();
    return invalid_argument("cannot write weights '" + path_ + "': only " + std::to_string(floats_written_) +
                            " of " + std::to_string(floats_expected_) + " declared floats were written");
  }
  // Buffered write errors (a full disk) surface at fflush or fclose, so both are checked; fsync
  // makes the bytes durable before the rename makes them visible.
  if (std::fflush(file_) != 0) return fail("flushing", errno);
  if (::fsync(::fileno(file_)) != 0) return fail("fsync", errno);
  std::FILE* f = std::exchange(file_, nullptr);
  if (std::fclose(f) != 0) {
    int err = errno;
    ::unlink(temp_path_.c_str());
    return io_error("cannot write weights '" + path_ + "': closing failed: " + errno_text(err) +
                    " (the previous file, if any, is unchanged)");
  }
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    int err = errno;
    ::unlink(temp_path_.c_str());
    return io_error("cannot write weights '" + path_ + "': renaming '" + temp_path_ + "' over it failed: " +
                    errno_text(err) + " (the previous file, if any, is unchanged)");
  }
  // Make the rename itself durable. Best effort: some filesystems refuse fsync on directories,
  // and the new file is complete and in place either way.
  std::string dir = path_.substr(0, path_.find_last_of('/') == std::string::npos ? 0 : path_.find_last_of('/') + 1);
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
  return Status::ok();
}

Status write_safetensors(const std::string& path, const std::vector<SafetensorsF32Tensor>& tensors,
                         const std::map<std::string, std::string>& metadata) {
  std::vector<SafetensorsTensorDecl> decls;
  decls.reserve(tensors.size());
  for (const SafetensorsF32Tensor& t : tensors) decls.push_back({t.name, t.shape});
  ET_ASSIGN_OR_RETURN(SafetensorsWriter writer, SafetensorsWriter::create(path, std::move(decls), metadata));
  for (const SafetensorsF32Tensor& t : tensors) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    if (n > 0 && t.data == nullptr)
      return invalid_argument("cannot write weights '" + path + "': tensor '" + t.name + "' has no data");
    if (n > 0) ET_RETURN_IF_ERROR(writer.write(t.data, n));
  }
  return writer.commit();
}

}  // namespace edgetrain
