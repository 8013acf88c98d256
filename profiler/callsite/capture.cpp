// capture.cpp — call sites cached by stack content (see capture.h). The lock is never held while
// unwinding, symbolizing or reading Python frames (those take the loader's lock or run CPython's
// C API).
#include "profiler/callsite/capture.h"

#include <pthread.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "profiler/callsite/python_frames.h"
#include "profiler/callsite/stack.h"

namespace spillway::callsite {

namespace {

constexpr std::size_t kPyFrames = 8;
constexpr std::size_t kCppFrames = 24;
constexpr std::size_t kMaxStacks = 65536;
constexpr std::size_t kMaxText = 4096;

struct Cache {
  std::mutex mu;
  std::unordered_map<std::string, std::unique_ptr<const std::string>> stacks;  // key -> text
  std::unordered_map<std::uintptr_t, std::string> symbols;                     // pc -> frame
};

Cache& TheCache() {
  static Cache* c = [] {
    auto* cache = new Cache;  // never freed: texts are referenced by the trace writer
    // A fork while another thread holds the lock must not leave it held in the child.
    pthread_atfork([] { TheCache().mu.lock(); }, [] { TheCache().mu.unlock(); },
                   [] { TheCache().mu.unlock(); });
    return cache;
  }();
  return *c;
}

void AddLine(std::string* text, const std::string& line) {
  if (text->size() + line.size() + 1 > kMaxText) return;
  *text += line;
  *text += '\n';
}

std::string Symbol(Cache& c, std::uintptr_t pc) {
  {
    std::lock_guard<std::mutex> lk(c.mu);
    if (auto it = c.symbols.find(pc); it != c.symbols.end()) return it->second;
  }
  std::string s = Symbolize(pc);
  std::lock_guard<std::mutex> lk(c.mu);
  return c.symbols.emplace(pc, std::move(s)).first->second;
}

}  // namespace

const std::string* Capture() {
  PyFrame py[kPyFrames];
  std::uintptr_t pcs[kCppFrames];
  const std::size_t npy = PythonFrames(py, kPyFrames);
  const std::size_t ncpp = CppFrames(pcs, kCppFrames);
  if (npy == 0 && ncpp == 0) return nullptr;
  std::string key;
  key.reserve(1 + npy * 16 + ncpp * sizeof(std::uintptr_t));
  key.push_back(static_cast<char>(npy));
  for (std::size_t i = 0; i < npy; ++i) {
    const std::uintptr_t w[2] = {reinterpret_cast<std::uintptr_t>(py[i].where),
                                 static_cast<std::uintptr_t>(static_cast<unsigned>(py[i].line))};
    key.append(reinterpret_cast<const char*>(w), sizeof w);
  }
  key.append(reinterpret_cast<const char*>(pcs), ncpp * sizeof(std::uintptr_t));
  Cache& c = TheCache();
  {
    std::lock_guard<std::mutex> lk(c.mu);
    if (auto it = c.stacks.find(key); it != c.stacks.end()) return it->second.get();
    if (c.stacks.size() >= kMaxStacks) return nullptr;
  }
  // First time this stack is seen: its text.
  std::string text;
  for (std::size_t i = 0; i < npy; ++i) {
    const std::string& where = *py[i].where;  // "FILE FUNCTION"
    const std::size_t sp = where.rfind(' ');
    AddLine(&text,
            "py " + where.substr(0, sp) + ":" + std::to_string(py[i].line) + where.substr(sp));
  }
  for (std::size_t i = 0; i < ncpp; ++i) AddLine(&text, "c " + Symbol(c, pcs[i]));
  if (!text.empty()) text.pop_back();  // no newline after the last frame
  std::lock_guard<std::mutex> lk(c.mu);
  auto [it, fresh] = c.stacks.emplace(std::move(key), nullptr);
  if (fresh) it->second = std::make_unique<const std::string>(std::move(text));
  return it->second.get();
}

}  // namespace spillway::callsite
