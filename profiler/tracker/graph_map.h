// graph_map.h — the tracker's CUDA-graph bookkeeping: the device addresses (argument words that
// pointed into a live block) of the operations captured on a stream, carried from the capture
// to its CUgraph (cuStreamEndCapture), from graph to graph (clones, child graphs, explicit
// nodes), from the graph to each CUgraphExec instantiated from it, and read back at every
// cuGraphLaunch, where the tracker records one access on each block still live at one of those
// addresses. Handles (streams, graphs, execs) are opaque integers here: plain C++, tested on
// the CPU.
//
// Addresses, not blocks, are kept: a graph's kernels use the pointers baked into it, so at a
// launch they touch whatever block lives at those addresses then (none if it was freed).
// Each set is bounded (kMaxAddrs distinct addresses); addresses beyond are dropped and counted.
// Thread-safe: one mutex (captures, graph building and instantiation are rare); the launch
// path's check "is any capture in progress?" is one relaxed atomic load.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace spillway::tracker {

class GraphMap {
 public:
  static constexpr std::size_t kMaxAddrs = std::size_t{1} << 20;    // per capture, graph or exec
  using Addrs = std::shared_ptr<const std::vector<std::uint64_t>>;  // sorted, distinct

  // A capture starts on `stream` (a capture already there is dropped and restarted).
  void begin_capture(std::uint64_t stream);
  bool any_capturing() const { return active_.load(std::memory_order_relaxed) != 0; }
  bool capturing(std::uint64_t stream) const;
  // Adds `addrs` to the capture on `stream`. False (nothing kept) when it is not capturing.
  bool capture(std::uint64_t stream, const std::uint64_t* addrs, std::size_t n);
  // Adds `addrs` to the only capture in progress (an operation on a stream joined to a capture
  // through an event). False (nothing kept) when there is none or more than one.
  bool capture_sole(const std::uint64_t* addrs, std::size_t n);
  // The capture on `stream` ends; its addresses go to `graph` (added to what the graph has:
  // cuStreamBeginCaptureToGraph captures into an existing graph). graph == 0 (the capture
  // failed): they are dropped.
  void end_capture(std::uint64_t stream, std::uint64_t graph);

  // Explicit graph building: addresses of a node added to `graph`; the addresses of graph
  // `from` added to graph `to` (a clone, a child-graph node).
  void add_to_graph(std::uint64_t graph, const std::uint64_t* addrs, std::size_t n);
  void add_graph_to_graph(std::uint64_t from, std::uint64_t to);
  // `exec` was instantiated from `graph`: it gets a copy of the graph's addresses now (later
  // changes to the graph do not reach it, as in CUDA). An unknown graph gives an empty set.
  void instantiate(std::uint64_t graph, std::uint64_t exec);
  void destroy_graph(std::uint64_t graph);
  void destroy_exec(std::uint64_t exec);

  // The addresses an exec's launch touches; nullptr for an exec never seen instantiated.
  Addrs exec_addrs(std::uint64_t exec) const;
  // The addresses collected so far for a graph (a copy; sorted, distinct; empty if unknown).
  std::vector<std::uint64_t> graph_addrs(std::uint64_t graph) const;

  std::size_t captures() const;  // in progress
  std::size_t graphs() const;
  std::size_t execs() const;
  std::uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

 private:
  // A growing set: appended to, made sorted and distinct when it doubles and when read.
  struct Set {
    std::vector<std::uint64_t> v;
    std::size_t sorted = 0;  // v[0, sorted) is sorted and distinct
  };
  void add_locked(Set& s, const std::uint64_t* addrs, std::size_t n);
  static void normalize(Set& s);

  mutable std::mutex mu_;
  std::atomic<int> active_{0};  // captures in progress (== captures_.size())
  std::unordered_map<std::uint64_t, Set> captures_;
  mutable std::unordered_map<std::uint64_t, Set> graphs_;
  std::unordered_map<std::uint64_t, Addrs> execs_;
  std::atomic<std::uint64_t> dropped_{0};
};

}  // namespace spillway::tracker
