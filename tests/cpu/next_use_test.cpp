// next_use_test.cpp — the pager's next-use prediction (offload/next_use.h), rule by rule, and
// the orders it gives on the patterns of a training step.
#include "offload/next_use.h"

#include <gtest/gtest.h>

#include <climits>

namespace spillway::test {
namespace {

using offload::NextUseDistance;

tracker::BlockSummary Seen(std::uint64_t last, std::uint64_t gap = 0, std::uint64_t period = 0) {
  tracker::BlockSummary s;
  s.count = 1 + (gap != 0) + (period != 0);
  s.first_seq = last - gap - period;
  s.last_seq = last;
  s.gap = gap;
  s.period = period;
  return s;
}

TEST(NextUse, EachRule) {
  tracker::BlockSummary never;
  EXPECT_EQ(NextUseDistance(never, 1000), INT64_MAX) << "never used: first to go";
  EXPECT_EQ(NextUseDistance(Seen(900), 1000), 100) << "one burst: as far as it has been idle";
  EXPECT_EQ(NextUseDistance(Seen(990, 10), 1000), 0) << "in a run of uses: one gap after";
  EXPECT_EQ(NextUseDistance(Seen(995, 10), 1000), 5);
  EXPECT_EQ(NextUseDistance(Seen(900, 10, 500), 1000), 400)
      << "past twice its last gap: its period";
  EXPECT_EQ(NextUseDistance(Seen(200, 500, 500), 1000), -300) << "overdue: needed any moment";
  EXPECT_EQ(NextUseDistance(Seen(1000), 990), 0) << "a use after `now` (another thread): idle 0";
}

// Mid-micro-batch of gradient accumulation: the optimizer state (used once per optimizer step)
// goes before the parameter (used every micro-batch), which goes before the activation made
// just now; an optimizer state between two passes of the optimizer stays.
TEST(NextUse, TrainingStepOrder) {
  const std::uint64_t now = 100000;
  const auto state = NextUseDistance(Seen(now - 3000, 20, 8000), now);
  const auto param = NextUseDistance(Seen(now - 600, 50, 1000), now);
  const auto fresh_activation = NextUseDistance(Seen(now - 10), now);
  const auto old_activation = NextUseDistance(Seen(now - 400), now);
  EXPECT_GT(state, param);
  EXPECT_GT(param, fresh_activation);
  EXPECT_GT(old_activation, fresh_activation) << "made earlier, needed later in backward";
  const auto state_between_passes = NextUseDistance(Seen(now - 15, 20, 8000), now);
  EXPECT_LT(state_between_passes, fresh_activation);
}

}  // namespace
}  // namespace spillway::test
