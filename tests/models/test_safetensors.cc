// models/safetensors (format reader/writer) and models/weights (ParameterStore <-> file with
// torchvision names and the OIHW <-> OHWI conv transpose).
#include "models/safetensors.h"

#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "models/weights.h"

namespace edgetrain {
namespace {

namespace fs = std::filesystem;

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base != nullptr && *base ? base : "/tmp") + "/edgetrain_st_XXXXXX";
    char* made = ::mkdtemp(tmpl.data());
    EXPECT_NE(made, nullptr) << "mkdtemp failed";
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::permissions(path_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(path_)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

 private:
  std::string path_;
};

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

// A safetensors file from a header given as text and raw data bytes.
std::string raw_file(const std::string& header, const std::string& data, uint64_t header_len) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>(header_len >> (8 * i));
  return out + header + data;
}
std::string raw_file(const std::string& header, const std::string& data) {
  return raw_file(header, data, header.size());
}

std::string floats_as_bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

// Opens a hand-built file and expects a kCorruptData error whose message contains each of `parts`.
void expect_corrupt(const TempDir& dir, const std::string& name, const std::string& bytes,
                    const std::vector<std::string>& parts) {
  std::string path = dir.file(name);
  write_bytes(path, bytes);
  Result<SafetensorsReader> r = SafetensorsReader::open(path);
  ASSERT_FALSE(r.is_ok()) << name << " was accepted";
  EXPECT_EQ(r.status().code(), StatusCode::kCorruptData) << r.status().to_string();
  const std::string& msg = r.status().message();
  EXPECT_NE(msg.find(path), std::string::npos) << "message does not name the file: " << msg;
  for (const std::string& part : parts) EXPECT_NE(msg.find(part), std::string::npos) << "'" << part << "' not in: " << msg;
}

std::string fixture_path(const std::string& name) {
  const char* root = std::getenv("EDGETRAIN_SOURCE_ROOT");  // set by meson test
  if (root != nullptr && *root) return std::string(root) + "/tests/fixtures/" + name;
  // Run by hand: from the build directory (__FILE__ is relative to it) or the source root.
  std::string from_build = (fs::path(__FILE__).parent_path().parent_path() / "fixtures" / name).string();
  return fs::exists(from_build) ? from_build : "tests/fixtures/" + name;
}

// ---------------------------------------------------------------------------------------------
// Format: round trip and layout

TEST(Safetensors, WriteThenReadRoundTripsDataShapesAndMetadata) {
  TempDir dir;
  std::vector<float> a = {1.0f, -2.5f, 3.25f, std::numeric_limits<float>::denorm_min(), -0.0f, 1e30f};
  std::vector<float> b = {42.0f};
  std::vector<SafetensorsF32Tensor> tensors = {
      {"layer.a", {2, 3}, a.data()},
      {"scalar", {}, b.data()},
      {"empty", {0, 4}, nullptr},
      {"last", {1}, b.data()},
  };
  std::string path = dir.file("w.safetensors");
  ASSERT_TRUE(write_safetensors(path, tensors, {{"k", "v"}, {"note", "\"quoted\" \xC3\xA9"}}).is_ok());

  std::string bytes = read_bytes(path);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<unsigned char>(bytes[static_cast<size_t>(i)]);
  EXPECT_EQ(header_len % 8, 0u) << "data section not 8-byte aligned";
  EXPECT_EQ(bytes.size(), 8 + header_len + (6 + 1 + 0 + 1) * 4);

  Result<SafetensorsReader> r = SafetensorsReader::open(path);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const auto& ts = r->tensors();
  ASSERT_EQ(ts.size(), 4u);
  EXPECT_EQ(ts[0].name, "layer.a");  // header order is declaration order
  EXPECT_EQ(ts[0].shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(ts[0].dtype, SafetensorsDType::kF32);
  EXPECT_EQ(ts[0].begin, 0u);
  EXPECT_EQ(ts[0].end, 24u);
  EXPECT_TRUE(ts[1].shape.empty());
  EXPECT_EQ(ts[1].numel(), 1);
  EXPECT_EQ(ts[2].numel(), 0);
  EXPECT_EQ(ts[2].begin, ts[2].end);
  EXPECT_EQ(r->metadata().at("k"), "v");
  EXPECT_EQ(r->metadata().at("note"), "\"quoted\" \xC3\xA9");

  Result<std::vector<float>> got = r->read_f32("layer.a");
  ASSERT_TRUE(got.is_ok()) << got.status().to_string();
  ASSERT_EQ(got->size(), a.size());
  EXPECT_EQ(std::memcmp(got->data(), a.data(), a.size() * 4), 0) << "F32 data not bit-identical";
  EXPECT_EQ(r->read_f32("scalar").value(), b);
  EXPECT_TRUE(r->read_f32("empty")->empty());
  EXPECT_EQ(r->read_f32("last").value(), b);
  EXPECT_EQ(r->find("nope"), nullptr);
  EXPECT_EQ(r->read_f32("nope").status().code(), StatusCode::kNotFound);
}

TEST(Safetensors, ReaderAcceptsHeaderOrderDifferentFromDataOrder) {
  TempDir dir;
  std::string header = R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},)"
                       R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}  )";
  write_bytes(dir.file("x"), raw_file(header, floats_as_bytes({1.0f, 2.0f})));
  Result<SafetensorsReader> r = SafetensorsReader::open(dir.file("x"));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->read_f32("a")->at(0), 1.0f);
  EXPECT_EQ(r->read_f32("b")->at(0), 2.0f);
}

