// graph_map.cpp — the tracker's CUDA-graph bookkeeping (see graph_map.h).
#include "profiler/tracker/graph_map.h"

#include <algorithm>

namespace spillway::tracker {

void GraphMap::normalize(Set& s) {
  if (s.sorted == s.v.size()) return;
  std::sort(s.v.begin(), s.v.end());
  s.v.erase(std::unique(s.v.begin(), s.v.end()), s.v.end());
  s.sorted = s.v.size();
}

void GraphMap::add_locked(Set& s, const std::uint64_t* addrs, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    if (s.v.size() >= kMaxAddrs) {
      normalize(s);  // duplicates may have filled it: make room before dropping
      if (s.v.size() >= kMaxAddrs) {
        if (!std::binary_search(s.v.begin(), s.v.end(), addrs[i]))
          dropped_.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
    }
    s.v.push_back(addrs[i]);
  }
  if (s.v.size() >= 2 * std::max<std::size_t>(s.sorted, 64)) normalize(s);
}

void GraphMap::begin_capture(std::uint64_t stream) {
  std::lock_guard<std::mutex> lk(mu_);
  captures_[stream] = Set{};
  active_.store(static_cast<int>(captures_.size()), std::memory_order_relaxed);
}

bool GraphMap::capturing(std::uint64_t stream) const {
  std::lock_guard<std::mutex> lk(mu_);
  return captures_.find(stream) != captures_.end();
}

bool GraphMap::capture(std::uint64_t stream, const std::uint64_t* addrs, std::size_t n) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = captures_.find(stream);
  if (it == captures_.end()) return false;
  add_locked(it->second, addrs, n);
  return true;
}

bool GraphMap::capture_sole(const std::uint64_t* addrs, std::size_t n) {
  std::lock_guard<std::mutex> lk(mu_);
  if (captures_.size() != 1) return false;
  add_locked(captures_.begin()->second, addrs, n);
  return true;
}

void GraphMap::end_capture(std::uint64_t stream, std::uint64_t graph) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = captures_.find(stream);
  if (it == captures_.end()) return;
  Set s = std::move(it->second);
  captures_.erase(it);
  active_.store(static_cast<int>(captures_.size()), std::memory_order_relaxed);
  if (graph == 0) return;
  normalize(s);
  Set& g = graphs_[graph];
  if (g.v.empty()) {
    g = std::move(s);
  } else {
    add_locked(g, s.v.data(), s.v.size());
  }
}

void GraphMap::add_to_graph(std::uint64_t graph, const std::uint64_t* addrs, std::size_t n) {
  if (graph == 0) return;
  std::lock_guard<std::mutex> lk(mu_);
  add_locked(graphs_[graph], addrs, n);
}

void GraphMap::add_graph_to_graph(std::uint64_t from, std::uint64_t to) {
  if (from == 0 || to == 0 || from == to) return;
  std::lock_guard<std::mutex> lk(mu_);
  auto it = graphs_.find(from);
  if (it == graphs_.end()) return;
  normalize(it->second);
  const std::vector<std::uint64_t> src = it->second.v;  // `to` may rehash graphs_
  add_locked(graphs_[to], src.data(), src.size());
}

void GraphMap::instantiate(std::uint64_t graph, std::uint64_t exec) {
  if (exec == 0) return;
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<std::uint64_t> v;
  if (auto it = graphs_.find(graph); it != graphs_.end()) {
    normalize(it->second);
    v = it->second.v;
  }
  execs_[exec] = std::make_shared<const std::vector<std::uint64_t>>(std::move(v));
}

void GraphMap::destroy_graph(std::uint64_t graph) {
  std::lock_guard<std::mutex> lk(mu_);
  graphs_.erase(graph);
}

void GraphMap::destroy_exec(std::uint64_t exec) {
  std::lock_guard<std::mutex> lk(mu_);
  execs_.erase(exec);
}

GraphMap::Addrs GraphMap::exec_addrs(std::uint64_t exec) const {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = execs_.find(exec);
  return it == execs_.end() ? nullptr : it->second;
}

std::vector<std::uint64_t> GraphMap::graph_addrs(std::uint64_t graph) const {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = graphs_.find(graph);
  if (it == graphs_.end()) return {};
  normalize(it->second);
  return it->second.v;
}

std::size_t GraphMap::captures() const {
  std::lock_guard<std::mutex> lk(mu_);
  return captures_.size();
}

std::size_t GraphMap::graphs() const {
  std::lock_guard<std::mutex> lk(mu_);
  return graphs_.size();
}

std::size_t GraphMap::execs() const {
  std::lock_guard<std::mutex> lk(mu_);
  return execs_.size();
}

}  // namespace spillway::tracker
