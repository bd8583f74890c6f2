// Learning-rate schedules (formulas in lr_schedule.h) and their command-line form.
#include "optimizer/lr_schedule.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <numbers>
#include <string_view>
#include <vector>

namespace edgetrain {

const char* lr_schedule_kind_name(LrScheduleKind kind) {
  switch (kind) {
    case LrScheduleKind::kConstant: return "constant";
    case LrScheduleKind::kStep: return "step";
    case LrScheduleKind::kCosine: return "cosine";
  }
  return "?";
}

float learning_rate_at(const LrSchedule& s, int64_t step, int64_t total_steps) {
  const double lr = s.base_lr;
  step = std::max<int64_t>(step, 0);
  switch (s.kind) {
    case LrScheduleKind::kConstant:
      return s.base_lr;
    case LrScheduleKind::kStep: {
      if (s.step_every <= 0) return s.base_lr;  // unvalidated schedule: no decay rather than /0
      return static_cast<float>(lr * std::pow(double(s.gamma), double(step / s.step_every)));
    }
    case LrScheduleKind::kCosine: {
      const int64_t warmup = std::max<int64_t>(s.warmup_steps, 0);
      if (step < warmup) return static_cast<float>(lr * double(step + 1) / double(warmup));
      const int64_t span = total_steps - warmup;
      const double t = span <= 0 ? 1.0 : std::min(1.0, double(step - warmup) / double(span));
      const double floor = s.min_lr;
      return static_cast<float>(floor + (lr - floor) * 0.5 * (1.0 + std::cos(std::numbers::pi * t)));
    }
  }
  return s.base_lr;
}

namespace {

// The field checks; `subject` starts the error message ("learning-rate schedule 'step'").
// min_lr is compared with base_lr only when base_lr is known: a parsed string without lr=
// leaves base_lr at its default, and the caller sets the real one afterwards (--lr).
Status check_fields(const LrSchedule& s, const std::string& subject, bool base_lr_known) {
  auto bad = [&](const std::string& what) { return invalid_argument(subject + ": " + what); };
  if (!std::isfinite(s.base_lr) || s.base_lr < 0)
    return bad("lr must be a finite number >= 0, got " + std::to_string(s.base_lr));
  switch (s.kind) {
    case LrScheduleKind::kConstant:
      break;
    case LrScheduleKind::kStep:
      if (s.step_every < 1)
        return bad("every must be >= 1 (the number of updates between decays), got " +
                   std::to_string(s.step_every));
      if (!std::isfinite(s.gamma) || s.gamma <= 0)
        return bad("gamma must be a finite number > 0, got " + std::to_string(s.gamma));
      break;
    case LrScheduleKind::kCosine:
      if (s.warmup_steps < 0) return bad("warmup must be >= 0, got " + std::to_string(s.warmup_steps));
      if (!std::isfinite(s.min_lr) || s.min_lr < 0)
        return bad("min_lr must be a finite number >= 0, got " + std::to_string(s.min_lr));
      if (base_lr_known && s.min_lr > s.base_lr)
        return bad("min_lr " + std::to_string(s.min_lr) + " is above lr " +
                   std::to_string(s.base_lr) + " (the cosine would rise)");
      break;
  }
  return Status::ok();
}

Status parse_error(const std::string& text, const std::string& why) {
  return invalid_argument("learning-rate schedule \"" + text + "\": " + why +
                          " (expected constant | step:every=K[,gamma=G] | "
                          "cosine[:warmup=W][,min_lr=L]; all kinds accept lr=X)");
}

bool parse_number(std::string_view v, int64_t* out) {
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), *out);
  return ec == std::errc() && end == v.data() + v.size() && !v.empty();
}

bool parse_number(std::string_view v, float* out) {
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), *out);
  return ec == std::errc() && end == v.data() + v.size() && !v.empty() && std::isfinite(*out);
}

std::string format_float(float v) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);  // shortest form that round-trips
  return ec == std::errc() ? std::string(buf, end) : std::to_string(v);
}

}  // namespace

Status validate_lr_schedule(const LrSchedule& s) {
  return check_fields(s, std::string("learning-rate schedule '") + lr_schedule_kind_name(s.kind) + "'",
                      true);
}

Result<LrSchedule> parse_lr_schedule(const std::string& text) {
  const std::string_view all(text);
  const size_t colon = all.find(':');
  const std::string_view kind = all.substr(0, colon);
  LrSchedule s;
  if (kind == "constant") s.kind = LrScheduleKind::kConstant;
  else if (kind == "step") s.kind = LrScheduleKind::kStep;
  else if (kind == "cosine") s.kind = LrScheduleKind::kCosine;
  else return parse_error(text, "unknown kind '" + std::string(kind) + "'");

  std::vector<std::string_view> seen;
  if (colon != std::string_view::npos) {
    std::string_view rest = all.substr(colon + 1);
    if (rest.empty()) return parse_error(text, "nothing after ':'");
    while (true) {
      const size_t comma = rest.find(',');
      const std::string_view item = rest.substr(0, comma);
      const size_t eq = item.find('=');
      if (eq == std::string_view::npos || eq == 0)
        return parse_error(text, "'" + std::string(item) + "' is not key=value");
      const std::string_view key = item.substr(0, eq), value = item.substr(eq + 1);
      const std::string k(key), v(value);
      if (std::find(seen.begin(), seen.end(), key) != seen.end())
        return parse_error(text, "key '" + k + "' given twice");
      seen.push_back(key);
      bool ok;
      if (key == "lr") {
        ok = parse_number(value, &s.base_lr);
      } else if (key == "every" && s.kind == LrScheduleKind::kStep) {
        ok = parse_number(value, &s.step_every);
      } else if (key == "gamma" && s.kind == LrScheduleKind::kStep) {
        ok = parse_number(value, &s.gamma);
      } else if (key == "warmup" && s.kind == LrScheduleKind::kCosine) {
        ok = parse_number(value, &s.warmup_steps);
      } else if (key == "min_lr" && s.kind == LrScheduleKind::kCosine) {
        ok = parse_number(value, &s.min_lr);
      } else {
        return parse_error(text, "unknown key '" + k + "' for kind '" + std::string(kind) + "'");
      }
      if (!ok) return parse_error(text, "bad value '" + v + "' for key '" + k + "'");
      if (comma == std::string_view::npos) break;
      rest = rest.substr(comma + 1);
    }
  }
  if (s.kind == LrScheduleKind::kStep &&
      std::find(seen.begin(), seen.end(), std::string_view("every")) == seen.end())
    return parse_error(text, "kind 'step' needs every=K (updates between decays)");
  const bool lr_given = std::find(seen.begin(), seen.end(), std::string_view("lr")) != seen.end();
  ET_RETURN_IF_ERROR(check_fields(s, "learning-rate schedule \"" + text + "\"", lr_given));
  return s;
}

std::string lr_schedule_to_string(const LrSchedule& s) {
  std::string out = std::string(lr_schedule_kind_name(s.kind)) + ":lr=" + format_float(s.base_lr);
  switch (s.kind) {
    case LrScheduleKind::kConstant:
      break;
    case LrScheduleKind::kStep:
      out += ",every=" + std::to_string(s.step_every) + ",gamma=" + format_float(s.gamma);
      break;
    case LrScheduleKind::kCosine:
      out += ",warmup=" + std::to_string(s.warmup_steps) + ",min_lr=" + format_float(s.min_lr);
      break;
  }
  return out;
}

}  // namespace edgetrain
