#include "memory/arena.h"

#include <algorithm>
#include <numeric>

namespace edgetrain {

static size_t round_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

ArenaPlan plan_arena(const std::vector<UsageRecord>& records, size_t alignment) {
  ArenaPlan plan;
  plan.offsets.assign(records.size(), 0);
  std::vector<size_t> order(records.size());
  std::iota(order.begin(), order.end(), size_t{0});
  // Largest first; ties by earlier start, then by index, so the plan is deterministic.
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (records[a].bytes != records[b].bytes) return records[a].bytes > records[b].bytes;
    return records[a].first < records[b].first;
  });
  struct Placed {
    size_t begin, end;
  };
  std::vector<size_t> placed;  // indices of records already given an offset
  std::vector<Placed> conflicts;
  for (size_t idx : order) {
    const UsageRecord& r = records[idx];
    size_t bytes = round_up(std::max<size_t>(r.bytes, 1), alignment);
    conflicts.clear();
    for (size_t p : placed) {
      const UsageRecord& q = records[p];
      if (q.first <= r.last && r.first <= q.last)
        conflicts.push_back({plan.offsets[p], plan.offsets[p] + round_up(std::max<size_t>(q.bytes, 1), alignment)});
    }
    std::sort(conflicts.begin(), conflicts.end(), [](const Placed& a, const Placed& b) { return a.begin < b.begin; });
    size_t offset = 0;
    for (const Placed& c : conflicts) {
      if (offset + bytes <= c.begin) break;  // fits in the gap before c
      offset = std::max(offset, c.end);
    }
    plan.offsets[idx] = offset;
    plan.size = std::max(plan.size, offset + bytes);
    placed.push_back(idx);
  }
  return plan;
}

}  // namespace edgetrain
