#include "planner/profile_store.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "runtime/blas_env.h"

namespace edgetrain {
namespace {

constexpr const char* kFormatName = "edgetrain-profile";

JsonValue row_json(const FeatureRow& r) {
  JsonValue z = JsonValue::array();
  for (double v : r.z) z.push_back(v);
  return z;
}

Status read_row(const JsonValue& j, FeatureRow* r, const std::string& where) {
  r->flops = j.get_double("flops", -1);
  r->bytes = j.get_double("bytes", -1);
  const JsonValue* z = j.get_array("z");
  if (r->flops < 0 || r->bytes < 0 || z == nullptr || z->size() != static_cast<size_t>(kLogFeatureCount))
    return corrupt_data(where + ": needs flops, bytes and " + std::to_string(kLogFeatureCount) + " features z");
  for (int i = 0; i < kLogFeatureCount; ++i) r->z[static_cast<size_t>(i)] = z->at(static_cast<size_t>(i))->as_double();
  return Status::ok();
}

}  // namespace

MachineInfo current_machine() {
  MachineInfo m;
  m.cpu_model = "unknown";
  std::ifstream f("/proc/cpuinfo");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("model name", 0) == 0) {
      size_t colon = line.find(':');
      if (colon != std::string::npos && colon + 2 <= line.size()) m.cpu_model = line.substr(colon + 2);
      break;
    }
  BlasInfo b = blas_info();
  m.blas_core = b.core;
  m.blas_config = b.config;
  m.hardware_threads = static_cast<int>(std::thread::hardware_concurrency());
  return m;
}

Status check_machine(const MachineInfo& stored, const MachineInfo& current) {
  std::string diff;
  if (stored.cpu_model != current.cpu_model)
    diff += "CPU '" + stored.cpu_model + "' (this machine: '" + current.cpu_model + "')";
  if (blas_sgemm_family(stored.blas_core) != blas_sgemm_family(current.blas_core)) {
    if (!diff.empty()) diff += " and ";
    diff += "OpenBLAS core " + stored.blas_core + " (this process: " + current.blas_core + ")";
  }
  if (diff.empty()) return Status::ok();
  return invalid_argument("the profile was measured on " + diff +
                          ": its timings do not apply here; run `edgetrain profile` on this machine");
}

std::string default_cache_dir() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg != nullptr && xdg[0] == '/') return std::string(xdg) + "/edgetrain";
  const char* home = std::getenv("HOME");
  if (home != nullptr && home[0] != '\0') return std::string(home) + "/.cache/edgetrain";
  return "";
}

std::string profile_path(const std::string& cache_dir) {
  return cache_dir + "/profile-v" + std::to_string(kProfileFormatVersion) + ".json";
}

std::string refused_run_path(const std::string& cache_dir) {
  return cache_dir + "/profile-v" + std::to_string(kProfileFormatVersion) + ".refused-run.json";
}

JsonValue profile_to_json(const Profile& p) {
  JsonValue j = JsonValue::object();
  j.set("format", kFormatName);
  j.set("format_version", p.format_version);
  JsonValue m = JsonValue::object();
  m.set("cpu_model", p.machine.cpu_model);
  m.set("blas_core", p.machine.blas_core);
  m.set("blas_config", p.machine.blas_config);
  m.set("hardware_threads", p.machine.hardware_threads);
  j.set("machine", std::move(m));
  j.set("created", p.created);
  j.set("quick", p.quick);
  JsonValue threads = JsonValue::array();
  for (int t : p.threads) threads.push_back(t);
  j.set("threads", std::move(threads));
  j.set("profile_seconds", p.profile_seconds);
  j.set("runs", p.runs);
  JsonValue kernels = JsonValue::array();
  for (const KernelSample& s : p.kernels) {
    JsonValue k = JsonValue::object();
    k.set("class", op_class_name(s.op_class));
    k.set("threads", s.threads);
    k.set("seconds", s.seconds);
    k.set("flops", s.row.flops);
    k.set("bytes", s.row.bytes);
    k.set("z", row_json(s.row));
    k.set("holdout", s.holdout);
    k.set("round", s.round);
    k.set("config", s.config);
    k.set("layer", s.layer);
    if (s.config_index >= 0) {
      k.set("config_index", s.config_index);
      k.set("node", s.node);
    }
    kernels.push_back(std::move(k));
  }
  j.set("kernels", std::move(kernels));
  j.set("features_version", p.features_version);
  JsonValue configs = JsonValue::array();
  for (const StepConfig& c : p.configs) configs.push_back(step_config_to_json(c));
  j.set("configs", std::move(configs));
  JsonValue steps = JsonValue::array();
  for (const StepSample& s : p.steps) {
    JsonValue k = JsonValue::object();
    k.set("config", step_config_to_json(s.config));
    k.set("description", s.config.describe());
    k.set("threads", s.threads);
    k.set("seconds", s.seconds);
    k.set("validation", s.validation);
    JsonValue nodes = JsonValue::array();
    for (double t : s.node_seconds) nodes.push_back(t);
    k.set("node_seconds", std::move(nodes));
    if (s.schedule_hash != 0) {
      char hex[17];
      std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(s.schedule_hash));
      k.set("schedule_hash", std::string(hex));
    }
    steps.push_back(std::move(k));
  }
  j.set("steps", std::move(steps));
  auto repeats_json = [](const std::vector<RepeatSample>& list) {
    JsonValue repeats = JsonValue::array();
    for (const RepeatSample& r : list) {
      JsonValue k = JsonValue::array();
      k.push_back(r.threads);
      k.push_back(r.first);
      k.push_back(r.second);
      repeats.push_back(std::move(k));
    }
    return repeats;
  };
  j.set("repeats", repeats_json(p.repeats));
  j.set("step_repeats", repeats_json(p.step_repeats));
  j.set("measurement", p.measurement);
  j.set("models", p.models);
  j.set("report", p.report);
  return j;
}

