#include "runtime/status.h"

#include <cstdio>
#include <cstdlib>

namespace edgetrain {

const char* status_code_name(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "ok";
    case StatusCode::kInvalidArgument: return "invalid argument";
    case StatusCode::kNotFound: return "not found";
    case StatusCode::kCorruptData: return "corrupt data";
    case StatusCode::kOutOfMemory: return "out of memory";
    case StatusCode::kIoError: return "i/o error";
    case StatusCode::kUnsupported: return "unsupported";
    case StatusCode::kInternal: return "internal error";
  }
  return "unknown";
}

std::string Status::to_string() const {
  if (is_ok()) return "ok";
  return std::string(status_code_name(code_)) + ": " + message_;
}

void check_failed(const char* what, const char* file, int line) {
  std::fprintf(stderr, "edgetrain: internal invariant violated: %s (%s:%d)\n", what, file, line);
  std::abort();
}

}  // namespace edgetrain
