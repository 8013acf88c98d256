// nvme_store_test.cpp — the NVMe tier's storage engine (offload/nvme_store.h) and CRC32C on the
// build machine's disk: round trips, space reuse, the limit, injected and real disk-full errors,
// verify, Open's errors, and that the backing file is invisible and gone after the store.
// The store's directory: $SPILLWAY_TEST_NVME_DIR, else $TMPDIR, else the current directory (ctest
// runs in the build folder); tests skip, saying why, where O_DIRECT or io_uring is unavailable.
#include "offload/nvme_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "offload/crc32c.h"

namespace spillway::offload {
namespace {

constexpr std::size_t kKiB = 1024, kMiB = 1024 * 1024;

// ---- helpers ----------------------------------------------------------------------------------

struct Buf {
  explicit Buf(std::size_t n) : len(n) {
    if (posix_memalign(&p, 4096, n) != 0) p = nullptr;
  }
  ~Buf() { std::free(p); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  unsigned char* bytes() const { return static_cast<unsigned char*>(p); }
  void* p = nullptr;
  std::size_t len;
};

void Fill(const Buf& b, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (std::size_t i = 0; i < b.len; i += 8) {
    std::uint64_t v = rng();
    std::memcpy(b.bytes() + i, &v, 8);
  }
}

// A buffer cut into segments of the given sizes (each a multiple of 4096).
struct Segmented {
  explicit Segmented(const std::vector<std::size_t>& sizes) {
    for (std::size_t s : sizes) {
      bufs.push_back(std::make_unique<Buf>(s));
      segs.push_back({bufs.back()->p, s});
      total += s;
    }
  }
  void fill(std::uint64_t seed) {
    for (std::size_t i = 0; i < bufs.size(); ++i) Fill(*bufs[i], seed * 1000 + i);
  }
  void zero() {
    for (auto& b : bufs) std::memset(b->p, 0, b->len);
  }
  std::vector<unsigned char> flat() const {
    std::vector<unsigned char> v;
    for (auto& b : bufs) v.insert(v.end(), b->bytes(), b->bytes() + b->len);
    return v;
  }
  std::vector<std::unique_ptr<Buf>> bufs;
  std::vector<NvmeSegment> segs;
  std::size_t total = 0;
};

std::vector<std::size_t> RandomSizes(std::mt19937_64& rng, int count, std::size_t max_pages) {
  std::vector<std::size_t> v;
  for (int i = 0; i < count; ++i) v.push_back((1 + rng() % max_pages) * 4096);
  return v;
}

// The same total cut differently: pieces of `pages` 4 KiB pages, the last one shorter.
std::vector<std::size_t> Recut(std::size_t total, std::size_t pages) {
  std::vector<std::size_t> v;
  for (std::size_t at = 0; at < total; at += pages * 4096)
    v.push_back(std::min(total - at, pages * 4096));
  return v;
}

std::string TestRoot() {
  for (const char* var : {"SPILLWAY_TEST_NVME_DIR", "TMPDIR"})
    if (const char* v = std::getenv(var); v != nullptr && *v != '\0') return v;
  return ".";
}

int CountEntries(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return -1;
  int n = 0;
  while (dirent* e = readdir(d))
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) ++n;
  closedir(d);
  return n;
}

// A fresh directory (absolute path), removed with what is in it at the end.
struct TempDir {
  TempDir() {
    std::string tmpl = TestRoot() + "/spillway-nvme-test-XXXXXX";
    std::vector<char> b(tmpl.begin(), tmpl.end());
    b.push_back('\0');
    if (mkdtemp(b.data()) == nullptr) {
      error = "mkdtemp(" + tmpl + "): " + std::strerror(errno);
      return;
    }
    char real[PATH_MAX];
    path = realpath(b.data(), real) ? real : b.data();
  }
  ~TempDir() {
    if (path.empty()) return;
    if (DIR* d = opendir(path.c_str())) {
      while (dirent* e = readdir(d))
        if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0)
          unlink((path + "/" + e->d_name).c_str());
      closedir(d);
    }
    rmdir(path.c_str());
  }
  std::string path, error;
};

// The descriptors of this process open on files in `dir`, with their link counts.
std::vector<nlink_t> OpenFilesIn(const std::string& dir) {
  std::vector<nlink_t> links;
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return links;
  while (dirent* e = readdir(d)) {
    std::string fd_path = std::string("/proc/self/fd/") + e->d_name;
    char target[PATH_MAX + 1];
    ssize_t n = readlink(fd_path.c_str(), target, PATH_MAX);
    if (n <= 0) continue;
    target[n] = '\0';
    if (std::string(target).rfind(dir + "/", 0) != 0) continue;
    struct stat st {};
    if (stat(fd_path.c_str(), &st) == 0) links.push_back(st.st_nlink);
  }
  closedir(d);
  return links;
}

// Open's error says O_DIRECT or io_uring cannot be had here: a reason to skip, not a failure.
bool Unsupported(const std::string& error) {
  return error.find("O_DIRECT") != std::string::npos ||
         error.find("io_uring") != std::string::npos ||
         error.find("direct I/O check") != std::string::npos;
}

class NvmeStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(dir_.error.empty()) << dir_.error;
    std::string error;
    auto probe = NvmeStore::Open(options(), &error);
    if (probe == nullptr && Unsupported(error))
      GTEST_SKIP() << "no direct I/O through io_uring in " << dir_.path << ": " << error
                   << " (set SPILLWAY_TEST_NVME_DIR to a directory on a disk)";
    ASSERT_NE(probe, nullptr) << error;
  }
  NvmeOptions options() const {
    NvmeOptions o;
    o.dir = dir_.path;
    return o;
  }
  std::unique_ptr<NvmeStore> open(const NvmeOptions& o) {
    std::string error;
    auto s = NvmeStore::Open(o, &error);
    EXPECT_NE(s, nullptr) << error;
    return s;
  }
  TempDir dir_;
};