Result<Profile> profile_from_json(const JsonValue& j) {
  if (!j.is_object() || j.get_string("format") != kFormatName)
    return corrupt_data("not an edgetrain profile (no \"format\": \"" + std::string(kFormatName) + "\")");
  Profile p;
  p.format_version = static_cast<int>(j.get_int("format_version", -1));
  if (p.format_version != kProfileFormatVersion)
    return invalid_argument("profile format version " + std::to_string(p.format_version) + ", this edgetrain reads " +
                            std::to_string(kProfileFormatVersion) + ": run `edgetrain profile` again");
  const JsonValue* m = j.get_object("machine");
  if (m == nullptr) return corrupt_data("profile: no 'machine'");
  p.machine.cpu_model = m->get_string("cpu_model");
  p.machine.blas_core = m->get_string("blas_core");
  p.machine.blas_config = m->get_string("blas_config");
  p.machine.hardware_threads = static_cast<int>(m->get_int("hardware_threads", 0));
  p.created = j.get_string("created");
  p.quick = j.get_bool("quick");
  p.profile_seconds = j.get_double("profile_seconds");
  p.runs = static_cast<int>(j.get_int("runs", 1));
  if (p.runs < 1) return corrupt_data("profile: runs must be at least 1");
  if (const JsonValue* t = j.get_array("threads"))
    for (const JsonValue& v : t->items()) p.threads.push_back(static_cast<int>(v.as_int(0)));
  p.features_version = static_cast<int>(j.get_int("features_version", 0));
  if (const JsonValue* cs = j.get_array("configs"))
    for (size_t i = 0; i < cs->size(); ++i) {
      Result<StepConfig> c = step_config_from_json(*cs->at(i));
      if (!c.is_ok()) return corrupt_data("profile: configuration " + std::to_string(i) + ": " + c.status().message());
      p.configs.push_back(*c);
    }
  if (const JsonValue* ks = j.get_array("kernels")) {
    for (size_t i = 0; i < ks->size(); ++i) {
      const JsonValue& k = *ks->at(i);
      const std::string where = "profile: kernel sample " + std::to_string(i);
      KernelSample s;
      if (!parse_op_class(k.get_string("class"), &s.op_class))
        return corrupt_data(where + ": unknown op class '" + k.get_string("class") + "'");
      s.threads = static_cast<int>(k.get_int("threads", 0));
      s.seconds = k.get_double("seconds", -1);
      if (s.threads < 1 || !(s.seconds > 0)) return corrupt_data(where + ": needs threads >= 1 and seconds > 0");
      ET_RETURN_IF_ERROR(read_row(k, &s.row, where));
      s.holdout = k.get_bool("holdout");
      s.round = static_cast<int>(k.get_int("round", 0));
      s.config = k.get_string("config");
      s.layer = k.get_string("layer");
      s.config_index = static_cast<int>(k.get_int("config_index", -1));
      s.node = k.get_string("node");
      if (s.config_index < -1 || s.config_index >= static_cast<int>(p.configs.size()))
        return corrupt_data(where + ": config_index " + std::to_string(s.config_index) + " is not one of the " +
                            std::to_string(p.configs.size()) + " stored configurations");
      p.kernels.push_back(std::move(s));
    }
  }
  if (const JsonValue* ss = j.get_array("steps")) {
    for (size_t i = 0; i < ss->size(); ++i) {
      const JsonValue& k = *ss->at(i);
      StepSample s;
      const JsonValue* c = k.get_object("config");
      if (c == nullptr) return corrupt_data("profile: step sample " + std::to_string(i) + " has no config");
      Result<StepConfig> config = step_config_from_json(*c);
      if (!config.is_ok())
        return corrupt_data("profile: step sample " + std::to_string(i) + ": " + config.status().message());
      s.config = *config;
      s.threads = static_cast<int>(k.get_int("threads", 0));
      s.seconds = k.get_double("seconds", -1);
      if (s.threads < 1 || !(s.seconds > 0))
        return corrupt_data("profile: step sample " + std::to_string(i) + " needs threads >= 1 and seconds > 0");
      s.validation = k.get_bool("validation");
      if (const JsonValue* n = k.get_array("node_seconds"))
        for (const JsonValue& v : n->items()) s.node_seconds.push_back(v.as_double());
      const std::string hash = k.get_string("schedule_hash");
      if (!hash.empty()) {
        char* end = nullptr;
        s.schedule_hash = std::strtoull(hash.c_str(), &end, 16);
        if (hash.size() != 16 || end != hash.c_str() + hash.size())
          return corrupt_data("profile: step sample " + std::to_string(i) + ": schedule_hash '" + hash +
                              "' is not 16 hex digits");
      }
      p.steps.push_back(std::move(s));
    }
  }
  for (auto [key, out] : {std::pair{"repeats", &p.repeats}, std::pair{"step_repeats", &p.step_repeats}}) {
    const JsonValue* rs = j.get_array(key);
    if (rs == nullptr) continue;
    for (const JsonValue& r : rs->items()) {
      if (r.size() != 3) return corrupt_data(std::string("profile: a ") + key + " entry must be [threads, first, second]");
      out->push_back({static_cast<int>(r.at(0)->as_int(1)), r.at(1)->as_double(), r.at(2)->as_double()});
    }
  }
  if (const JsonValue* m = j.find("measurement")) p.measurement = *m;
  if (const JsonValue* models = j.find("models")) p.models = *models;
  if (const JsonValue* report = j.find("report")) p.report = *report;
  return p;
}

