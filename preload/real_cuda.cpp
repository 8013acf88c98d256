// real_cuda.cpp — finds the real CUDA runtime functions behind our interposers: in the global
// libcudart already loaded (Python loads it RTLD_LOCAL, so RTLD_NEXT alone would miss it),
// else in the global scope after us.
#include <dlfcn.h>
#include <link.h>

#include <cstring>
#include <string>

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
}  // namespace

void* RealRuntime(const char* name) {
  std::string path;
  dl_iterate_phdr(FindCudart, &path);
  if (!path.empty()) {
    if (void* h = dlopen(path.c_str(), RTLD_NOLOAD | RTLD_LAZY)) {
      if (void* f = prim::RealDlsym(h, name)) return f;
    }
  }
  return prim::RealDlsym(RTLD_NEXT, name);
}

}  // namespace spillway::preload
