// config.cpp — parsing of the SPILLWAY_* variables (see config.h).
#include "allocator/config.h"

#include <sys/stat.h>

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <initializer_list>
#include <utility>

namespace spillway {

bool ParseBytes(const std::string& s, std::uint64_t* out) {
  if (s.empty() || !(std::isdigit(static_cast<unsigned char>(s[0])) || s[0] == '.')) return false;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  std::string rest(end);
  double mult = 1;
  if (rest.size() == 1 || (rest.size() == 3 && (rest.substr(1) == "iB" || rest.substr(1) == "ib")) ||
      (rest.size() == 2 && (rest[1] == 'B' || rest[1] == 'b'))) {
    switch (std::toupper(static_cast<unsigned char>(rest[0]))) {
      case 'K': mult = 0x1p10; break;
      case 'M': mult = 0x1p20; break;
      case 'G': mult = 0x1p30; break;
      case 'T': mult = 0x1p40; break;
      case 'B': mult = rest.size() == 1 ? 1 : -1; break;
      default: return false;
    }
    if (mult < 0) return false;
  } else if (!rest.empty()) {
    return false;
  }
  double bytes = v * mult;
  if (!std::isfinite(bytes) || bytes < 1 || bytes >= 0x1p63) return false;
  *out = static_cast<std::uint64_t>(bytes);
  return true;
}

namespace {
bool ParseInt(const char* s, long lo, long hi, long* out) {
  char* end = nullptr;
  long v = std::strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || v < lo || v > hi) return false;
  *out = v;
  return true;
}
bool Bad(std::string* error, const char* var, const char* value, const char* form) {
  *error = std::string("spillway: invalid ") + var + "='" + value + "': expected " + form;
  return false;
}
// A variable with two spellings: `off` sets *out false, `on` true, anything else is an error.
bool Switch(const GetEnv& getenv, const char* var, const char* off, const char* on, bool* out,
            std::string* error) {
  const char* v = getenv(var);
  if (v == nullptr || *v == '\0') return true;
  if (std::string(v) == off) *out = false;
  else if (std::string(v) == on) *out = true;
  else return Bad(error, var, v, (std::string(off) + " or " + on).c_str());
  return true;
}
// A variable with several spellings, each setting *out to its value; anything else is an error
// that lists `form`.
template <class E>
bool OneOf(const GetEnv& getenv, const char* var,
           std::initializer_list<std::pair<const char*, E>> names, const char* form, E* out,
           std::string* error) {
  const char* v = getenv(var);
  if (v == nullptr || *v == '\0') return true;
  for (const auto& [name, value] : names)
    if (std::string(v) == name) {
      *out = value;
      return true;
    }
  return Bad(error, var, v, form);
}
constexpr const char kBudgetForm[] =
    "bytes with an optional K/M/G/T suffix (e.g. 40G) or a percentage in (0,100] (e.g. 80%)";
}  // namespace

