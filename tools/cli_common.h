// Shared pieces of the edgetrain command-line program: a declarative option parser that also
// writes --help, byte/time formatting, process memory readings and a progress line.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "runtime/status.h"

namespace edgetrain::cli {

struct OptionSpec {
  std::string name;        // "batch" for --batch
  std::string value_name;  // "N"; empty for a flag
  std::string help;
  std::string default_value;
};

class ArgParser {
 public:
  ArgParser(std::string command, std::string summary) : command_(std::move(command)), summary_(std::move(summary)) {}
  void option(const std::string& name, const std::string& value_name, const std::string& default_value,
              const std::string& help);
  void flag(const std::string& name, const std::string& help);
  // Parses argv[first..]. --help sets help_requested(); unknown options and missing values fail.
  Status parse(int argc, char** argv, int first);
  bool help_requested() const { return help_; }
  std::string help_text() const;

  bool has(const std::string& name) const;  // given on the command line (flags: set)
  std::string str(const std::string& name) const;
  Result<int64_t> integer(const std::string& name) const;
  Result<double> number(const std::string& name) const;
  Result<uint64_t> bytes(const std::string& name) const;  // "64MiB", "1.5GB", "1000000"

 private:
  const OptionSpec* find(const std::string& name) const;
  std::string command_, summary_;
  std::vector<OptionSpec> specs_;
  std::map<std::string, std::string> values_;
  bool help_ = false;
};

Result<uint64_t> parse_bytes(const std::string& text);
std::string format_bytes(double bytes);  // "12.3 MiB"
std::string format_seconds(double s);    // "1m 23s", "4.2 s"

// Process memory from /proc/self/status.
struct ProcessMemory {
  uint64_t rss = 0;       // VmRSS
  uint64_t peak_rss = 0;  // VmHWM
};
ProcessMemory process_memory();
// Resets VmHWM to the current RSS (Linux clear_refs 5); false when the kernel refuses.
bool reset_peak_rss();

class Stopwatch {
 public:
  Stopwatch() : start_(std::chrono::steady_clock::now()) {}
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }
 private:
  std::chrono::steady_clock::time_point start_;
};

// Prints "\r"-updated progress lines on a terminal and plain lines (every `every` seconds)
// otherwise, so logs stay readable.
class Progress {
 public:
  explicit Progress(double every_seconds = 5.0);
  void update(const std::string& line, bool force = false);
  void finish();
 private:
  bool tty_;
  double every_;
  double last_ = -1e9;
  Stopwatch clock_;
  bool pending_newline_ = false;
};

}  // namespace edgetrain::cli
