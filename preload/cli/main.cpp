// main.cpp — `spillway`: dispatches the subcommands, and implements `run`, which starts a
// command under the preload with the chosen SPILLWAY_* settings.
#include <dlfcn.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "allocator/config.h"
#include "preload/cli/commands.h"
#include "profiler/tracker/tracker.h"

namespace spillway::cli {

const char kUsage[] =
    "usage: spillway <command> [args]\n"
    "  run [--budget BYTES|PCT%] [--reserve-policy fast|compact] [--stats] [--trace FILE]\n"
    "      [--report DIR] [--offload] [--host-limit BYTES|PCT%] [--nvme DIR] [--track]\n"
    "      [--sim] -- CMD [ARGS...]\n"
    "      run CMD with Spillway's allocator preloaded. For PyTorch it sets\n"
    "      PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync unless that variable is set. With\n"
    "      SPILLWAY_TRACK=1 it sets NVTX_INJECTION64_PATH to libcupti unless that is set\n"
    "      (NVTX ranges then become marks in the trace). --offload: past the budget, evict cold\n"
    "      blocks to pinned host memory (SPILLWAY_OFFLOAD=1); --nvme DIR: the NVMe tier;\n"
    "      --track: the CUPTI tracker (SPILLWAY_TRACK=1; offload safety becomes `tracked`).\n"
    "  info                     what this machine supports (GPUs, VMM, CUPTI, io_uring)\n"
    "  replay TRACE [--device-memory BYTES] [--gpu-lag-ms L] [--trace OUT]\n"
    "      replay a SPILLWAY_TRACE file through the CPU simulator and print the summary;\n"
    "      with L, at the recorded pace, streams finishing each operation L ms late; with\n"
    "      OUT, record the replayed allocator's own event log\n"
    "  report LOG... [-o DIR] [--format text,json,chrome,html,memviz|all]\n"
    "      reports from SPILLWAY_TRACE logs (one per process, merged): summary, JSON, Chrome\n"
    "      trace (Perfetto), HTML, memory_viz snapshot; into DIR (default spillway-report)\n"
    "  version\n";

namespace {

// Directory of this executable.
std::string SelfDir() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  buf[n] = '\0';
  std::string p(buf);
  return p.substr(0, p.rfind('/'));
}

std::string FindPreload() {
  const std::string dir = SelfDir();
  for (const std::string& c : {dir + "/libspillway_preload.so", dir + "/../lib/libspillway_preload.so",
                               dir + "/../lib64/libspillway_preload.so",
                               dir + "/../lib/x86_64-linux-gnu/libspillway_preload.so"})
    if (access(c.c_str(), R_OK) == 0) return c;
  return "";
}

}  // namespace

int Run(int argc, char** argv) {
  int i = 0;
  for (; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* flag) -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "spillway run: %s needs a value\n", flag);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--") {
      ++i;
      break;
    } else if (a == "--budget") {
      setenv("SPILLWAY_DEVICE_BUDGET", value("--budget"), 1);
    } else if (a == "--reserve-policy") {
      setenv("SPILLWAY_RESERVE_POLICY", value("--reserve-policy"), 1);
    } else if (a == "--stats") {
      setenv("SPILLWAY_STATS", "1", 1);
    } else if (a == "--trace") {
      setenv("SPILLWAY_TRACE", value("--trace"), 1);
    } else if (a == "--report") {
      setenv("SPILLWAY_REPORT", value("--report"), 1);
    } else if (a == "--offload") {
      setenv("SPILLWAY_OFFLOAD", "1", 1);
    } else if (a == "--host-limit") {
      setenv("SPILLWAY_HOST_LIMIT", value("--host-limit"), 1);
    } else if (a == "--nvme") {
      setenv("SPILLWAY_NVME_PATH", value("--nvme"), 1);
    } else if (a == "--track") {
      setenv("SPILLWAY_TRACK", "1", 1);
    } else if (a == "--sim") {
      setenv("SPILLWAY_BACKEND", "sim", 1);
    } else {
      std::fprintf(stderr, "spillway run: unknown option '%s'\n%s", a.c_str(), kUsage);
      return 2;
    }
  }
  if (i >= argc) {
    std::fprintf(stderr, "spillway run: no command given after --\n%s", kUsage);
    return 2;
  }
  // Check the configuration here, before the command starts, with the same parser.
  Config cfg;
  std::string err;
  if (!ParseConfig([](const char* n) { return std::getenv(n); }, &cfg, &err)) {
    std::fprintf(stderr, "%s\n", err.c_str());
    return 2;
  }
  // NVTX ranges reach the tracker only through libcupti as NVTX's injection library.
  if (cfg.track) tracker::SetNvtxInjectionForTracking();
  const std::string preload = FindPreload();
  if (preload.empty()) {
    std::fprintf(stderr, "spillway run: libspillway_preload.so not found beside %s\n",
                 SelfDir().c_str());
    return 2;
  }
  std::string ld = preload;
  if (const char* old = std::getenv("LD_PRELOAD"); old && *old) ld += std::string(":") + old;
  setenv("LD_PRELOAD", ld.c_str(), 1);
  // PyTorch reads PYTORCH_ALLOC_CONF too (newer name): respect whichever the user set.
  if (std::getenv("PYTORCH_CUDA_ALLOC_CONF") == nullptr &&
      std::getenv("PYTORCH_ALLOC_CONF") == nullptr &&
      std::getenv("PYTORCH_NO_CUDA_MEMORY_CACHING") == nullptr)
    setenv("PYTORCH_CUDA_ALLOC_CONF", "backend:cudaMallocAsync", 1);
  execvp(argv[i], argv + i);
  std::fprintf(stderr, "spillway run: cannot execute '%s': %s\n", argv[i], std::strerror(errno));
  return 127;
}

}  // namespace spillway::cli

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(spillway::cli::kUsage, stderr);
    return 2;
  }
  std::string cmd = argv[1];
  if (cmd == "run") return spillway::cli::Run(argc - 2, argv + 2);
  if (cmd == "info") return spillway::cli::Info(argc - 2, argv + 2);
  if (cmd == "replay") return spillway::cli::Replay(argc - 2, argv + 2);
  if (cmd == "report") return spillway::cli::Report(argc - 2, argv + 2);
  if (cmd == "version" || cmd == "--version") {
    std::printf("spillway 0.1.0\n");
    return 0;
  }
  if (cmd == "help" || cmd == "--help" || cmd == "-h") {
    std::fputs(spillway::cli::kUsage, stdout);
    return 0;
  }
  std::fprintf(stderr, "spillway: unknown command '%s'\n%s", cmd.c_str(), spillway::cli::kUsage);
  return 2;
}
