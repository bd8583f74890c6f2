// Small text helpers shared by the command line and the C API.
#pragma once

#include <string>
#include <vector>

namespace edgetrain {

// "a,b,,c" -> {"a", "b", "c"}: the non-empty pieces between separators.
inline std::vector<std::string> split_list(const std::string& s, char separator = ',') {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(separator, start);
    if (end == std::string::npos) end = s.size();
    if (end > start) out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

}  // namespace edgetrain