// ---------------------------------------------------------------------------------------------
// Format: every reader error on a hand-built file

const std::string kOneTensor = R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";

TEST(SafetensorsReaderErrors, MissingFileIsNotFound) {
  TempDir dir;
  Result<SafetensorsReader> r = SafetensorsReader::open(dir.file("absent.safetensors"));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("absent.safetensors"), std::string::npos);
}

TEST(SafetensorsReaderErrors, DirectoryIsRejected) {
  TempDir dir;
  Result<SafetensorsReader> r = SafetensorsReader::open(dir.path());
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
}

TEST(SafetensorsReaderErrors, TruncatedFiles) {
  TempDir dir;
  std::string good = raw_file(kOneTensor, floats_as_bytes({1, 2}));
  expect_corrupt(dir, "empty", "", {"too short"});
  expect_corrupt(dir, "len_only", good.substr(0, 5), {"too short"});
  // Cut inside the header: the header length now runs past the end of the file.
  expect_corrupt(dir, "cut_header", good.substr(0, 20), {"header length", "past the end"});
  // Cut inside the data: the tensor's offsets run past the data section.
  expect_corrupt(dir, "cut_data", good.substr(0, good.size() - 3), {"tensor 't'", "past the end"});
}

TEST(SafetensorsReaderErrors, BadHeaderLength) {
  TempDir dir;
  std::string data = floats_as_bytes({1, 2});
  expect_corrupt(dir, "huge", raw_file(kOneTensor, data, 100'000'001), {"exceeds the limit"});
  expect_corrupt(dir, "max", raw_file(kOneTensor, data, ~uint64_t{0}), {"exceeds the limit"});
  expect_corrupt(dir, "too_long", raw_file(kOneTensor, data, kOneTensor.size() + 100), {"past the end"});
  // Too short: the header is cut mid-JSON and the rest is read as data.
  expect_corrupt(dir, "too_short", raw_file(kOneTensor, data, kOneTensor.size() - 2), {"json"});
  expect_corrupt(dir, "zero", raw_file("", ""), {"does not start with '{'"});
}

TEST(SafetensorsReaderErrors, BadJson) {
  TempDir dir;
  expect_corrupt(dir, "syntax", raw_file(R"({"t":{"dtype":"F32",}})", ""), {"header", "json: at byte 20"});
  expect_corrupt(dir, "not_object", raw_file("[1, 2]  ", ""), {"does not start with '{'"});
  expect_corrupt(dir, "trailing", raw_file("{} {}   ", ""), {"json"});
  expect_corrupt(dir, "duplicate",
                 raw_file(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                          R"("t":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                          floats_as_bytes({1, 2})),
                 {"duplicate object key \"t\""});
  expect_corrupt(dir, "entry_not_object", raw_file(R"({"t":[0,4]})", ""), {"tensor 't'", "not an object"});
  expect_corrupt(dir, "metadata_not_strings", raw_file(R"({"__metadata__":{"epoch":3}})", ""),
                 {"metadata value of \"epoch\""});
}

TEST(SafetensorsReaderErrors, BadEntries) {
  TempDir dir;
  std::string d8 = floats_as_bytes({1, 2});
  expect_corrupt(dir, "no_dtype", raw_file(R"({"t":{"shape":[2],"data_offsets":[0,8]}})", d8), {"tensor 't'", "dtype"});
  // An unknown dtype cannot be validated (its size is unknown): rejected.
  expect_corrupt(dir, "unknown_dtype", raw_file(R"({"t":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", d8),
                 {"tensor 't'", "unknown dtype \"F33\""});
  expect_corrupt(dir, "negative_dim", raw_file(R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", d8),
                 {"tensor 't'", "shape"});
  expect_corrupt(dir, "fraction_dim", raw_file(R"({"t":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", d8),
                 {"tensor 't'", "shape"});
  expect_corrupt(dir, "overflow_shape",
                 raw_file(R"({"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", d8),
                 {"tensor 't'", "overflows"});
  expect_corrupt(dir, "one_offset", raw_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8]}})", d8),
                 {"tensor 't'", "data_offsets"});
  expect_corrupt(dir, "reversed", raw_file(R"({"t":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", d8),
                 {"tensor 't'", "end before they begin"});
}

TEST(SafetensorsReaderErrors, DtypeShapeMismatch) {
  TempDir dir;
  // [2, 2] F32 needs 16 bytes; the offsets give 8.
  expect_corrupt(dir, "f32", raw_file(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,8]}})", std::string(8, '\0')),
                 {"tensor 'w'", "needs 16 bytes", "hold 8"});
  // Same bytes, read as F16: [2, 2] needs exactly 8, so this one is valid.
  write_bytes(dir.file("f16"), raw_file(R"({"w":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]}})", std::string(8, '\0')));
  EXPECT_TRUE(SafetensorsReader::open(dir.file("f16")).is_ok());
}

