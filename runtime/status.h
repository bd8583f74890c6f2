// Errors as values. Every fallible function returns Status or Result<T>; nothing throws.
// A Status carries a code and a message that names what was wrong (the file, the tensor, the
// budget), so the caller can print it as is.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace edgetrain {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,   // a bad option, shape or configuration given by the caller
  kNotFound,          // a missing file, tensor name or dataset
  kCorruptData,       // a file that exists but is truncated or malformed
  kOutOfMemory,       // an allocation failed or a budget cannot be met
  kIoError,           // reading or writing failed at the OS level
  kUnsupported,       // valid, but not implemented for this case
  kInternal,          // a broken invariant inside edgetrain (a bug)
};

const char* status_code_name(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return Status(); }
  bool is_ok() const { return code_ == StatusCode::kOk; }
  explicit operator bool() const { return is_ok(); }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "invalid argument: conv 'features.0.0': kernel 3 larger than padded input 2"
  std::string to_string() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status invalid_argument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
inline Status not_found(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status corrupt_data(std::string m) { return {StatusCode::kCorruptData, std::move(m)}; }
inline Status out_of_memory(std::string m) { return {StatusCode::kOutOfMemory, std::move(m)}; }
inline Status io_error(std::string m) { return {StatusCode::kIoError, std::move(m)}; }
inline Status unsupported(std::string m) { return {StatusCode::kUnsupported, std::move(m)}; }
inline Status internal_error(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

// A value or the Status that explains why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : data_(std::move(value)) {}  // NOLINT: implicit on purpose, like std::expected
  Result(Status status) : data_(std::move(status)) {}  // NOLINT

  bool is_ok() const { return std::holds_alternative<T>(data_); }
  explicit operator bool() const { return is_ok(); }
  const Status& status() const {
    static const Status kOk;
    return is_ok() ? kOk : std::get<Status>(data_);
  }
  T& value() & { return std::get<T>(data_); }
  const T& value() const& { return std::get<T>(data_); }
  T&& value() && { return std::get<T>(std::move(data_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> data_;
};

}  // namespace edgetrain

// Propagate a failed Status from an expression that yields Status.
#define ET_RETURN_IF_ERROR(expr)                      \
  do {                                                \
    ::edgetrain::Status et_status_ = (expr);          \
    if (!et_status_.is_ok()) return et_status_;       \
  } while (0)

#define ET_CONCAT_INNER(a, b) a##b
#define ET_CONCAT(a, b) ET_CONCAT_INNER(a, b)
// `ET_ASSIGN_OR_RETURN(auto x, make_x());` declares x from a Result or returns its Status.
#define ET_ASSIGN_OR_RETURN(decl, expr) ET_ASSIGN_OR_RETURN_IMPL(ET_CONCAT(et_result_, __LINE__), decl, expr)
#define ET_ASSIGN_OR_RETURN_IMPL(tmp, decl, expr) \
  auto tmp = (expr);                              \
  if (!tmp.is_ok()) return tmp.status();          \
  decl = std::move(tmp).value()

// Internal invariants only (never for user input): always on, also in release builds.
#define ET_CHECK(cond)                                                            \
  do {                                                                            \
    if (!(cond)) ::edgetrain::check_failed(#cond, __FILE__, __LINE__);           \
  } while (0)

namespace edgetrain {
[[noreturn]] void check_failed(const char* what, const char* file, int line);
}