// Writes `sizes` of random data, reads them back into a different cut and checks every byte.
void RoundTrip(NvmeStore& store, const std::vector<std::size_t>& sizes, std::uint64_t seed,
               std::size_t read_pages) {
  Segmented in(sizes);
  in.fill(seed);
  NvmeStore::Slot slot = 0;
  std::string error;
  ASSERT_EQ(store.write(in.segs.data(), in.segs.size(), &slot, &error), SPILLWAY_OK) << error;
  Segmented out(Recut(in.total, read_pages));
  out.zero();
  ASSERT_EQ(store.read(slot, out.segs.data(), out.segs.size(), &error), SPILLWAY_OK) << error;
  ASSERT_TRUE(in.flat() == out.flat()) << "bytes differ after a round trip of " << in.total;
  EXPECT_TRUE(store.release(slot));
}

bool WriteFile(const char* path, const std::string& text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  int e = errno;
  close(fd);
  errno = e;
  return ok;
}

// Runs fn(dir) in a child process in new user and mount namespaces, with a filesystem of type
// `fstype` mounted on a fresh directory. Returns what fn returned, or "SKIP reason".
std::string InPrivateMount(const char* fstype, const char* data,
                           const std::function<std::string(const std::string&)>& fn) {
  TempDir mnt;
  if (!mnt.error.empty()) return "SKIP " + mnt.error;
  int p[2];
  if (pipe(p) != 0) return std::string("SKIP pipe: ") + std::strerror(errno);
  pid_t pid = fork();
  if (pid < 0) return std::string("SKIP fork: ") + std::strerror(errno);
  if (pid == 0) {
    close(p[0]);
    std::string r;
    const unsigned uid = getuid(), gid = getgid();
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) {
      r = std::string("SKIP unshare(CLONE_NEWUSER|CLONE_NEWNS): ") + std::strerror(errno);
    } else if (!WriteFile("/proc/self/uid_map", "0 " + std::to_string(uid) + " 1") ||
               !WriteFile("/proc/self/setgroups", "deny") ||
               !WriteFile("/proc/self/gid_map", "0 " + std::to_string(gid) + " 1")) {
      r = std::string("SKIP mapping the user namespace's ids: ") + std::strerror(errno);
    } else {
      mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr);
      if (mount("none", mnt.path.c_str(), fstype, 0, data) != 0)
        r = std::string("SKIP mount -t ") + fstype + ": " + std::strerror(errno);
      else
        r = fn(mnt.path);
    }
    if (::write(p[1], r.data(), r.size()) < 0) _exit(2);
    _exit(0);
  }
  close(p[1]);
  std::string out;
  char buf[512];
  for (ssize_t n; (n = ::read(p[0], buf, sizeof buf)) > 0;) out.append(buf, n);
  close(p[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return "child failed: " + out;
  return out;
}

// ---- CRC32C -----------------------------------------------------------------------------------

TEST(Crc32c, KnownVectors) {
  const char* s = "123456789";
  EXPECT_EQ(Crc32c(s, 9), 0xE3069283u);
  EXPECT_EQ(Crc32cPortable(s, 9), 0xE3069283u);
  // RFC 3720 (iSCSI) B.4.
  unsigned char zeros[32] = {}, ones[32], up[32], down[32];
  for (int i = 0; i < 32; ++i) {
    ones[i] = 0xFF;
    up[i] = static_cast<unsigned char>(i);
    down[i] = static_cast<unsigned char>(31 - i);
  }
  for (auto f : {&Crc32c, &Crc32cPortable}) {
    EXPECT_EQ(f(zeros, 32, 0), 0x8A9136AAu);
    EXPECT_EQ(f(ones, 32, 0), 0x62A8AB43u);
    EXPECT_EQ(f(up, 32, 0), 0x46DD794Eu);
    EXPECT_EQ(f(down, 32, 0), 0x113FDB5Cu);
    EXPECT_EQ(f(s, 0, 0), 0u);
  }
  std::printf("CRC32C uses %s\n", Crc32cUsesSse42() ? "SSE4.2" : "the table");
}

TEST(Crc32c, ChainsAndMatchesTableOnRandomData) {
  std::mt19937_64 rng(7);
  std::vector<unsigned char> data(1 << 16);
  for (auto& c : data) c = static_cast<unsigned char>(rng());
  for (int i = 0; i < 200; ++i) {
    std::size_t off = rng() % 64, len = rng() % (data.size() - 64), cut = len ? rng() % len : 0;
    std::uint32_t whole = Crc32c(data.data() + off, len);
    EXPECT_EQ(whole, Crc32cPortable(data.data() + off, len));
    EXPECT_EQ(whole, Crc32c(data.data() + off + cut, len - cut, Crc32c(data.data() + off, cut)));
  }
}

// ---- Open -------------------------------------------------------------------------------------

TEST(NvmeOpen, MissingDirectory) {
  NvmeOptions o;
  o.dir = "/nonexistent/spillway-nvme-dir";
  std::string error;
  EXPECT_EQ(NvmeStore::Open(o, &error), nullptr);
  EXPECT_NE(error.find("/nonexistent/spillway-nvme-dir"), std::string::npos) << error;
  EXPECT_NE(error.find("No such file or directory"), std::string::npos) << error;
}

TEST(NvmeOpen, NotADirectory) {
  TempDir d;
  ASSERT_TRUE(d.error.empty()) << d.error;
  std::string file = d.path + "/plain-file";
  int fd = open(file.c_str(), O_CREAT | O_WRONLY, 0600);
  ASSERT_GE(fd, 0);
  close(fd);
  NvmeOptions o;
  o.dir = file;
  std::string error;
  EXPECT_EQ(NvmeStore::Open(o, &error), nullptr);
  EXPECT_NE(error.find(file), std::string::npos) << error;
  EXPECT_NE(error.find("not a directory"), std::string::npos) << error;
}

TEST(NvmeOpen, BadOptions) {
  TempDir d;
  ASSERT_TRUE(d.error.empty()) << d.error;
  std::string error;
  NvmeOptions o;
  EXPECT_EQ(NvmeStore::Open(o, &error), nullptr);
  EXPECT_NE(error.find("SPILLWAY_NVME_PATH is empty"), std::string::npos) << error;
  o.dir = d.path;
  o.queue_depth = 0;
  EXPECT_EQ(NvmeStore::Open(o, &error), nullptr);
  EXPECT_NE(error.find("queue depth 0"), std::string::npos) << error;
  o.queue_depth = 8;
  o.request_bytes = 1000;
  EXPECT_EQ(NvmeStore::Open(o, &error), nullptr);
  EXPECT_NE(error.find("request size 1000"), std::string::npos) << error;
  o.request_bytes = 1 << 20;
  o.limit = 1 << 20;
  EXPECT_EQ(NvmeStore::Open(o, &error), nullptr);
  EXPECT_NE(error.find("SPILLWAY_NVME_LIMIT"), std::string::npos) << error;
}

// A filesystem without O_DIRECT: ramfs mounted in a user namespace (tmpfs has O_DIRECT since
// Linux 6.6, so /dev/shm is only the fallback on older kernels).
TEST(NvmeOpen, NoDirectIo) {
  auto try_open = [](const std::string& dir) {
    NvmeOptions o;
    o.dir = dir;
    std::string error;
    auto s = NvmeStore::Open(o, &error);
    return s ? std::string("opened: ") + s->info() : error;
  };
  std::string r = InPrivateMount("ramfs", nullptr, try_open);
  std::string where = "ramfs";
  if (r.rfind("SKIP", 0) == 0) {
    std::string shm = try_open("/dev/shm");
    if (shm.rfind("opened", 0) == 0)
      GTEST_SKIP() << "no filesystem without O_DIRECT to try: " << r.substr(5)
                   << "; /dev/shm (tmpfs) supports O_DIRECT on this kernel";
    r = shm;
    where = "/dev/shm";
  }
  EXPECT_NE(r.find("does not support O_DIRECT"), std::string::npos) << where << ": " << r;
  EXPECT_NE(r.find("SPILLWAY_NVME_PATH '"), std::string::npos) << r;
  std::printf("%s: %s\n", where.c_str(), r.c_str());
}

// ---- the store --------------------------------------------------------------------------------

TEST_F(NvmeStoreTest, RoundTripsManySegments) {
  std::mt19937_64 rng(42);
  struct Shape {
    unsigned qd;
    std::size_t request;
    bool verify;
  };
  for (Shape sh : {Shape{1, 64 * kKiB, false}, Shape{4, 1 * kMiB, true}, Shape{32, 1 * kMiB, false},
                   Shape{32, 256 * kKiB, true}}) {
    NvmeOptions o = options();
    o.queue_depth = sh.qd;
    o.request_bytes = sh.request;
    o.verify = sh.verify;
    auto store = open(o);
    ASSERT_NE(store, nullptr);
    for (int round = 0; round < 6; ++round) {
      auto sizes = RandomSizes(rng, 1 + static_cast<int>(rng() % 12), 700);
      if (round == 0) sizes = {2 * kMiB, 2 * kMiB, 2 * kMiB};  // what the pager writes
      if (round == 1) sizes = {4096};
      RoundTrip(*store, sizes, rng(), 1 + rng() % 600);
      if (HasFatalFailure()) return;
    }
    EXPECT_EQ(store->used_bytes(), 0u);
  }
}

TEST_F(NvmeStoreTest, SpaceIsReusedAndTheFileStaysBounded) {
  auto store = open(options());
  ASSERT_NE(store, nullptr);
  std::mt19937_64 rng(3);
  struct Live {
    NvmeStore::Slot slot;
    std::unique_ptr<Segmented> data;
  };
  std::vector<Live> live;
  std::uint64_t peak = 0;
  std::string error;
  for (int round = 0; round < 8; ++round) {
    for (int i = 0; i < 12; ++i) {
      auto seg = std::make_unique<Segmented>(RandomSizes(rng, 1 + rng() % 3, 512));
      seg->fill(rng());
      NvmeStore::Slot slot = 0;
      ASSERT_EQ(store->write(seg->segs.data(), seg->segs.size(), &slot, &error), SPILLWAY_OK)
          << error;
      live.push_back({slot, std::move(seg)});
      peak = std::max(peak, store->used_bytes());
    }
    std::shuffle(live.begin(), live.end(), rng);
    for (std::size_t k = live.size() / 2; k > 0; --k) {
      ASSERT_TRUE(store->release(live.back().slot));
      EXPECT_FALSE(store->release(live.back().slot)) << "released twice";
      live.pop_back();
    }
  }
  // The file grows only when free space is short: never beyond the most ever in use.
  EXPECT_LE(store->file_bytes(), peak);
  EXPECT_GT(store->file_bytes(), 0u);
  std::uint64_t units = 0;
  for (auto& l : live) units += (l.data->total + kNvmeUnit - 1) / kNvmeUnit;
  EXPECT_EQ(store->used_bytes(), units * kNvmeUnit);
  for (auto& l : live) {
    Segmented out(Recut(l.data->total, 100));
    ASSERT_EQ(store->read(l.slot, out.segs.data(), out.segs.size(), &error), SPILLWAY_OK) << error;
    ASSERT_TRUE(out.flat() == l.data->flat()) << "slot " << l.slot;
    EXPECT_TRUE(store->release(l.slot));
  }
  EXPECT_EQ(store->used_bytes(), 0u);
  EXPECT_FALSE(store->release(987654));
}

TEST_F(NvmeStoreTest, LimitReachedKeepsWhatIsStored) {
  NvmeOptions o = options();
  o.limit = 8 * kMiB;
  auto store = open(o);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->limit(), 8 * kMiB);
  Segmented a({6 * kMiB}), b({4 * kMiB}), c({2 * kMiB});
  a.fill(1);
  b.fill(2);
  c.fill(3);
  NvmeStore::Slot sa = 0, sb = 0, sc = 0;
  std::string error;
  ASSERT_EQ(store->write(a.segs.data(), 1, &sa, &error), SPILLWAY_OK) << error;
  EXPECT_EQ(store->write(b.segs.data(), 1, &sb, &error), SPILLWAY_ERR_OUT_OF_MEMORY);
  EXPECT_NE(error.find("SPILLWAY_NVME_LIMIT of 8 MiB reached"), std::string::npos) << error;
  EXPECT_EQ(store->used_bytes(), 6 * kMiB);
  ASSERT_EQ(store->write(c.segs.data(), 1, &sc, &error), SPILLWAY_OK) << error;  // fills it
  Segmented out({6 * kMiB});
  ASSERT_EQ(store->read(sa, out.segs.data(), 1, &error), SPILLWAY_OK) << error;
  EXPECT_TRUE(out.flat() == a.flat());
  EXPECT_TRUE(store->release(sa));
  ASSERT_EQ(store->write(b.segs.data(), 1, &sb, &error), SPILLWAY_OK) << error;
  EXPECT_EQ(store->used_bytes(), 6 * kMiB);
  EXPECT_LE(store->file_bytes(), 8 * kMiB);
}