TEST(SafetensorsReaderErrors, OffsetsPastTheEnd) {
  TempDir dir;
  expect_corrupt(dir, "past", raw_file(R"({"t":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", std::string(8, '\0')),
                 {"tensor 't'", "[0, 16]", "past the end of the 8-byte data section"});
}

TEST(SafetensorsReaderErrors, OverlapsGapsAndTrailingBytes) {
  TempDir dir;
  std::string d12(12, '\0');
  expect_corrupt(dir, "overlap",
                 raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                          R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", d12),
                 {"tensor 'b'", "overlap tensor 'a'"});
  expect_corrupt(dir, "same_bytes",
                 raw_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},)"
                          R"("b":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}})", d12),
                 {"overlap"});
  expect_corrupt(dir, "gap",
                 raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                          R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})", d12),
                 {"tensor 'b'", "gap", "contiguous"});
  expect_corrupt(dir, "leading_gap", raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", std::string(8, '\0')),
                 {"tensor 'a'", "gap"});
  expect_corrupt(dir, "trailing", raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", std::string(8, '\0')),
                 {"4 bytes after the last tensor"});
}

// ---------------------------------------------------------------------------------------------
// Format: dtype conversions

// Independent definitions of the two half formats, from sign/exponent/mantissa with ldexp.
double f16_reference(uint16_t h) {
  int sign = h >> 15, e = (h >> 10) & 0x1F, m = h & 0x3FF;
  double v = e == 0 ? std::ldexp(m, -24) : std::ldexp(1024 + m, e - 25);
  return sign ? -v : v;
}
double bf16_reference(uint16_t h) {
  int sign = h >> 15, e = (h >> 7) & 0xFF, m = h & 0x7F;
  double v = e == 0 ? std::ldexp(m, -133) : std::ldexp(128 + m, e - 134);
  return sign ? -v : v;
}

TEST(SafetensorsConversion, F16MatchesTheFormatDefinitionForEveryValue) {
  for (uint32_t h = 0; h < 65536; ++h) {
    float got = f16_to_f32(static_cast<uint16_t>(h));
    int e = (h >> 10) & 0x1F;
    if (e == 0x1F) {
      if ((h & 0x3FF) == 0) EXPECT_EQ(got, (h & 0x8000) ? -INFINITY : INFINITY) << h;
      else EXPECT_TRUE(std::isnan(got)) << h;
      continue;
    }
    ASSERT_EQ(static_cast<double>(got), f16_reference(static_cast<uint16_t>(h))) << "f16 bits " << h;
    ASSERT_EQ(std::signbit(got), (h & 0x8000) != 0) << h;
  }
  EXPECT_EQ(f16_to_f32(0x3C00), 1.0f);
  EXPECT_EQ(f16_to_f32(0x7BFF), 65504.0f);
  EXPECT_EQ(f16_to_f32(0x0001), 0x1p-24f);
}

TEST(SafetensorsConversion, BF16MatchesTheFormatDefinitionForEveryValue) {
  for (uint32_t h = 0; h < 65536; ++h) {
    float got = bf16_to_f32(static_cast<uint16_t>(h));
    int e = (h >> 7) & 0xFF;
    if (e == 0xFF) {
      if ((h & 0x7F) == 0) EXPECT_EQ(got, (h & 0x8000) ? -INFINITY : INFINITY) << h;
      else EXPECT_TRUE(std::isnan(got)) << h;
      continue;
    }
    ASSERT_EQ(static_cast<double>(got), bf16_reference(static_cast<uint16_t>(h))) << "bf16 bits " << h;
  }
  EXPECT_EQ(bf16_to_f32(0x3F80), 1.0f);
  EXPECT_EQ(bf16_to_f32(0xC040), -3.0f);
}

