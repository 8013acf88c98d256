// kinds_test.cpp — the kinds of tensor (profiler/report/kinds.cpp) on synthetic models of a
// training loop: parameters made before the loop; per iteration a forward pass (activations
// kept for backward, temporaries freed at once), a backward pass (gradients, backward
// temporaries), a foreach optimizer step touching parameters, gradients and states in a few
// operations (states made lazily in the first step), then zero_grad freeing the gradients.
// Also: gradient accumulation (several passes a step), no touches (kinds stay unknown), no
// optimizer (no bursts), persistent gradients (zero_grad(set_to_none=False)), the bytes of each
// kind at the peak and in the series.
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <vector>

#include "profiler/report/kinds.h"
#include "profiler/report/model.h"

namespace spillway::report {
namespace {

class Loop {
 public:
  // `accum`: micro-batches (forward and backward) per optimizer step, gradients accumulating.
  explicit Loop(bool grads_persist = false, bool optimizer = true, int accum = 1)
      : grads_persist_(grads_persist), optimizer_(optimizer), accum_(accum) {
    m_.processes.push_back(Process{});
    DeviceSummary d;
    m_.devices.push_back(d);
  }

  std::uint32_t Alloc(std::uint64_t bytes, TensorKind truth) {
    Block b;
    b.addr = next_addr_;
    next_addr_ += bytes;
    b.requested = b.rounded = bytes;
    b.alloc_ns = Tick();
    b.live_at_end = true;
    b.tracked = true;
    m_.blocks.push_back(b);
    truth_.push_back(truth);
    return static_cast<std::uint32_t>(m_.blocks.size() - 1);
  }
  void Free(std::uint32_t b) {
    m_.blocks[b].free_ns = Tick();
    m_.blocks[b].live_at_end = false;
  }
  // One launch touching these blocks (the log keeps one touch per block per 32 operations;
  // here every launch's touches are kept, which the epochs then group).
  void Launch(const std::vector<std::uint32_t>& blocks) {
    const std::uint64_t t = Tick();
    for (std::uint32_t b : blocks) {
      const std::uint64_t epoch = op_ >> 5;
      auto& last = last_epoch_[b];
      if (last != epoch + 1) m_.touches.push_back(Touch{b, t, op_});
      last = epoch + 1;
      ++m_.blocks[b].accesses;
    }
    ++op_;
  }
  // Many launches: stretch an activity over several epochs (a real forward pass does).
  void Idle(int launches) {
    for (int i = 0; i < launches; ++i) Launch({});
  }

  void Iteration(int layers) {
    std::vector<std::uint32_t> grads(params_.size(), ~0u);
    for (int mb = 0; mb < accum_; ++mb) MicroBatch(layers, &grads);
    Step(grads);
  }

  // Forward and backward; gradients made by the first micro-batch (when absent), accumulated
  // by the others.
  void MicroBatch(int layers, std::vector<std::uint32_t>* grads_out) {
    std::vector<std::uint32_t>& grads = *grads_out;
    std::vector<std::uint32_t> acts;
    const std::uint32_t input = Alloc(4096, TensorKind::kActivation);  // saved by the embedding
    Launch({input});
    acts.push_back(input);
    for (int l = 0; l < layers; ++l) {  // forward
      const std::uint32_t tmp = Alloc(1 << 20, TensorKind::kTemporary);
      Launch({params_[static_cast<std::size_t>(l)], acts.back(), tmp});
      // Several tensors a layer saves for backward (normalized input, projections, ...).
      for (int j = 0; j < 4; ++j) {
        const std::uint32_t a = Alloc(8 << 20, TensorKind::kActivation);
        Launch({tmp, a});
        acts.push_back(a);
      }
      Free(tmp);
      Idle(20);
    }
    for (int l = layers - 1; l >= 0; --l) {  // backward
      const auto li = static_cast<std::size_t>(l);
      const std::size_t top = 4 * li + 4;  // the layer's last saved tensor
      const std::uint32_t gtmp = Alloc(8 << 20, TensorKind::kTemporary);
      Launch({acts[top - 3], acts[top - 2], acts[top - 1], acts[top], gtmp});
      if (grads_persist_) {
        if (persistent_grads_.size() < params_.size()) persistent_grads_.resize(params_.size(), ~0u);
        if (persistent_grads_[li] == ~0u)
          persistent_grads_[li] = Alloc(2 << 20, TensorKind::kGradient);
        grads[li] = persistent_grads_[li];
      } else if (grads[li] == ~0u) {
        grads[li] = Alloc(2 << 20, TensorKind::kGradient);
      }
      Launch({gtmp, acts[top - 4], params_[li], grads[li]});
      for (std::size_t j = top - 3; j <= top; ++j) Free(acts[j]);
      Free(gtmp);
      Idle(20);
    }
    Free(acts[0]);
  }

