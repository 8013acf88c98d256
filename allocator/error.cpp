// error.cpp — thread-local last-error storage (see error.h).
#include "allocator/error.h"

namespace spillway {
namespace {
thread_local std::string t_last_error;
}

spillway_status Fail(spillway_status status, std::string message) {
  t_last_error = std::move(message);
  return status;
}
const char* LastError() { return t_last_error.c_str(); }
void ClearError() { t_last_error.clear(); }

}  // namespace spillway