TEST(SafetensorsConversion, ReadsF16Bf16AndIntegerTensorsFromAFile) {
  TempDir dir;
  const uint16_t f16[] = {0x3C00, 0xC000, 0x0001, 0x7C00};     // 1, -2, 2^-24, inf
  const uint16_t bf16[] = {0x3F80, 0xC040, 0x4049};            // 1, -3, 3.140625
  const int32_t i32[] = {-5, 7};
  const int64_t i64[] = {int64_t{1} << 40};
  std::string data(reinterpret_cast<const char*>(f16), 8);
  data.append(reinterpret_cast<const char*>(bf16), 6);
  data.append(reinterpret_cast<const char*>(i32), 8);
  data.append(reinterpret_cast<const char*>(i64), 8);
  std::string header = R"({"h":{"dtype":"F16","shape":[4],"data_offsets":[0,8]},)"
                       R"("b":{"dtype":"BF16","shape":[3],"data_offsets":[8,14]},)"
                       R"("i":{"dtype":"I32","shape":[2],"data_offsets":[14,22]},)"
                       R"("l":{"dtype":"I64","shape":[1],"data_offsets":[22,30]}})";
  write_bytes(dir.file("mixed"), raw_file(header, data));
  Result<SafetensorsReader> r = SafetensorsReader::open(dir.file("mixed"));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->read_f32("h").value(), (std::vector<float>{1.0f, -2.0f, 0x1p-24f, INFINITY}));
  EXPECT_EQ(r->read_f32("b").value(), (std::vector<float>{1.0f, -3.0f, 3.140625f}));
  int64_t ints[2];
  ASSERT_TRUE(r->read_i64(*r->find("i"), ints, 2).is_ok());
  EXPECT_EQ(ints[0], -5);
  EXPECT_EQ(ints[1], 7);
  ASSERT_TRUE(r->read_i64(*r->find("l"), ints, 1).is_ok());
  EXPECT_EQ(ints[0], int64_t{1} << 40);
  // Wrong kind of read, wrong count.
  EXPECT_EQ(r->read_f32("i").status().code(), StatusCode::kUnsupported);
  EXPECT_EQ(r->read_i64(*r->find("h"), ints, 4).code(), StatusCode::kUnsupported);
  float two[2];
  Status wrong_count = r->read_f32(*r->find("h"), two, 2);
  EXPECT_EQ(wrong_count.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(wrong_count.message().find("tensor 'h' has 4 elements"), std::string::npos) << wrong_count.message();
}

TEST(SafetensorsConversion, LargeF16TensorConvertsAcrossChunks) {
  // More elements than one conversion chunk (32768), to cover the chunk boundaries.
  TempDir dir;
  const size_t n = 70001;
  std::vector<uint16_t> h(n);
  for (size_t k = 0; k < n; ++k) h[k] = static_cast<uint16_t>(k * 7 % 0x7C00);  // finite values
  std::string header = R"({"x":{"dtype":"F16","shape":[70001],"data_offsets":[0,140002]}})";
  write_bytes(dir.file("big"), raw_file(header, std::string(reinterpret_cast<const char*>(h.data()), n * 2)));
  Result<SafetensorsReader> r = SafetensorsReader::open(dir.file("big"));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  std::vector<float> got = r->read_f32("x").value();
  for (size_t k = 0; k < n; ++k) ASSERT_EQ(got[k], f16_to_f32(h[k])) << k;
}

// ---------------------------------------------------------------------------------------------
// Writer: validation and atomicity

TEST(SafetensorsWriter, RejectsBadDeclarationsAndWrongAmounts) {
  TempDir dir;
  std::string path = dir.file("w");
  EXPECT_EQ(SafetensorsWriter::create(path, {{"a", {1}}, {"a", {2}}}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(SafetensorsWriter::create(path, {{"", {1}}}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(SafetensorsWriter::create(path, {{"__metadata__", {1}}}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(SafetensorsWriter::create(path, {{"a", {-1}}}).status().code(), StatusCode::kInvalidArgument);

  float data[4] = {1, 2, 3, 4};
  {
    Result<SafetensorsWriter> w = SafetensorsWriter::create(path, {{"a", {2}}});
    ASSERT_TRUE(w.is_ok());
    EXPECT_EQ(w->write(data, 3).code(), StatusCode::kInvalidArgument);  // more than declared
  }
  {
    Result<SafetensorsWriter> w = SafetensorsWriter::create(path, {{"a", {2}}});
    ASSERT_TRUE(w.is_ok());
    ASSERT_TRUE(w->write(data, 1).is_ok());
    EXPECT_EQ(w->commit().code(), StatusCode::kInvalidArgument);  // fewer than declared
  }
  EXPECT_TRUE(dir.entries().empty()) << "a failed writer left files behind";
}

TEST(SafetensorsWriter, WritesInPiecesAndCommitReplacesTheOldFile) {
  TempDir dir;
  std::string path = dir.file("w.safetensors");
  write_bytes(path, "old contents");
  float data[5] = {1, 2, 3, 4, 5};
  Result<SafetensorsWriter> w = SafetensorsWriter::create(path, {{"a", {2}}, {"b", {3}}});
  ASSERT_TRUE(w.is_ok()) << w.status().to_string();
  ASSERT_TRUE(w->write(data, 1).is_ok());
  ASSERT_TRUE(w->write(data + 1, 3).is_ok());
  // Until commit the target still holds the old bytes and the new ones sit in the temp file.
  EXPECT_EQ(read_bytes(path), "old contents");
  EXPECT_TRUE(fs::exists(w->temp_path()));
  EXPECT_EQ(fs::path(w->temp_path()).parent_path(), fs::path(path).parent_path());
  ASSERT_TRUE(w->write(data + 4, 1).is_ok());
  ASSERT_TRUE(w->commit().is_ok());
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"w.safetensors"});
  Result<SafetensorsReader> r = SafetensorsReader::open(path);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->read_f32("b").value(), (std::vector<float>{3, 4, 5}));
}

TEST(SafetensorsWriter, AbandonedWriterLeavesTheOldFile) {
  TempDir dir;
  std::string path = dir.file("w.safetensors");
  write_bytes(path, "old contents");
  {
    Result<SafetensorsWriter> w = SafetensorsWriter::create(path, {{"a", {2}}});
    ASSERT_TRUE(w.is_ok());
    float x = 1;
    ASSERT_TRUE(w->write(&x, 1).is_ok());
  }  // destroyed without commit (an error path in the caller)
  EXPECT_EQ(read_bytes(path), "old contents");
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"w.safetensors"});
}

std::vector<SafetensorsF32Tensor> one_tensor(const std::vector<float>& v) {
  return {{"t", {static_cast<int64_t>(v.size())}, v.data()}};
}

// Runs a save into a read-only directory. Root ignores permissions, so as root the save runs in a
// child process that first drops to the unprivileged user nobody (65534).
Status save_without_write_permission(const std::string& dir, const std::string& path,
                                     const std::vector<float>& v) {
  if (::chmod(dir.c_str(), 0555) != 0) return io_error("chmod failed");
  Status result;
  if (::geteuid() != 0) {
    result = write_safetensors(path, one_tensor(v));
  } else {
    pid_t child = ::fork();
    if (child == 0) {
      if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(2);
      Status s = write_safetensors(path, one_tensor(v));
      bool as_expected = s.code() == StatusCode::kIoError && s.message().find(path) != std::string::npos;
      ::_exit(as_expected ? 0 : 1);
    }
    int wstatus = 0;
    ::waitpid(child, &wstatus, 0);
    int code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
    result = code == 0 ? io_error("child: save failed as expected naming " + path)
                       : internal_error("child exit code " + std::to_string(code) +
                                        " (1: save succeeded or gave the wrong error, 2: cannot drop privileges)");
  }
  ::chmod(dir.c_str(), 0755);
  return result;
}

TEST(SafetensorsAtomicSave, KeepsOldFileWhenTargetDirectoryIsNotWritable) {
  TempDir dir;
  std::string path = dir.file("w.safetensors");
  std::vector<float> v = {1, 2, 3};
  ASSERT_TRUE(write_safetensors(path, one_tensor(v)).is_ok());
  std::string before = read_bytes(path);
  Status s = save_without_write_permission(dir.path(), path, {4, 5, 6});
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.code(), StatusCode::kIoError) << s.to_string();
  EXPECT_NE(s.message().find(path), std::string::npos) << s.message();
  EXPECT_EQ(read_bytes(path), before);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"w.safetensors"});
}