TEST_F(NvmeStoreTest, InjectedWriteErrors) {
  auto store = open(options());
  ASSERT_NE(store, nullptr);
  Segmented keep({2 * kMiB}), data({4 * kMiB, 4 * kMiB});
  keep.fill(9);
  data.fill(10);
  NvmeStore::Slot sk = 0, slot = 0;
  std::string error;
  ASSERT_EQ(store->write(keep.segs.data(), 1, &sk, &error), SPILLWAY_OK) << error;
  for (int err : {EIO, ENOSPC}) {
    std::uint64_t used = store->used_bytes();
    store->inject_write_errors(1, err);
    EXPECT_EQ(store->write(data.segs.data(), 2, &slot, &error), SPILLWAY_ERR_IO);
    if (err == ENOSPC) {
      EXPECT_EQ(error.rfind("disk full: write of", 0), 0u) << error;
      EXPECT_NE(error.find(std::strerror(ENOSPC)), std::string::npos) << error;
    } else {
      EXPECT_EQ(error.rfind("I/O error: write of", 0), 0u) << error;
      EXPECT_NE(error.find(std::strerror(EIO)), std::string::npos) << error;
    }
    EXPECT_NE(error.find("(injected for test)"), std::string::npos) << error;
    EXPECT_EQ(store->used_bytes(), used);
  }
  // Still works: the failed writes left nothing, and their space is used again.
  std::uint64_t file = store->file_bytes();
  ASSERT_EQ(store->write(data.segs.data(), 2, &slot, &error), SPILLWAY_OK) << error;
  EXPECT_EQ(store->file_bytes(), file);
  Segmented out({8 * kMiB}), out_keep({2 * kMiB});
  ASSERT_EQ(store->read(slot, out.segs.data(), 1, &error), SPILLWAY_OK) << error;
  EXPECT_TRUE(out.flat() == data.flat());
  ASSERT_EQ(store->read(sk, out_keep.segs.data(), 1, &error), SPILLWAY_OK) << error;
  EXPECT_TRUE(out_keep.flat() == keep.flat());
}

