// kinds.h — infers what each tracked block holds (parameter, gradient, optimizer state,
// activation, temporary) from its lifetime and its touches, finding the training loop's
// optimizer steps in the access pattern. The rules are documented in docs/profiler.md.
#pragma once

#include "profiler/report/model.h"

namespace spillway::report {

// Sets Block::kind of every tracked block, Model::kinds_method, Model::iterations,
// Model::kind_series and DeviceSummary::kinds_at_peak. Does nothing when no log has touches
// (SPILLWAY_TRACK was off): kinds stay kUnknown.
void InferKinds(Model* m);

}  // namespace spillway::report