TEST(SafetensorsAtomicSave, KeepsOldFileWhenTempFileCannotBeCreated) {
  // A directory squatting on the temporary file's name makes creating it fail, even for root.
  TempDir dir;
  std::string path = dir.file("w.safetensors");
  std::vector<float> v = {1, 2, 3};
  ASSERT_TRUE(write_safetensors(path, one_tensor(v)).is_ok());
  std::string before = read_bytes(path);
  std::string squat = path + ".tmp." + std::to_string(::getpid());
  fs::create_directories(squat + "/inside");
  std::vector<float> v2 = {4, 5, 6};
  Status s = write_safetensors(path, one_tensor(v2));
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.code(), StatusCode::kIoError);
  EXPECT_NE(s.message().find("temporary file"), std::string::npos) << s.message();
  EXPECT_EQ(read_bytes(path), before);
}

TEST(SafetensorsAtomicSave, KeepsOldFileWhenTheWriteFails) {
  // RLIMIT_FSIZE makes writes past 4 KiB fail with EFBIG, as a full disk would (ENOSPC).
  TempDir dir;
  std::string path = dir.file("w.safetensors");
  std::vector<float> small = {1, 2, 3};
  ASSERT_TRUE(write_safetensors(path, one_tensor(small)).is_ok());
  std::string before = read_bytes(path);

  std::vector<float> big(100000, 0.5f);  // 400 KB
  struct rlimit old_limit;
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  struct rlimit limit = old_limit;
  limit.rlim_cur = 4096;
  auto old_handler = ::signal(SIGXFSZ, SIG_IGN);  // report EFBIG instead of killing the process
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &limit), 0);
  Status s = write_safetensors(path, one_tensor(big));
  ::setrlimit(RLIMIT_FSIZE, &old_limit);
  ::signal(SIGXFSZ, old_handler);

  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.code(), StatusCode::kIoError);
  EXPECT_NE(s.message().find("previous file, if any, is unchanged"), std::string::npos) << s.message();
  EXPECT_EQ(read_bytes(path), before);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"w.safetensors"}) << "temporary file left behind";
}

TEST(SafetensorsAtomicSave, FailedRenameLeavesNoTemporaryFile) {
  TempDir dir;
  std::string path = dir.file("target");
  fs::create_directories(path + "/child");  // a non-empty directory cannot be replaced by a file
  std::vector<float> v = {1};
  Status s = write_safetensors(path, one_tensor(v));
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.code(), StatusCode::kIoError);
  EXPECT_TRUE(fs::is_directory(path + "/child"));
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"target"});
}

