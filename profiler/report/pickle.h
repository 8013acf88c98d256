// pickle.h — a minimal writer of Python pickles (protocol 2), enough for PyTorch's memory
// snapshot: dict, list, tuple, str, int (any 64-bit value), float, bool, None.
//
// Only opcodes of protocols 0..2 are written (PROTO 2, EMPTY_DICT/EMPTY_LIST, MARK, SETITEMS,
// APPENDS, TUPLE2, BININT1/BININT2/BININT, LONG1, BINFLOAT, BINUNICODE, NEWTRUE/NEWFALSE, NONE,
// STOP), so Python 2.3+ and the small JavaScript unpickler of PyTorch's memory_viz.html both read
// it. Nothing is memoized: every value is written out where it appears. Containers are written
// in batches of 1000 items, like CPython (memory_viz.html spreads a batch into a function call).
//
// Usage: a sequence of calls that mirrors the value, e.g.
//   PickleWriter w; w.BeginDict(); w.Str("a"); w.Int(1); w.EndDict(); std::string b = w.Finish();
// Inside a dict, keys and values alternate.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace spillway::report {

class PickleWriter {
 public:
  PickleWriter() { out_ += "\x80\x02"; }  // PROTO 2

  void None() { Value(); out_ += 'N'; }
  void Bool(bool v) { Value(); out_ += v ? '\x88' : '\x89'; }  // NEWTRUE / NEWFALSE

  void Int(std::int64_t v) {
    Value();
    if (v >= 0 && v < 0x100) {  // BININT1
      out_ += 'K';
      out_ += static_cast<char>(v);
    } else if (v >= 0 && v < 0x10000) {  // BININT2
      out_ += 'M';
      Le(static_cast<std::uint64_t>(v), 2);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {  // BININT, signed
      out_ += 'J';
      Le(static_cast<std::uint64_t>(static_cast<std::uint32_t>(static_cast<std::int32_t>(v))), 4);
    } else {
      Long1(static_cast<std::uint64_t>(v), v < 0);
    }
  }
  void UInt(std::uint64_t v) {
    if (v <= static_cast<std::uint64_t>(INT64_MAX)) return Int(static_cast<std::int64_t>(v));
    Value();
    Long1(v, false);
  }

  void Float(double v) {  // BINFLOAT: 8 bytes, big-endian IEEE 754
    Value();
    out_ += 'G';
    std::uint64_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    for (int i = 7; i >= 0; --i) out_ += static_cast<char>((bits >> (8 * i)) & 0xff);
  }

  void Str(std::string_view s) {  // BINUNICODE: u32 length + UTF-8 bytes
    Value();
    std::string u = ValidUtf8(s);
    out_ += 'X';
    Le(u.size(), 4);
    out_ += u;
  }

  void BeginDict() { Open('}', kDict); }
  void EndDict() { Close('u'); }  // SETITEMS
  void BeginList() { Open(']', kList); }
  void EndList() { Close('e'); }  // APPENDS

  // A tuple of two values: write the two values after BeginTuple2(), then EndTuple2().
  void BeginTuple2() {
    Value();
    stack_.push_back({kTuple, 0});
  }
  void EndTuple2() {
    stack_.pop_back();
    out_ += '\x86';  // TUPLE2
  }

  std::string Finish() {
    out_ += '.';  // STOP
    return std::move(out_);
  }

 private:
  enum Kind : std::uint8_t { kDict, kList, kTuple };
  struct Frame {
    Kind kind;
    std::size_t items;  // values written in the current batch (a dict counts keys and values)
  };
  static constexpr std::size_t kBatch = 1000;

  // Called before each value: containers are filled in MARK ... SETITEMS/APPENDS batches.
  void Value() {
    if (stack_.empty()) return;
    Frame& f = stack_.back();
    if (f.kind == kTuple) return;
    const std::size_t limit = f.kind == kDict ? 2 * kBatch : kBatch;
    if (f.items == limit) {
      out_ += f.kind == kDict ? 'u' : 'e';
      f.items = 0;
    }
    if (f.items == 0) out_ += '(';  // MARK
    ++f.items;
  }
  void Open(char op, Kind k) {
    Value();
    out_ += op;
    stack_.push_back({k, 0});
  }
  void Close(char op) {
    if (stack_.back().items != 0) out_ += op;
    stack_.pop_back();
  }
  void Le(std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out_ += static_cast<char>((v >> (8 * i)) & 0xff);
  }
  // LONG1: a length byte, then the two's complement little-endian bytes, as few as represent
  // the value with its sign (CPython's encode_long).
  void Long1(std::uint64_t bits, bool negative) {
    std::string b;
    for (int i = 0; i < 8; ++i) b += static_cast<char>((bits >> (8 * i)) & 0xff);
    // Drop redundant sign bytes.
    while (b.size() > 1) {
      const auto last = static_cast<unsigned char>(b.back());
      const auto prev = static_cast<unsigned char>(b[b.size() - 2]);
      if (!negative && last == 0 && (prev & 0x80) == 0) {
        b.pop_back();
      } else if (negative && last == 0xff && (prev & 0x80) != 0) {
        b.pop_back();
      } else {
        break;
      }
    }
    // An unsigned value with the top bit set needs a zero byte to stay positive.
    if (!negative && (static_cast<unsigned char>(b.back()) & 0x80) != 0) b += '\0';
    out_ += '\x8a';
    out_ += static_cast<char>(b.size());
    out_ += b;
  }
  // Python rejects invalid UTF-8 in BINUNICODE: replace bad bytes with U+FFFD.
  static std::string ValidUtf8(std::string_view s) {
    std::string r;
    r.reserve(s.size());
    std::size_t i = 0;
    while (i < s.size()) {
      const auto c = static_cast<unsigned char>(s[i]);
      std::size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
      bool ok = n != 0 && i + n <= s.size();
      for (std::size_t k = 1; ok && k < n; ++k) {
        ok = (static_cast<unsigned char>(s[i + k]) & 0xc0) == 0x80;
      }
      if (ok && n == 2) ok = c >= 0xc2;
      if (ok && n == 3) {
        const auto c1 = static_cast<unsigned char>(s[i + 1]);
        ok = !(c == 0xe0 && c1 < 0xa0) && !(c == 0xed && c1 >= 0xa0);  // overlong, surrogate
      }
      if (ok && n == 4) {
        const auto c1 = static_cast<unsigned char>(s[i + 1]);
        ok = c <= 0xf4 && !(c == 0xf0 && c1 < 0x90) && !(c == 0xf4 && c1 >= 0x90);
      }
      if (ok) {
        r.append(s.substr(i, n));
        i += n;
      } else {
        r += "\xef\xbf\xbd";
        ++i;
      }
    }
    return r;
  }

  std::string out_;
  std::vector<Frame> stack_;
};

}  // namespace spillway::report
