// error.h — thread-local "last error" messages behind spillway_last_error(), and the helper
// that every failing path uses to set one and return its status.
#pragma once

#include <string>

#include "spillway/spillway.h"

namespace spillway {

// Records `message` as this thread's last error and returns `status`.
spillway_status Fail(spillway_status status, std::string message);
const char* LastError();
void ClearError();

}  // namespace spillway