TEST(SafetensorsAtomicSave, MissingDirectoryIsAnError) {
  TempDir dir;
  std::vector<float> v = {1};
  Status s = write_safetensors(dir.file("no/such/dir/w.safetensors"), one_tensor(v));
  EXPECT_EQ(s.code(), StatusCode::kIoError);
  EXPECT_NE(s.message().find("no/such/dir/w.safetensors"), std::string::npos) << s.message();
}

// ---------------------------------------------------------------------------------------------
// Weights <-> ParameterStore

// A tiny conv -> batch norm -> linear model, spelled out by hand; it mirrors
// tests/fixtures/make_safetensors_fixture.py. Conv weight in memory: OHWI [O=2, kh=2, kw=2, I=3].
std::vector<ParamSpec> tiny_specs(int64_t classes = 3) {
  auto spec = [](std::string name, Shape shape, ParamKind kind, bool conv = false) {
    ParamSpec s;
    s.name = std::move(name);
    s.shape = shape;
    s.kind = kind;
    s.is_conv_weight = conv;
    return s;
  };
  return {
      spec("conv.weight", {2, 2, 2, 3}, ParamKind::kWeight, true),
      spec("bn.weight", {2}, ParamKind::kNormWeight),
      spec("bn.bias", {2}, ParamKind::kNormBias),
      spec("bn.running_mean", {2}, ParamKind::kRunningMean),
      spec("bn.running_var", {2}, ParamKind::kRunningVar),
      spec("fc.weight", {classes, 2}, ParamKind::kWeight),
      spec("fc.bias", {classes}, ParamKind::kBias),
  };
}

ParameterStore make_store(const std::vector<ParamSpec>& specs, float fill) {
  Result<ParameterStore> store = ParameterStore::create(specs);
  EXPECT_TRUE(store.is_ok()) << store.status().to_string();
  ParameterStore s = std::move(store).value();
  for (int p = 0; p < s.size(); ++p)
    for (int64_t k = 0; k < s.spec(p).shape.numel(); ++k) s.data(p)[k] = fill + static_cast<float>(p * 100 + k);
  return s;
}

std::vector<float> values(const ParameterStore& s, const std::string& name) {
  int p = s.find(name);
  EXPECT_GE(p, 0) << name;
  if (p < 0) return {};
  return std::vector<float>(s.data(p), s.data(p) + s.spec(p).shape.numel());
}

// The same formulas as the fixture script.
float fixture_conv(int o, int i, int h, int w) { return static_cast<float>(o * 1000 + i * 100 + h * 10 + w + 0.25); }
float fixture_fc(int r, int c) { return static_cast<float>(r * 10 + c - 0.5); }

TEST(Weights, LoadsAFileWrittenByPython) {
  ParameterStore store = make_store(tiny_specs(), 0);
  WeightsLoadReport report;
  Status s = load_weights(fixture_path("tiny_torchvision.safetensors"), store, {}, &report);
  ASSERT_TRUE(s.is_ok()) << s.to_string();

  // OIHW on disk -> OHWI in memory, element by element.
  const float* conv = store.data(store.find("conv.weight"));
  for (int o = 0; o < 2; ++o)
    for (int h = 0; h < 2; ++h)
      for (int w = 0; w < 2; ++w)
        for (int i = 0; i < 3; ++i)
          EXPECT_EQ(conv[((o * 2 + h) * 2 + w) * 3 + i], fixture_conv(o, i, h, w)) << o << h << w << i;
  EXPECT_EQ(values(store, "bn.weight"), (std::vector<float>{1.5f, -0.25f}));  // from F16
  EXPECT_EQ(values(store, "bn.bias"), (std::vector<float>{0.5f, -2.0f}));     // from BF16
  EXPECT_EQ(values(store, "bn.running_mean"), (std::vector<float>{0.125f, -0.375f}));
  EXPECT_EQ(values(store, "bn.running_var"), (std::vector<float>{1.0f, 2.0f}));
  std::vector<float> fc = values(store, "fc.weight");  // [out][in] as in torch
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 2; ++c) EXPECT_EQ(fc[static_cast<size_t>(r * 2 + c)], fixture_fc(r, c));
  EXPECT_EQ(values(store, "fc.bias"), (std::vector<float>{0.1f, -0.2f, 0.3f}));

  // bn.num_batches_tracked (I64) is in the file and silently ignored.
  EXPECT_EQ(report.loaded.size(), 7u);
  EXPECT_TRUE(report.unexpected.empty());
  EXPECT_TRUE(report.missing.empty());
  EXPECT_EQ(report.metadata.at("format"), "pt");
}

