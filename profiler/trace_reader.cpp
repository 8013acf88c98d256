// trace_reader.cpp — reading SPILLWAY_TRACE files (see trace_reader.h).
#include "profiler/trace_reader.h"

#include <cerrno>
#include <cstring>
#include <fstream>

namespace spillway::trace {

namespace {
bool Fail(std::string* error, const std::string& path, const std::string& what) {
  *error = "'" + path + "' " + what;
  return false;
}
}  // namespace

bool ReadTrace(const std::string& path, Trace* out, std::string* error,
               const std::function<void(double)>& progress) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) {
    *error = "cannot open '" + path + "': " + std::strerror(errno);
    return false;
  }
  const auto file_size = static_cast<std::uint64_t>(in.tellg());
  in.seekg(0);
  out->path = path;
  Header& h = out->header;
  if (!in.read(reinterpret_cast<char*>(&h), sizeof h))
    return Fail(error, path, "is shorter than a trace header");
  if (std::memcmp(h.magic, kMagic, sizeof h.magic) != 0)
    return Fail(error, path, "is not a Spillway trace (bad magic)");
  const bool v1 = h.version == 1 && h.record_size == sizeof(RecordV1);
  const bool v2 = h.version == 2 && h.record_size == sizeof(Record);
  if ((!v1 && !v2) || h.header_size != sizeof(Header))
    return Fail(error, path,
                "has trace version " + std::to_string(h.version) + " (record size " +
                    std::to_string(h.record_size) + "); this spillway reads versions 1 and 2");
  if (v1) {
    h.rank = -1;
    h.granularity = 0;
  }
  const std::uint64_t body = file_size - sizeof h;
  if (body % h.record_size != 0)
    return Fail(error, path, "ends in a partial record (truncated file)");
  const std::uint64_t n = body / h.record_size;
  out->records.resize(n);
  constexpr std::uint64_t kBatch = 1 << 16;
  std::vector<RecordV1> old;
  for (std::uint64_t i = 0; i < n; i += kBatch) {
    const std::uint64_t k = std::min(kBatch, n - i);
    if (v2) {
      if (!in.read(reinterpret_cast<char*>(&out->records[i]),
                   static_cast<std::streamsize>(k * sizeof(Record))))
        return Fail(error, path, "could not be read to the end");
    } else {
      old.resize(k);
      if (!in.read(reinterpret_cast<char*>(old.data()),
                   static_cast<std::streamsize>(k * sizeof(RecordV1))))
        return Fail(error, path, "could not be read to the end");
      for (std::uint64_t j = 0; j < k; ++j) {
        Record& r = out->records[i + j];
        const RecordV1& o = old[j];
        r = Record{o.t_ns, o.addr, o.size, o.stream, o.seq, 0, o.device, o.kind, o.status, 0, 0};
      }
    }
    if (progress) progress(static_cast<double>(i + k) / static_cast<double>(n));
  }
  // Labels: chunks of 24 bytes, in order, `aux` bytes in all.
  for (const Record& r : out->records) {
    if (r.kind != static_cast<std::uint16_t>(Kind::kString)) continue;
    std::string& label = out->labels[r.addr];
    const auto length = static_cast<std::size_t>(r.device);
    if (r.device < 0 || length > 4096 || r.aux2 * std::size_t{24} != label.size() ||
        label.size() >= length)
      return Fail(error, path, "has a malformed label record (record " + std::to_string(r.seq) + ")");
    char text[24];
    std::memcpy(text, &r.size, 8);
    std::memcpy(text + 8, &r.stream, 8);
    std::memcpy(text + 16, &r.aux, 8);
    label.append(text, std::min<std::size_t>(24, length - label.size()));
  }
  return true;
}

}  // namespace spillway::trace