  // The optimizer step and zero_grad.
  void Step(const std::vector<std::uint32_t>& grads) {
    if (optimizer_) {
      if (states_.empty())
        for (std::size_t i = 0; i < params_.size(); ++i) {
          states_.push_back(Alloc(2 << 20, TensorKind::kOptimizerState));
          states_.push_back(Alloc(2 << 20, TensorKind::kOptimizerState));
        }
      const std::uint32_t scratch = Alloc(1 << 20, TensorKind::kTemporary);
      std::vector<std::uint32_t> all = params_;
      all.insert(all.end(), grads.begin(), grads.end());
      all.insert(all.end(), states_.begin(), states_.end());
      all.push_back(scratch);
      Launch(all);  // foreach: every tensor in one or two launches
      Launch(all);
      Free(scratch);
    }
    if (!grads_persist_)
      for (std::uint32_t g : grads) Free(g);  // zero_grad(set_to_none=True)
    Idle(40);  // data loading, logging
  }

  void Run(int iterations, int layers, bool free_at_exit = false) {
    for (int l = 0; l < layers; ++l) params_.push_back(Alloc(2 << 20, TensorKind::kParameter));
    Idle(10);
    for (int i = 0; i < iterations; ++i) Iteration(layers);
    if (free_at_exit)  // Python frees the model and the optimizer at interpreter shutdown
      for (std::uint32_t b = 0; b < m_.blocks.size(); ++b)
        if (m_.blocks[b].live_at_end) Free(b);
    m_.end_ns = Tick();
    for (Block& b : m_.blocks)
      if (b.live_at_end) b.free_ns = m_.end_ns;
    InferKinds(&m_);
  }

  // Per kind: precision and recall of the inferred kinds against the truth (by block count).
  void ExpectAccuracy(double min_precision) const {
    for (int k = 1; k < kTensorKinds; ++k) {
      int tp = 0, predicted = 0, truth = 0;
      for (std::size_t b = 0; b < m_.blocks.size(); ++b) {
        const bool p = static_cast<int>(m_.blocks[b].kind) == k;
        const bool t = static_cast<int>(truth_[b]) == k;
        tp += p && t;
        predicted += p;
        truth += t;
      }
      const char* name = KindName(static_cast<TensorKind>(k));
      if (truth == 0) continue;
      if (k == static_cast<int>(TensorKind::kTemporary)) {  // the known confusion's other side
        EXPECT_GE(static_cast<double>(tp), 0.9 * truth) << name << ": recall " << tp << "/" << truth;
      } else {
        EXPECT_EQ(tp, truth) << name << ": recall " << tp << "/" << truth;
      }
      EXPECT_GE(static_cast<double>(tp), min_precision * predicted)
          << name << ": precision " << tp << "/" << predicted;
    }
  }

  // Blocks whose inferred kind differs from the truth.
  int Mismatches(bool print = true) const {
    int bad = 0;
    for (std::size_t b = 0; b < m_.blocks.size(); ++b)
      if (m_.blocks[b].kind != truth_[b]) {
        ++bad;
        if (print)
          ADD_FAILURE() << "block " << b << " (" << m_.blocks[b].requested << " B, allocated at "
                        << m_.blocks[b].alloc_ns << "): inferred "
                        << KindName(m_.blocks[b].kind) << ", truth " << KindName(truth_[b]);
      }
    return bad;
  }

  Model m_;
  std::vector<TensorKind> truth_;

