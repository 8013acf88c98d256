// nvme_bench.cpp — throughput of the NVMe tier: plain io_uring O_DIRECT on a file in DIR (the
// anchor, "nvme_raw_gbps") against NvmeStore writing and reading the same bytes in 2 MiB segments,
// in calls of 64 MiB as the pager makes them. Plain host memory (not pinned), no GPU needed.
//
//   nvme_bench DIR [--bytes N] [--qd N] [--request-bytes N] [--verify] [--json FILE]
//
// N takes K/M/G suffixes (powers of 1024). Prints GB/s (1e9 bytes/s) and the ratios store/raw.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "offload/nvme_store.h"

namespace {

using spillway::offload::NvmeSegment;
using spillway::offload::NvmeStore;

constexpr std::size_t kSegment = std::size_t{2} << 20;  // the pager's chunk
constexpr std::size_t kCall = std::size_t{64} << 20;    // bytes per write/read call

bool ParseBytes(const char* s, std::uint64_t* out) {
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(s, &end, 10);
  if (errno != 0 || end == s) return false;
  std::uint64_t mult = 1;
  switch (*end) {
    case '\0':
      break;
    case 'K':
    case 'k':
      mult = 1ull << 10;
      ++end;
      break;
    case 'M':
    case 'm':
      mult = 1ull << 20;
      ++end;
      break;
    case 'G':
    case 'g':
      mult = 1ull << 30;
      ++end;
      break;
    default:
      return false;
  }
  if (*end == 'i') ++end;
  if (*end == 'B') ++end;
  if (*end != '\0') return false;
  *out = v * mult;
  return true;
}

int Usage(const char* why) {
  std::fprintf(stderr,
               "nvme_bench: %s\nusage: nvme_bench DIR [--bytes N] [--qd N] [--request-bytes N] "
               "[--verify] [--json FILE]\n",
               why);
  return 2;
}

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir, json;
  std::uint64_t bytes = std::uint64_t{2} << 30, qd = 32, request = 1 << 20;
  bool verify = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](std::uint64_t* out) { return i + 1 < argc && ParseBytes(argv[++i], out); };
    if (a == "--bytes") {
      if (!value(&bytes)) return Usage("--bytes needs a size (e.g. 4G)");
    } else if (a == "--qd") {
      if (!value(&qd) || qd == 0) return Usage("--qd needs a positive number");
    } else if (a == "--request-bytes") {
      if (!value(&request)) return Usage("--request-bytes needs a size (e.g. 1M)");
    } else if (a == "--json") {
      if (i + 1 >= argc) return Usage("--json needs a file name");
      json = argv[++i];
    } else if (a == "--verify") {
      verify = true;
    } else if (!a.empty() && a[0] != '-' && dir.empty()) {
      dir = a;
    } else {
      return Usage(("unknown argument '" + a + "'").c_str());
    }
  }
  if (dir.empty()) return Usage("DIR is missing");
  if (bytes == 0 || bytes % kSegment != 0) return Usage("--bytes must be a multiple of 2 MiB");

  double raw_w = 0, raw_r = 0;
  std::string error;
  if (!spillway::offload::RawIoThroughput(dir, bytes, static_cast<unsigned>(qd), request, &raw_w,
                                          &raw_r, &error)) {
    std::fprintf(stderr, "nvme_bench: raw I/O: %s\n", error.c_str());
    return 1;
  }

  spillway::offload::NvmeOptions opt;
  opt.dir = dir;
  opt.queue_depth = static_cast<unsigned>(qd);
  opt.request_bytes = request;
  opt.verify = verify;
  auto store = NvmeStore::Open(opt, &error);
  if (store == nullptr) {
    std::fprintf(stderr, "nvme_bench: %s\n", error.c_str());
    return 1;
  }
  void* mem = nullptr;
  if (posix_memalign(&mem, 4096, kCall) != 0) {
    std::fprintf(stderr, "nvme_bench: out of host memory for a %zu-byte buffer\n", kCall);
    return 1;
  }
  auto* buf = static_cast<unsigned char*>(mem);
  std::mt19937_64 rng(1);
  for (std::size_t i = 0; i < kCall; i += 8) {
    std::uint64_t v = rng();
    std::memcpy(buf + i, &v, 8);
  }

  // Write: every call stamps its number into each segment, to check the reads come back right.
  std::vector<NvmeStore::Slot> slots;
  std::vector<std::size_t> call_bytes;
  auto t0 = std::chrono::steady_clock::now();
  for (std::uint64_t done = 0; done < bytes;) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(kCall, bytes - done));
    std::vector<NvmeSegment> segs;
    for (std::size_t off = 0; off < n; off += kSegment) {
      std::uint64_t stamp = slots.size() * 1000 + off / kSegment;
      std::memcpy(buf + off, &stamp, 8);
      segs.push_back({buf + off, kSegment});
    }
    NvmeStore::Slot slot = 0;
    if (store->write(segs.data(), segs.size(), &slot, &error) != SPILLWAY_OK) {
      std::fprintf(stderr, "nvme_bench: store write: %s\n", error.c_str());
      return 1;
    }
    slots.push_back(slot);
    call_bytes.push_back(n);
    done += n;
  }
  double store_w = static_cast<double>(bytes) / Seconds(t0) / 1e9;

  t0 = std::chrono::steady_clock::now();
  for (std::size_t c = 0; c < slots.size(); ++c) {
    std::vector<NvmeSegment> segs;
    for (std::size_t off = 0; off < call_bytes[c]; off += kSegment)
      segs.push_back({buf + off, kSegment});
    if (store->read(slots[c], segs.data(), segs.size(), &error) != SPILLWAY_OK) {
      std::fprintf(stderr, "nvme_bench: store read: %s\n", error.c_str());
      return 1;
    }
    for (std::size_t off = 0; off < call_bytes[c]; off += kSegment) {
      std::uint64_t stamp = 0, want = c * 1000 + off / kSegment;
      std::memcpy(&stamp, buf + off, 8);
      if (stamp != want) {
        std::fprintf(stderr, "nvme_bench: slot %llu read back segment stamp %llu, not %llu\n",
                     static_cast<unsigned long long>(slots[c]),
                     static_cast<unsigned long long>(stamp), static_cast<unsigned long long>(want));
        return 1;
      }
    }
  }
  double store_r = static_cast<double>(bytes) / Seconds(t0) / 1e9;
  std::string info = store->info();
  for (NvmeStore::Slot s : slots) store->release(s);
  store.reset();
  std::free(mem);

  std::printf("%s\n", info.c_str());
  std::printf(
      "bytes %llu, queue depth %llu, requests of %llu bytes, calls of %zu MiB in 2 MiB "
      "segments\n",
      static_cast<unsigned long long>(bytes), static_cast<unsigned long long>(qd),
      static_cast<unsigned long long>(request), kCall >> 20);
  std::printf("raw   write %6.3f GB/s   read %6.3f GB/s\n", raw_w, raw_r);
  std::printf("store write %6.3f GB/s   read %6.3f GB/s\n", store_w, store_r);
  std::printf("store/raw write %.3f   read %.3f\n", store_w / raw_w, store_r / raw_r);

  if (!json.empty()) {
    std::FILE* f = std::fopen(json.c_str(), "w");
    if (f == nullptr) {
      std::fprintf(stderr, "nvme_bench: cannot write %s: %s\n", json.c_str(), std::strerror(errno));
      return 1;
    }
    std::fprintf(f,
                 "{\"raw_write_gbps\": %.4f, \"raw_read_gbps\": %.4f, \"store_write_gbps\": %.4f, "
                 "\"store_read_gbps\": %.4f, \"ratio_write\": %.4f, \"ratio_read\": %.4f, "
                 "\"bytes\": %llu, \"queue_depth\": %llu, \"request_bytes\": %llu, "
                 "\"verify\": %s}\n",
                 raw_w, raw_r, store_w, store_r, store_w / raw_w, store_r / raw_r,
                 static_cast<unsigned long long>(bytes), static_cast<unsigned long long>(qd),
                 static_cast<unsigned long long>(request), verify ? "true" : "false");
    if (std::fclose(f) != 0) {
      std::fprintf(stderr, "nvme_bench: writing %s: %s\n", json.c_str(), std::strerror(errno));
      return 1;
    }
  }
  return 0;
}
