// The schedule is the node order of the training graph. finalize_schedule() makes that order
// final: each optimizer update moves to right after the last node that touches its parameter or
// gradient (so a gradient dies as soon as it is applied), except the momentum-fused SGD applies
// (optimizer/momentum_fusion.h), which read only persistent values and go to the end of the step;
// and every node whose op needs scratch memory gets a workspace value that lives for that node
// only.
#pragma once

#include "runtime/graph.h"
#include "runtime/status.h"

namespace edgetrain {

Status finalize_schedule(Graph& g);

}  // namespace edgetrain