TEST(Weights, SaveWritesConvWeightsAsOihwElementByElement) {
  ParameterStore store = make_store(tiny_specs(), 0.5f);
  TempDir dir;
  std::string path = dir.file("tiny.safetensors");
  ASSERT_TRUE(save_weights(path, store, {{"epoch", "3"}}).is_ok());

  Result<SafetensorsReader> r = SafetensorsReader::open(path);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->metadata().at("epoch"), "3");
  EXPECT_EQ(r->metadata().at("format"), "pt");
  ASSERT_EQ(r->tensors().size(), 7u);
  const SafetensorsTensorInfo* t = r->find("conv.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{2, 3, 2, 2}));  // O, I, kh, kw
  std::vector<float> disk = r->read_f32("conv.weight").value();
  const float* mem = store.data(store.find("conv.weight"));
  for (int o = 0; o < 2; ++o)
    for (int i = 0; i < 3; ++i)
      for (int h = 0; h < 2; ++h)
        for (int w = 0; w < 2; ++w)
          EXPECT_EQ(disk[static_cast<size_t>(((o * 3 + i) * 2 + h) * 2 + w)], mem[((o * 2 + h) * 2 + w) * 3 + i]);
  EXPECT_EQ(r->find("fc.weight")->shape, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(r->read_f32("fc.weight").value(), values(store, "fc.weight"));
}

TEST(Weights, SaveThenLoadIsBitIdentical) {
  ParameterStore original = make_store(tiny_specs(), 0.0f);
  for (int p = 0; p < original.size(); ++p)
    for (int64_t k = 0; k < original.spec(p).shape.numel(); ++k)
      original.data(p)[k] = std::sin(static_cast<float>(p * 37 + k)) * 1e-3f;
  TempDir dir;
  std::string path = dir.file("w.safetensors");
  ASSERT_TRUE(save_weights(path, original).is_ok());
  ParameterStore loaded = make_store(tiny_specs(), 9.0f);
  ASSERT_TRUE(load_weights(path, loaded).is_ok());
  ASSERT_EQ(std::memcmp(loaded.data(0), original.data(0), original.bytes()), 0);
}

TEST(Weights, MissingTensorsFailWithTheirNamesUnlessAllowed) {
  TempDir dir;
  std::string path = dir.file("partial.safetensors");
  std::vector<float> fc(6, 1.0f), bias(3, 2.0f);
  ASSERT_TRUE(write_safetensors(path, {{"fc.weight", {3, 2}, fc.data()}, {"fc.bias", {3}, bias.data()}}).is_ok());

  ParameterStore store = make_store(tiny_specs(), 0);
  std::vector<float> conv_before = values(store, "conv.weight");
  Status s = load_weights(path, store);
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_NE(s.message().find(path), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("5 tensor(s) the model needs are missing: conv.weight, bn.weight, bn.bias, "
                             "bn.running_mean, bn.running_var"), std::string::npos) << s.message();
  EXPECT_EQ(values(store, "fc.weight"), values(make_store(tiny_specs(), 0), "fc.weight")) << "failed load changed the store";

  WeightsLoadOptions options;
  options.allow_missing = true;
  WeightsLoadReport report;
  ASSERT_TRUE(load_weights(path, store, options, &report).is_ok());
  EXPECT_EQ(values(store, "conv.weight"), conv_before);  // kept its value
  EXPECT_EQ(values(store, "fc.weight"), fc);
  EXPECT_EQ(report.missing.size(), 5u);
  EXPECT_EQ(report.loaded, (std::vector<std::string>{"fc.weight", "fc.bias"}));
}

TEST(Weights, LongListsOfMissingNamesAreShortened) {
  std::vector<ParamSpec> specs;
  for (int k = 0; k < 8; ++k) {
    ParamSpec s;
    s.name = std::string(1, 'p') + static_cast<char>('0' + k);
    s.shape = {1};
    specs.push_back(s);
  }
  ParameterStore store = make_store(specs, 0);
  TempDir dir;
  ASSERT_TRUE(write_safetensors(dir.file("empty"), {}).is_ok());
  Status s = load_weights(dir.file("empty"), store);
  EXPECT_NE(s.message().find("8 tensor(s) the model needs are missing: p0, p1, p2, p3, p4 and 3 more"),
            std::string::npos) << s.message();
}

TEST(Weights, UnexpectedTensorsFailUnlessAllowed) {
  ParameterStore source = make_store(tiny_specs(), 1.0f);
  TempDir dir;
  std::string path = dir.file("w.safetensors");
  ASSERT_TRUE(save_weights(path, source).is_ok());
  // The model lacks bn.weight, bn.bias and the running statistics: those four are unexpected.
  std::vector<ParamSpec> fewer = tiny_specs();
  fewer.erase(fewer.begin() + 1, fewer.begin() + 5);
  ParameterStore store = make_store(fewer, 0);
  Status s = load_weights(path, store);
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("4 tensor(s) in the file are not in the model: bn.weight, bn.bias, bn.running_mean, "
                             "bn.running_var"),
            std::string::npos) << s.message();

  WeightsLoadOptions options;
  options.allow_unexpected = true;
  WeightsLoadReport report;
  ASSERT_TRUE(load_weights(path, store, options, &report).is_ok());
  EXPECT_EQ(report.unexpected.size(), 4u);
  EXPECT_EQ(values(store, "fc.bias"), values(source, "fc.bias"));
}

