// json_util.h — small helpers of the JSON writers (report.json, the Chrome trace): strings
// escaped (control characters, quotes, invalid UTF-8 replaced by U+FFFD) and numbers that are
// always valid JSON (no NaN or infinity).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace spillway::report::json {

// Appends `s` as a quoted JSON string.
inline void String(std::string* out, std::string_view s) {
  out->push_back('"');
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  for (std::size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(static_cast<char>(c));
      ++i;
    } else if (c < 0x20) {
      switch (c) {
        case '\n': out->append("\\n"); break;
        case '\r': out->append("\\r"); break;
        case '\t': out->append("\\t"); break;
        case '\b': out->append("\\b"); break;
        case '\f': out->append("\\f"); break;
        default: {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out->append(buf);
        }
      }
      ++i;
    } else if (c < 0x80) {
      out->push_back(static_cast<char>(c));
      ++i;
    } else {
      // A well-formed UTF-8 sequence is copied; anything else becomes U+FFFD.
      std::size_t len = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c <= 0xdf ? 2 : 0;
      if (c >= 0xf5) len = 0;
      bool ok = len != 0 && i + len <= n;
      for (std::size_t j = 1; ok && j < len; ++j) ok = (p[i + j] & 0xc0) == 0x80;
      if (ok && len == 3) {
        const unsigned char c1 = p[i + 1];
        ok = !(c == 0xe0 && c1 < 0xa0) && !(c == 0xed && c1 >= 0xa0);  // overlong, surrogates
      }
      if (ok && len == 4) {
        const unsigned char c1 = p[i + 1];
        ok = !(c == 0xf0 && c1 < 0x90) && !(c == 0xf4 && c1 >= 0x90);
      }
      if (ok) {
        out->append(s.substr(i, len));
        i += len;
      } else {
        out->append("\\ufffd");
        ++i;
      }
    }
  }
  out->push_back('"');
}

inline void Uint(std::string* out, std::uint64_t v) { out->append(std::to_string(v)); }
inline void Int(std::string* out, std::int64_t v) { out->append(std::to_string(v)); }

// A finite double with up to `digits` significant digits (NaN and infinities are written as 0).
inline void Double(std::string* out, double v, int digits = 6) {
  if (!std::isfinite(v)) v = 0;
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.*g", digits, v);
  out->append(buf);
}

// A fixed-point double (e.g. microseconds with 3 decimals).
inline void Fixed(std::string* out, double v, int decimals) {
  if (!std::isfinite(v)) v = 0;
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  out->append(buf);
}

}  // namespace spillway::report::json