bool ParseConfig(const GetEnv& getenv, Config* cfg, std::string* error) {
  if (const char* v = getenv("SPILLWAY_DEVICE_BUDGET"); v && *v) {
    std::string s(v);
    if (s.back() == '%') {
      char* end = nullptr;
      double p = std::strtod(s.c_str(), &end);
      if (end != s.c_str() + s.size() - 1 || !(p > 0 && p <= 100))
        return Bad(error, "SPILLWAY_DEVICE_BUDGET", v, kBudgetForm);
      cfg->budget_percent = p;
    } else if (!ParseBytes(s, &cfg->budget_bytes)) {
      return Bad(error, "SPILLWAY_DEVICE_BUDGET", v, kBudgetForm);
    }
  }
  if (!Switch(getenv, "SPILLWAY_RESERVE_POLICY", "fast", "compact", &cfg->compact, error)) return false;
  using Spans = Config::Spans;
  if (!OneOf(getenv, "SPILLWAY_SPANS",
             {{"auto", Spans::kAuto}, {"1", Spans::kOn}, {"0", Spans::kOff}}, "auto, 0 or 1",
             &cfg->spans, error))
    return false;
  if (const char* v = getenv("SPILLWAY_SPAN_MIB"); v && *v) {
    long n = 0;
    if (!ParseInt(v, 4, 512, &n) || (n & (n - 1)) != 0)
      return Bad(error, "SPILLWAY_SPAN_MIB", v, "a power of two from 4 to 512 (MiB)");
    cfg->span_mib = static_cast<std::uint64_t>(n);
  }
  if (const char* v = getenv("SPILLWAY_TRACE"); v) {
    if (!*v) return Bad(error, "SPILLWAY_TRACE", v, "a file path");
    cfg->trace_path = v;
  }
  if (const char* v = getenv("SPILLWAY_REPORT"); v) {
    struct stat st {};
    if (!*v || (stat(v, &st) == 0 && !S_ISDIR(st.st_mode)))
      return Bad(error, "SPILLWAY_REPORT", v, "a directory path (created if missing)");
    cfg->report_dir = v;
  }
  if (const char* v = getenv("SPILLWAY_CALLSITE_MIN"); v && *v) {
    if (std::string(v) == "0") cfg->callsite_min = 0;
    else if (!ParseBytes(v, &cfg->callsite_min))
      return Bad(error, "SPILLWAY_CALLSITE_MIN", v,
                 "bytes with an optional K/M/G suffix (e.g. 1M), or 0 for no call sites");
  }
  if (!Switch(getenv, "SPILLWAY_STATS", "0", "1", &cfg->print_stats, error)) return false;
  if (!Switch(getenv, "SPILLWAY_TRACK", "0", "1", &cfg->track, error)) return false;
  if (!Switch(getenv, "SPILLWAY_KERNELS", "0", "1", &cfg->kernels, error)) return false;
  if (cfg->kernels && !cfg->track)
    return Bad(error, "SPILLWAY_KERNELS", "1", "SPILLWAY_TRACK=1 as well (kernel times come from "
               "the tracker's CUPTI)");
  if (!Switch(getenv, "SPILLWAY_TRACK_LAUNCHES", "auto", "cupti", &cfg->track_launches_cupti, error))
    return false;
  if (!Switch(getenv, "SPILLWAY_OFFLOAD", "0", "1", &cfg->offload, error)) return false;
  if (const char* v = getenv("SPILLWAY_HOST_LIMIT"); v && *v) {
    std::string s(v);
    constexpr const char kForm[] =
        "bytes with an optional K/M/G/T suffix (e.g. 64G) or a percentage of RAM in (0,100]";
    if (s.back() == '%') {
      char* end = nullptr;
      double p = std::strtod(s.c_str(), &end);
      if (end != s.c_str() + s.size() - 1 || !(p > 0 && p <= 100))
        return Bad(error, "SPILLWAY_HOST_LIMIT", v, kForm);
      cfg->host_limit_percent = p;
    } else if (!ParseBytes(s, &cfg->host_limit_bytes) || cfg->host_limit_bytes == 0) {
      return Bad(error, "SPILLWAY_HOST_LIMIT", v, kForm);
    }
  }
  if (const char* v = getenv("SPILLWAY_NVME_PATH"); v) {
    struct stat st {};
    if (!*v || stat(v, &st) != 0 || !S_ISDIR(st.st_mode))
      return Bad(error, "SPILLWAY_NVME_PATH", v, "an existing directory on the disk to page to");
    cfg->nvme_path = v;
  }
  if (const char* v = getenv("SPILLWAY_NVME_LIMIT"); v && *v) {
    if (!ParseBytes(v, &cfg->nvme_limit) || cfg->nvme_limit == 0)
      return Bad(error, "SPILLWAY_NVME_LIMIT", v, "bytes with an optional K/M/G/T suffix (e.g. 500G)");
  }
  if (!Switch(getenv, "SPILLWAY_NVME_VERIFY", "0", "1", &cfg->nvme_verify, error)) return false;
  using Safety = Config::Safety;
  if (!OneOf(getenv, "SPILLWAY_OFFLOAD_SAFETY",
             {{"auto", Safety::kAuto}, {"tracked", Safety::kTracked}, {"strict", Safety::kStrict}},
             "tracked, strict or auto", &cfg->offload_safety, error))
    return false;
  if (const char* v = getenv("SPILLWAY_OFFLOAD_RETURN_USES"); v && *v) {
    char* end = nullptr;
    const double u = std::strtod(v, &end);
    if (end == v || *end != '\0' || !(u > 0 && u <= 1000))
      return Bad(error, "SPILLWAY_OFFLOAD_RETURN_USES", v, "a number in (0, 1000]");
    cfg->offload_return_uses = u;
  }
  if (const char* v = getenv("SPILLWAY_OFFLOAD_LOOKAHEAD"); v && *v) {
    long n = 0;
    if (!ParseInt(v, 0, 256, &n))
      return Bad(error, "SPILLWAY_OFFLOAD_LOOKAHEAD", v, "an integer in 0..256 (0: no prefetching)");
    cfg->offload_lookahead = static_cast<int>(n);
  }
  if (!Switch(getenv, "SPILLWAY_OFFLOAD_DRAIN", "first", "last", &cfg->offload_drain_last, error))
    return false;
  if (!Switch(getenv, "SPILLWAY_OFFLOAD_COPY", "engine", "kernel", &cfg->offload_copy_kernel,
              error))
    return false;
  if (!Switch(getenv, "SPILLWAY_BACKEND", "cuda", "sim", &cfg->use_sim, error)) return false;
  if (const char* v = getenv("SPILLWAY_SIM_DEVICES"); v && *v) {
    long n = 0;
    if (!ParseInt(v, 1, 64, &n)) return Bad(error, "SPILLWAY_SIM_DEVICES", v, "an integer in 1..64");
    cfg->sim_devices = static_cast<int>(n);
  }
  if (const char* v = getenv("SPILLWAY_SIM_DEVICE_MEMORY"); v && *v) {
    if (!ParseBytes(v, &cfg->sim_device_memory) || cfg->sim_device_memory < (std::uint64_t{64} << 20))
      return Bad(error, "SPILLWAY_SIM_DEVICE_MEMORY", v, "bytes, at least 64M (e.g. 16G)");
  }
  return true;
}

std::uint64_t ResolveHostLimit(const Config& cfg, std::uint64_t ram) {
  if (cfg.host_limit_bytes != 0) return cfg.host_limit_bytes;
  return static_cast<std::uint64_t>(static_cast<double>(ram) * cfg.host_limit_percent / 100.0);
}

std::uint64_t ResolveBudget(const Config& cfg, std::uint64_t total) {
  if (cfg.budget_percent > 0) return static_cast<std::uint64_t>(static_cast<double>(total) * cfg.budget_percent / 100.0);
  return cfg.budget_bytes;
}

}  // namespace spillway