TEST_F(NvmeStoreTest, InjectedReadError) {
  auto store = open(options());
  ASSERT_NE(store, nullptr);
  Segmented in({3 * kMiB});
  in.fill(11);
  NvmeStore::Slot slot = 0;
  std::string error;
  ASSERT_EQ(store->write(in.segs.data(), 1, &slot, &error), SPILLWAY_OK) << error;
  Segmented out({3 * kMiB});
  store->inject_read_errors(2, EIO);
  EXPECT_EQ(store->read(slot, out.segs.data(), 1, &error), SPILLWAY_ERR_IO);
  EXPECT_EQ(error.rfind("I/O error: read of", 0), 0u) << error;
  EXPECT_NE(error.find(std::strerror(EIO)), std::string::npos) << error;
  // The slot is intact and readable once the errors are spent (the call above took both).
  ASSERT_EQ(store->read(slot, out.segs.data(), 1, &error), SPILLWAY_OK) << error;
  EXPECT_TRUE(out.flat() == in.flat());
  EXPECT_EQ(store->used_bytes(), 4 * kMiB);
}

TEST_F(NvmeStoreTest, VerifyCatchesACorruptedByte) {
  NvmeOptions o = options();
  o.verify = true;
  auto store = open(o);
  ASSERT_NE(store, nullptr);
  EXPECT_NE(store->info().find("verify on"), std::string::npos) << store->info();
  Segmented in({2 * kMiB, 1 * kMiB, 2 * kMiB});
  in.fill(12);
  NvmeStore::Slot slot = 0;
  std::string error;
  ASSERT_EQ(store->write(in.segs.data(), 3, &slot, &error), SPILLWAY_OK) << error;
  Segmented out(Recut(in.total, 77));
  ASSERT_EQ(store->read(slot, out.segs.data(), out.segs.size(), &error), SPILLWAY_OK) << error;
  const std::uint64_t bad = 3 * kMiB + 12345;
  ASSERT_TRUE(store->corrupt_for_test(slot, bad));
  EXPECT_FALSE(store->corrupt_for_test(slot, in.total));
  EXPECT_EQ(store->read(slot, out.segs.data(), out.segs.size(), &error), SPILLWAY_ERR_IO);
  std::string want = "checksum mismatch in slot " + std::to_string(slot) + " at byte offset " +
                     std::to_string(bad / kNvmeCrcChunk * kNvmeCrcChunk);
  EXPECT_EQ(error.rfind(want, 0), 0u) << error;
}

