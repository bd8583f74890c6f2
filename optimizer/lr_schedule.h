// Learning-rate schedules: a small value type and the one function the trainer calls per step.
//
// `step` counts the updates already done (0 for the first update, i.e. StepScalars::
// optimizer_step - 1); `total_steps` is the number of updates of the whole run.
//
//   constant  lr(step) = base_lr
//   step      lr(step) = base_lr * gamma^floor(step / every)                  (torch StepLR)
//   cosine    lr(step) = base_lr * (step + 1) / warmup                        for step < warmup
//             lr(step) = min_lr + (base_lr - min_lr) * 0.5 * (1 + cos(pi * t)) afterwards, with
//                        t = min(1, (step - warmup) / (total_steps - warmup)) (t = 1 when
//                        total_steps <= warmup): base_lr right after the warm-up, min_lr from
//                        total_steps on. With min_lr = 0 and warmup = 0 this is torch's
//                        CosineAnnealingLR(T_max = total_steps, eta_min = 0).
//
// Command-line form (parse_lr_schedule): "kind[:key=value[,key=value...]]"
//   "constant"                       keys: lr
//   "step:every=1000,gamma=0.1"      keys: lr, every (required, >= 1), gamma (> 0, default 0.1)
//   "cosine", "cosine:warmup=100"    keys: lr, warmup (>= 0, default 0), min_lr (>= 0, default 0)
// `lr` sets base_lr (default 0.01); a trainer with its own learning-rate option overrides it
// and then calls validate_lr_schedule (min_lr <= base_lr is only checked once base_lr is known).
#pragma once

#include <cstdint>
#include <string>

#include "runtime/status.h"

namespace edgetrain {

enum class LrScheduleKind : uint8_t { kConstant, kStep, kCosine };

struct LrSchedule {
  LrScheduleKind kind = LrScheduleKind::kConstant;
  float base_lr = 0.01f;
  int64_t step_every = 0;     // step: multiply by gamma every this many updates
  float gamma = 0.1f;         // step
  int64_t warmup_steps = 0;   // cosine: linear warm-up updates
  float min_lr = 0.0f;        // cosine: the learning rate reached at total_steps
};

const char* lr_schedule_kind_name(LrScheduleKind kind);  // "constant", "step", "cosine"

// The learning rate of update `step` (0-based) in a run of total_steps updates.
float learning_rate_at(const LrSchedule& schedule, int64_t step, int64_t total_steps);

// Parses the command-line form above; errors name the offending key or value.
Result<LrSchedule> parse_lr_schedule(const std::string& text);
// Checks the fields of a schedule built in code (parse_lr_schedule calls it too).
Status validate_lr_schedule(const LrSchedule& schedule);
// The command-line form of a schedule, with every field spelled out (for reports and logs);
// parse_lr_schedule(lr_schedule_to_string(s)) gives back s.
std::string lr_schedule_to_string(const LrSchedule& schedule);

}  // namespace edgetrain
