#include "tools/cli_common.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

namespace edgetrain::cli {

void ArgParser::option(const std::string& name, const std::string& value_name, const std::string& default_value,
                       const std::string& help) {
  specs_.push_back({name, value_name, help, default_value});
}

void ArgParser::flag(const std::string& name, const std::string& help) { specs_.push_back({name, "", help, ""}); }

const OptionSpec* ArgParser::find(const std::string& name) const {
  for (const OptionSpec& s : specs_)
    if (s.name == name) return &s;
  return nullptr;
}

Status ArgParser::parse(int argc, char** argv, int first) {
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      help_ = true;
      continue;
    }
    if (a.rfind("--", 0) != 0) return invalid_argument(command_ + ": unexpected argument '" + a + "' (options start with --; see --help)");
    std::string name = a.substr(2), value;
    bool inline_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      inline_value = true;
    }
    const OptionSpec* s = find(name);
    if (s == nullptr) return invalid_argument(command_ + ": unknown option --" + name + " (see " + command_ + " --help)");
    if (s->value_name.empty()) {
      if (inline_value) return invalid_argument(command_ + ": --" + name + " takes no value");
      values_[name] = "1";
      continue;
    }
    if (!inline_value) {
      if (i + 1 >= argc) return invalid_argument(command_ + ": --" + name + " needs a value (" + s->value_name + ")");
      value = argv[++i];
    }
    values_[name] = value;
  }
  return Status::ok();
}

std::string ArgParser::help_text() const {
  std::string s = "usage: edgetrain " + command_ + " [options]\n\n" + summary_ + "\n\noptions:\n";
  for (const OptionSpec& o : specs_) {
    std::string left = "  --" + o.name + (o.value_name.empty() ? "" : " " + o.value_name);
    if (left.size() < 26) left.resize(26, ' ');
    else left += "\n" + std::string(26, ' ');
    s += left + o.help;
    if (!o.default_value.empty()) s += " (default: " + o.default_value + ")";
    s += "\n";
  }
  s += "  --help                  show this text\n";
  return s;
}

bool ArgParser::has(const std::string& name) const { return values_.count(name) > 0; }

std::string ArgParser::str(const std::string& name) const {
  auto it = values_.find(name);
  if (it != values_.end()) return it->second;
  const OptionSpec* s = find(name);
  return s ? s->default_value : "";
}

Result<int64_t> ArgParser::integer(const std::string& name) const {
  std::string v = str(name);
  char* end = nullptr;
  errno = 0;
  long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno != 0) return invalid_argument("--" + name + ": '" + v + "' is not an integer");
  return static_cast<int64_t>(x);
}

Result<double> ArgParser::number(const std::string& name) const {
  std::string v = str(name);
  char* end = nullptr;
  double x = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0' || !std::isfinite(x)) return invalid_argument("--" + name + ": '" + v + "' is not a number");
  return x;
}

Result<uint64_t> ArgParser::bytes(const std::string& name) const {
  Result<uint64_t> r = parse_bytes(str(name));
  if (!r.is_ok()) return invalid_argument("--" + name + ": " + r.status().message());
  return r;
}

Result<uint64_t> parse_bytes(const std::string& text) {
  char* end = nullptr;
  double x = std::strtod(text.c_str(), &end);
  if (text.empty() || end == text.c_str() || !std::isfinite(x) || x < 0)
    return invalid_argument("'" + text + "' is not a size (examples: 64MiB, 1.5GiB, 500MB, 1000000)");
  std::string unit(end);
  static const struct {
    const char* name;
    double factor;
  } kUnits[] = {{"", 1}, {"B", 1}, {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0},
                {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"K", 1024.0}, {"M", 1048576.0}, {"G", 1073741824.0}};
  for (const auto& u : kUnits)
    if (unit == u.name) return static_cast<uint64_t>(std::llround(x * u.factor));
  return invalid_argument("'" + text + "' has an unknown unit '" + unit + "' (use B, KiB, MiB, GiB, KB, MB, GB)");
}

std::string format_bytes(double bytes) {
  char buf[64];
  if (bytes < 1024) std::snprintf(buf, sizeof buf, "%.0f B", bytes);
  else if (bytes < 1048576) std::snprintf(buf, sizeof buf, "%.1f KiB", bytes / 1024);
  else if (bytes < 1073741824.0) std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / 1048576);
  else std::snprintf(buf, sizeof buf, "%.2f GiB", bytes / 1073741824.0);
  return buf;
}

std::string format_seconds(double s) {
  char buf[64];
  if (s < 60) std::snprintf(buf, sizeof buf, "%.1f s", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%dm %02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  else std::snprintf(buf, sizeof buf, "%dh %02dm", static_cast<int>(s) / 3600, (static_cast<int>(s) / 60) % 60);
  return buf;
}

ProcessMemory process_memory() {
  ProcessMemory m;
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    unsigned long long kb = 0;
    if (std::sscanf(line.c_str(), "VmRSS: %llu kB", &kb) == 1) m.rss = kb * 1024;
    if (std::sscanf(line.c_str(), "VmHWM: %llu kB", &kb) == 1) m.peak_rss = kb * 1024;
  }
  return m;
}

bool reset_peak_rss() {
  FILE* f = std::fopen("/proc/self/clear_refs", "w");
  if (f == nullptr) return false;
  bool ok = std::fputs("5", f) >= 0;
  return std::fclose(f) == 0 && ok;
}

Progress::Progress(double every_seconds) : tty_(isatty(STDERR_FILENO) != 0), every_(every_seconds) {}

void Progress::update(const std::string& line, bool force) {
  double now = clock_.seconds();
  if (tty_) {
    if (!force && now - last_ < 0.2) return;
    std::fprintf(stderr, "\r\033[K%s", line.c_str());
    pending_newline_ = true;
  } else {
    if (!force && now - last_ < every_) return;
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
  last_ = now;
}

void Progress::finish() {
  if (tty_ && pending_newline_) std::fprintf(stderr, "\n");
  pending_newline_ = false;
}

}  // namespace edgetrain::cli