TEST_F(NvmeStoreTest, WithoutVerifyACorruptedByteReadsBack) {
  auto store = open(options());
  ASSERT_NE(store, nullptr);
  Segmented in({4 * kMiB});
  in.fill(13);
  NvmeStore::Slot slot = 0;
  std::string error;
  ASSERT_EQ(store->write(in.segs.data(), 1, &slot, &error), SPILLWAY_OK) << error;
  ASSERT_TRUE(store->corrupt_for_test(slot, 2 * kMiB + 1));
  Segmented out({4 * kMiB});
  ASSERT_EQ(store->read(slot, out.segs.data(), 1, &error), SPILLWAY_OK) << error;
  auto a = in.flat(), b = out.flat();
  for (std::size_t i = 0; i < a.size(); ++i)
    ASSERT_EQ(b[i], i == 2 * kMiB + 1 ? a[i] ^ 0xFF : a[i]) << "byte " << i;
}

TEST_F(NvmeStoreTest, RejectsBadSegmentsAndSlots) {
  auto store = open(options());
  ASSERT_NE(store, nullptr);
  Buf b(2 * kMiB);
  Fill(b, 14);
  NvmeStore::Slot slot = 0;
  std::string error;
  NvmeSegment misaligned{b.bytes() + 512, kMiB};
  EXPECT_EQ(store->write(&misaligned, 1, &slot, &error), SPILLWAY_ERR_INVALID_VALUE);
  EXPECT_NE(error.find("segment 0"), std::string::npos) << error;
  EXPECT_NE(error.find("aligned to 4096"), std::string::npos) << error;
  NvmeSegment odd[2] = {{b.p, kMiB}, {b.bytes() + kMiB, 1000}};
  EXPECT_EQ(store->write(odd, 2, &slot, &error), SPILLWAY_ERR_INVALID_VALUE);
  EXPECT_NE(error.find("segment 1"), std::string::npos) << error;
  EXPECT_EQ(store->write(odd, 0, &slot, &error), SPILLWAY_ERR_INVALID_VALUE);
  EXPECT_EQ(store->write(odd, 1, nullptr, &error), SPILLWAY_ERR_INVALID_VALUE);
  EXPECT_EQ(store->used_bytes(), 0u);

  ASSERT_EQ(store->write(odd, 1, &slot, &error), SPILLWAY_OK) << error;
  NvmeSegment whole{b.p, 2 * kMiB};
  EXPECT_EQ(store->read(slot, &whole, 1, &error), SPILLWAY_ERR_INVALID_VALUE);
  EXPECT_NE(error.find("holds 1048576 bytes, the segments 2097152"), std::string::npos) << error;
  EXPECT_EQ(store->read(slot + 100, odd, 1, &error), SPILLWAY_ERR_INVALID_VALUE);
  EXPECT_NE(error.find("unknown slot"), std::string::npos) << error;
  EXPECT_EQ(store->read(slot, &misaligned, 1, &error), SPILLWAY_ERR_INVALID_VALUE);
  EXPECT_TRUE(store->release(slot));
  EXPECT_EQ(store->read(slot, odd, 1, &error), SPILLWAY_ERR_INVALID_VALUE);
}