Status save_profile(const Profile& p, const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path parent = fs::path(path).parent_path();
  if (!parent.empty()) {
    fs::create_directories(parent, ec);
    if (ec) return io_error("cannot create the profile directory '" + parent.string() + "': " + ec.message());
  }
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) return io_error("cannot write the profile '" + tmp + "'");
    f << to_json(profile_to_json(p)) << '\n';
    f.flush();
    if (!f) {
      fs::remove(tmp, ec);
      return io_error("writing the profile '" + tmp + "' failed (disk full?)");
    }
  }
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    return io_error("cannot move the profile into place at '" + path + "'");
  }
  return Status::ok();
}

Status merge_profiles(Profile* into, Profile more) {
  if (Status machine = check_machine(into->machine, more.machine); !machine.is_ok()) return machine;
  if (into->threads != more.threads)
    return invalid_argument("the profiles measured different thread counts: merge only runs with the same --threads");
  if (into->features_version != more.features_version)
    return invalid_argument("the profiles' features differ (version " + std::to_string(into->features_version) + " and " +
                            std::to_string(more.features_version) + "): rebuild the older one first (planner/refeaturize.h)");
  if (into->quick != more.quick) return invalid_argument("a quick profile merges only with quick profiles");
  const int offset = static_cast<int>(into->configs.size());
  for (StepConfig& c : more.configs) into->configs.push_back(std::move(c));
  for (KernelSample& k : more.kernels) {
    if (k.config_index >= 0) k.config_index += offset;
    into->kernels.push_back(std::move(k));
  }
  for (StepSample& st : more.steps) into->steps.push_back(std::move(st));
  into->repeats.insert(into->repeats.end(), more.repeats.begin(), more.repeats.end());
  into->step_repeats.insert(into->step_repeats.end(), more.step_repeats.begin(), more.step_repeats.end());
  into->created = more.created;
  into->profile_seconds += more.profile_seconds;
  into->runs += more.runs;
  into->measurement = std::move(more.measurement);  // the latest run's quiet-gate counts
  into->models = JsonValue();
  into->report = JsonValue();
  return Status::ok();
}

bool canary_noisier(double stored_median, double run_median, double tolerance) {
  return stored_median > 0 && run_median > 0 && run_median > stored_median + tolerance;
}

bool run_noisier_than_stored(const Profile& stored, const Profile& run, double tolerance, std::string* why) {
  const double before = stored.measurement.get_double("canary_ratio_median", 0.0);
  const double now = run.measurement.get_double("canary_ratio_median", 0.0);
  if (!canary_noisier(before, now, tolerance)) return false;
  if (why != nullptr) {
    char text[200];
    std::snprintf(text, sizeof(text),
                  "this run's host was noisier than the stored profile's (canary %.2fx its best at the median, against "
                  "%.2fx)",
                  now, before);
    *why = text;
  }
  return true;
}

Result<Profile> load_profile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return not_found("no profile at '" + path + "': run `edgetrain profile` first");
  std::stringstream ss;
  ss << f.rdbuf();
  Result<JsonValue> j = parse_json(ss.str());
  if (!j.is_ok()) return corrupt_data("profile '" + path + "': " + j.status().message());
  Result<Profile> p = profile_from_json(*j);
  if (!p.is_ok()) return Status(p.status().code(), "profile '" + path + "': " + p.status().message());
  return p;
}

}  // namespace edgetrain