 private:
  std::uint64_t Tick() { return now_ += 1000; }
  bool grads_persist_, optimizer_;
  int accum_;
  std::uint64_t now_ = 0, op_ = 0, next_addr_ = 0x10000000;
  std::vector<std::uint32_t> params_, states_, persistent_grads_;
  std::map<std::uint32_t, std::uint64_t> last_epoch_;
};

// The one known confusion: backward's first allocations, made before allocated bytes peak, look
// like activations (docs/profiler.md); everything else must be exact.
TEST(Kinds, TrainingLoopWithSetToNone) {
  Loop loop;
  loop.Run(6, 8);
  loop.ExpectAccuracy(0.95);
  EXPECT_EQ(loop.m_.iterations, 6u);
  EXPECT_NE(loop.m_.kinds_method.find("6 optimizer steps"), std::string::npos);
}

// Gradient accumulation: four forward and backward passes per optimizer step, the gradients
// made by the first and accumulated by the others.
TEST(Kinds, GradientAccumulation) {
  Loop loop(/*grads_persist=*/false, /*optimizer=*/true, /*accum=*/4);
  loop.Run(5, 6);
  loop.ExpectAccuracy(0.95);
  EXPECT_EQ(loop.m_.iterations, 5u);
}

TEST(Kinds, EverythingFreedAtExit) {
  Loop loop;
  loop.Run(6, 8, /*free_at_exit=*/true);
  loop.ExpectAccuracy(0.95);
  EXPECT_EQ(loop.m_.iterations, 6u);
}

TEST(Kinds, PersistentGradients) {
  Loop loop(/*grads_persist=*/true);
  loop.Run(5, 6);
  loop.ExpectAccuracy(0.95);
}

TEST(Kinds, WithoutOptimizerLongLivedBlocksAreParameters) {
  Loop loop(false, /*optimizer=*/false);
  loop.Run(4, 4);
  EXPECT_EQ(loop.m_.iterations, 0u);
  for (std::size_t b = 0; b < loop.m_.blocks.size(); ++b) {
    const TensorKind want = loop.truth_[b] == TensorKind::kParameter ? TensorKind::kParameter
                                                                       : TensorKind::kTemporary;
    if (loop.truth_[b] == TensorKind::kParameter || loop.truth_[b] == TensorKind::kTemporary) {
      EXPECT_EQ(loop.m_.blocks[b].kind, want) << "block " << b;
    }
  }
}

TEST(Kinds, NoTouchesLeavesKindsUnknown) {
  Loop loop;
  loop.m_.touches.clear();
  Block b;
  b.requested = 100;
  loop.m_.blocks.push_back(b);
  InferKinds(&loop.m_);
  EXPECT_EQ(loop.m_.blocks.back().kind, TensorKind::kUnknown);
  EXPECT_TRUE(loop.m_.kinds_method.empty());
  EXPECT_TRUE(loop.m_.kind_series.empty());
}

TEST(Kinds, BytesOfEachKindAtThePeakAndInTheSeries) {
  Loop loop;
  // One series sample at the very end: only long-lived blocks are live then.
  Series s;
  s.samples.push_back(Sample{});
  loop.m_.series.push_back(s);
  loop.Run(3, 4);
  loop.m_.series[0].samples[0].t_ns = loop.m_.end_ns;
  // Peak: the end of the third forward pass is the largest allocation point; set it by hand
  // to the last activation's allocation time and recompute.
  std::uint64_t peak_t = 0;
  for (std::size_t b = 0; b < loop.m_.blocks.size(); ++b)
    if (loop.truth_[b] == TensorKind::kActivation) peak_t = std::max(peak_t, loop.m_.blocks[b].alloc_ns);
  loop.m_.devices[0].peak_allocated_ns = peak_t;
  InferKinds(&loop.m_);
  const auto& at = loop.m_.devices[0].kinds_at_peak;
  EXPECT_EQ(at[static_cast<int>(TensorKind::kParameter)], 4u * (2 << 20));
  EXPECT_EQ(at[static_cast<int>(TensorKind::kOptimizerState)], 8u * (2 << 20));
  EXPECT_EQ(at[static_cast<int>(TensorKind::kActivation)], 4096u + 16u * (8 << 20));
  EXPECT_EQ(at[static_cast<int>(TensorKind::kGradient)], 0u);
  ASSERT_EQ(loop.m_.kind_series.size(), 1u);
  const auto& end = loop.m_.kind_series[0][0];
  EXPECT_EQ(end[static_cast<int>(TensorKind::kParameter)], 4u * (2 << 20));
  EXPECT_EQ(end[static_cast<int>(TensorKind::kOptimizerState)], 8u * (2 << 20));
  EXPECT_EQ(end[static_cast<int>(TensorKind::kActivation)], 0u);
}

}  // namespace
}  // namespace spillway::report