TEST_F(NvmeStoreTest, BackingFileIsInvisibleAndGoneAfterTheStore) {
  {
    auto store = open(options());
    ASSERT_NE(store, nullptr);
    std::printf("%s\n", store->info().c_str());
    Segmented in({2 * kMiB, 2 * kMiB});
    in.fill(15);
    NvmeStore::Slot slot = 0;
    std::string error;
    ASSERT_EQ(store->write(in.segs.data(), 2, &slot, &error), SPILLWAY_OK) << error;
    EXPECT_EQ(CountEntries(dir_.path), 0) << "the backing file shows in " << dir_.path;
    auto open_files = OpenFilesIn(dir_.path);
    ASSERT_EQ(open_files.size(), 1u) << "expected the store's one descriptor into " << dir_.path;
    EXPECT_EQ(open_files[0], 0u) << "the backing file has a name (link count not 0)";
    EXPECT_TRUE(store->info().find("O_TMPFILE") != std::string::npos ||
                store->info().find("unlinked") != std::string::npos)
        << store->info();
    EXPECT_EQ(store->file_bytes(), 4 * kMiB);
  }
  // No descriptor and no name left: the kernel has freed the file's blocks.
  EXPECT_TRUE(OpenFilesIn(dir_.path).empty());
  EXPECT_EQ(CountEntries(dir_.path), 0);
}

