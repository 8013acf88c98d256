// real_cuda.cpp — finds the real CUDA runtime functions behind our interposers: in a libcudart
// already loaded (Python loads it RTLD_LOCAL, so RTLD_NEXT alone would miss it), else in the
// global scope after us; each name is resolved once.
#include <dlfcn.h>
#include <link.h>

#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>

#include "preload/preload.h"

namespace spillway::preload {

namespace {
int FindCudart(dl_phdr_info* info, size_t, void* data) {
  const char* name = info->dlpi_name;
  if (name != nullptr && std::strstr(name, "libcudart.so") != nullptr) {
    *static_cast<std::string*>(data) = name;
    return 1;
  }
  return 0;
}

void* Resolve(const char* name) {
  std::string path;
  dl_iterate_phdr(FindCudart, &path);
  if (!path.empty()) {
    if (void* h = dlopen(path.c_str(), RTLD_NOLOAD | RTLD_LAZY)) {
      if (void* f = prim::RealDlsym(h, name)) return f;
    }
  }
  return prim::RealDlsym(RTLD_NEXT, name);
}

}  // namespace

void* RealRuntime(const char* name) {
  // Resolved once per name (walking the loaded objects costs microseconds); a miss is not
  // cached, since libcudart may be loaded later.
  static std::mutex mu;
  static std::unordered_map<std::string, void*> cache;
  std::lock_guard<std::mutex> lk(mu);
  auto it = cache.find(name);
  if (it != cache.end()) return it->second;
  void* f = Resolve(name);
  if (f != nullptr) cache.emplace(name, f);
  return f;
}

}  // namespace spillway::preload