TEST(Weights, ShapeMismatchNamesTheTensorAndBothShapesAndChangesNothing) {
  ParameterStore ten_classes = make_store(tiny_specs(10), 1.0f);
  TempDir dir;
  std::string path = dir.file("w.safetensors");
  ASSERT_TRUE(save_weights(path, ten_classes).is_ok());

  ParameterStore store = make_store(tiny_specs(3), 0);
  Status s = load_weights(path, store);
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("tensor 'fc.weight' has shape [10, 2] in the file but the model expects [3, 2]"),
            std::string::npos) << s.message();
  // Nothing was written: checks run before the first copy (conv.weight comes first in the file).
  EXPECT_EQ(values(store, "conv.weight"), values(make_store(tiny_specs(3), 0), "conv.weight"));
}

TEST(Weights, ConvShapeIsCheckedInTorchOrder) {
  // A conv weight stored OHWI by mistake ([2, 2, 2, 3]) is rejected: disk order is OIHW.
  TempDir dir;
  std::string path = dir.file("w.safetensors");
  std::vector<float> w(24, 1.0f);
  ASSERT_TRUE(write_safetensors(path, {{"conv.weight", {2, 2, 2, 3}, w.data()}}).is_ok());
  std::vector<ParamSpec> specs = {tiny_specs()[0]};
  ParameterStore store = make_store(specs, 0);
  Status s = load_weights(path, store);
  EXPECT_NE(s.message().find("tensor 'conv.weight' has shape [2, 2, 2, 3] in the file but the model expects "
                             "[2, 3, 2, 2] (OIHW)"), std::string::npos) << s.message();
}

TEST(Weights, SkipPrefixesRetrainAClassifierWithADifferentClassCount) {
  ParameterStore pretrained = make_store(tiny_specs(10), 1.0f);
  TempDir dir;
  std::string path = dir.file("w.safetensors");
  ASSERT_TRUE(save_weights(path, pretrained).is_ok());

  ParameterStore store = make_store(tiny_specs(3), 0);
  std::vector<float> fc_before = values(store, "fc.weight");
  WeightsLoadOptions options;
  options.skip_prefixes = {"fc."};
  WeightsLoadReport report;
  Status s = load_weights(path, store, options, &report);
  ASSERT_TRUE(s.is_ok()) << s.to_string();
  EXPECT_EQ(values(store, "conv.weight"), values(pretrained, "conv.weight"));
  EXPECT_EQ(values(store, "fc.weight"), fc_before);
  EXPECT_EQ(report.skipped, (std::vector<std::string>{"fc.weight", "fc.bias"}));
  EXPECT_TRUE(report.unexpected.empty());

  // The same without naming the classifier: skip whatever does not fit.
  ParameterStore store2 = make_store(tiny_specs(3), 0);
  WeightsLoadOptions by_shape;
  by_shape.skip_shape_mismatch = true;
  ASSERT_TRUE(load_weights(path, store2, by_shape, &report).is_ok());
  EXPECT_EQ(report.skipped, (std::vector<std::string>{"fc.weight", "fc.bias"}));
  EXPECT_EQ(values(store2, "bn.running_var"), values(pretrained, "bn.running_var"));
}

TEST(Weights, IntegerTensorForAParameterIsRejected) {
  TempDir dir;
  std::string path = dir.file("w.safetensors");
  const int64_t v[2] = {1, 2};
  write_bytes(path, raw_file(R"({"bn.weight":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}})",
                             std::string(reinterpret_cast<const char*>(v), 16)));
  std::vector<ParamSpec> specs = {tiny_specs()[1]};
  ParameterStore store = make_store(specs, 0);
  Status s = load_weights(path, store);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("tensor 'bn.weight' has dtype I64"), std::string::npos) << s.message();
}

TEST(Weights, NumBatchesTrackedIsIgnoredWhateverItsDtype) {
  TempDir dir;
  std::string path = dir.file("w.safetensors");
  std::string data = floats_as_bytes({3.0f, 4.0f});
  const int64_t steps = 123;
  data.append(reinterpret_cast<const char*>(&steps), 8);
  write_bytes(path, raw_file(R"({"bn.weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("bn.num_batches_tracked":{"dtype":"I64","shape":[],"data_offsets":[8,16]}})", data));
  std::vector<ParamSpec> specs = {tiny_specs()[1]};
  ParameterStore store = make_store(specs, 0);
  WeightsLoadReport report;
  Status s = load_weights(path, store, {}, &report);
  ASSERT_TRUE(s.is_ok()) << s.to_string();
  EXPECT_EQ(values(store, "bn.weight"), (std::vector<float>{3.0f, 4.0f}));
  EXPECT_TRUE(report.unexpected.empty());
}

TEST(Weights, CorruptFileErrorsPassThroughWithTheFileName) {
  TempDir dir;
  std::string path = dir.file("bad.safetensors");
  write_bytes(path, "not a safetensors file at all");
  ParameterStore store = make_store(tiny_specs(), 0);
  Status s = load_weights(path, store);
  EXPECT_EQ(s.code(), StatusCode::kCorruptData);
  EXPECT_NE(s.message().find(path), std::string::npos) << s.message();
}

}  // namespace
}  // namespace edgetrain