TEST_F(NvmeStoreTest, ThreadsWriteReadAndReleaseTogether) {
  NvmeOptions o = options();
  o.verify = true;
  o.queue_depth = 8;
  o.request_bytes = 256 * kKiB;
  auto store = open(o);
  ASSERT_NE(store, nullptr);
  std::vector<std::thread> threads;
  std::vector<std::string> failures(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(100 + t);
      std::string error;
      for (int i = 0; i < 12 && failures[t].empty(); ++i) {
        Segmented in(RandomSizes(rng, 1 + rng() % 4, 300));
        in.fill(rng());
        NvmeStore::Slot slot = 0;
        if (store->write(in.segs.data(), in.segs.size(), &slot, &error) != SPILLWAY_OK) {
          failures[t] = "write: " + error;
          break;
        }
        Segmented out(Recut(in.total, 64));
        if (store->read(slot, out.segs.data(), out.segs.size(), &error) != SPILLWAY_OK)
          failures[t] = "read: " + error;
        else if (out.flat() != in.flat())
          failures[t] = "bytes differ in slot " + std::to_string(slot);
        if (!store->release(slot)) failures[t] = "release failed";
      }
    });
  }
  for (auto& th : threads) th.join();
  for (auto& f : failures) EXPECT_TRUE(f.empty()) << f;
  EXPECT_EQ(store->used_bytes(), 0u);
}

TEST_F(NvmeStoreTest, ReleaseWhileAnotherThreadReads) {
  auto store = open(options());
  ASSERT_NE(store, nullptr);
  Segmented in({32 * kMiB});
  in.fill(16);
  NvmeStore::Slot slot = 0;
  std::string error;
  ASSERT_EQ(store->write(in.segs.data(), 1, &slot, &error), SPILLWAY_OK) << error;
  Segmented out({32 * kMiB});
  spillway_status st = SPILLWAY_OK;
  std::string read_error;
  std::thread reader([&] { st = store->read(slot, out.segs.data(), 1, &read_error); });
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  EXPECT_TRUE(store->release(slot));
  reader.join();
  // Either the read began first (and completed with the data) or it found the slot gone.
  std::printf("the read %s\n", st == SPILLWAY_OK ? "began first: its space was freed when it ended"
                                                 : "came after the release");
  if (st == SPILLWAY_OK)
    EXPECT_TRUE(out.flat() == in.flat());
  else
    EXPECT_NE(read_error.find("unknown slot"), std::string::npos) << read_error;
  EXPECT_EQ(store->used_bytes(), 0u);
}

TEST_F(NvmeStoreTest, AForkedChildCannotUseTheStore) {
  auto store = open(options());
  ASSERT_NE(store, nullptr);
  Segmented in({2 * kMiB});
  in.fill(19);
  NvmeStore::Slot slot = 0;
  std::string error;
  pid_t pid = fork();
  ASSERT_GE(pid, 0) << std::strerror(errno);
  if (pid == 0) {
    spillway_status st = store->write(in.segs.data(), 1, &slot, &error);
    _exit(st == SPILLWAY_ERR_IO && error.find("forked child") != std::string::npos ? 0 : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the child's write did not fail";
  ASSERT_EQ(store->write(in.segs.data(), 1, &slot, &error), SPILLWAY_OK) << error;
  EXPECT_TRUE(store->release(slot));
}

// A real full disk: tmpfs of 8 MiB mounted in a user namespace (tmpfs has O_DIRECT since 6.6).
TEST(NvmeDiskFull, FallocateEnospcIsReportedAndNothingIsKept) {
  std::string r = InPrivateMount("tmpfs", "size=8m", [](const std::string& dir) {
    NvmeOptions o;
    o.dir = dir;
    std::string error;
    auto store = NvmeStore::Open(o, &error);
    if (store == nullptr) return "SKIP " + error;
    Segmented big({16 * kMiB}), small({4 * kMiB});
    big.fill(17);
    small.fill(18);
    NvmeStore::Slot slot = 0;
    spillway_status st = store->write(big.segs.data(), 1, &slot, &error);
    std::string out = "status=" + std::to_string(st) +
                      " used=" + std::to_string(store->used_bytes()) + " msg=" + error;
    st = store->write(small.segs.data(), 1, &slot, &error);
    out += " | second=" + std::to_string(st);
    Segmented back({4 * kMiB});
    if (st == SPILLWAY_OK && store->read(slot, back.segs.data(), 1, &error) == SPILLWAY_OK)
      out += back.flat() == small.flat() ? " readback=ok" : " readback=differs";
    return out;
  });
  if (r.rfind("SKIP", 0) == 0) GTEST_SKIP() << r.substr(5);
  EXPECT_NE(r.find("status=8 used=0 msg=disk full: growing"), std::string::npos) << r;
  EXPECT_NE(r.find(std::strerror(ENOSPC)), std::string::npos) << r;
  EXPECT_NE(r.find("second=0 readback=ok"), std::string::npos) << r;
  std::printf("%s\n", r.c_str());
}

TEST_F(NvmeStoreTest, RawThroughputRuns) {
  double w = 0, r = 0;
  std::string error;
  ASSERT_TRUE(RawIoThroughput(dir_.path, 16 * kMiB, 4, 1 * kMiB, &w, &r, &error)) << error;
  EXPECT_GT(w, 0);
  EXPECT_GT(r, 0);
  EXPECT_EQ(CountEntries(dir_.path), 0);
  EXPECT_FALSE(RawIoThroughput("/nonexistent/x", 16 * kMiB, 4, kMiB, &w, &r, &error));
  EXPECT_NE(error.find("/nonexistent/x"), std::string::npos) << error;
  std::printf("raw: write %.2f GB/s, read %.2f GB/s (16 MiB, qd 4)\n", w, r);
}

}  // namespace
}  // namespace spillway::offload
