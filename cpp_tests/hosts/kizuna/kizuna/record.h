// Stand-in of Kizuna's record::encode (namespace kizuna::record), producing index keys of the
// sizes design/HOSTS.md gives: a single column is 8 bytes of header + payload, so
//   INTEGER 12 B, BIGINT 16 B, VARCHAR 'key%06d' 17 B, a full VARCHAR(32) 40 B.
//
// The header layout is this stand-in's own (the facts fix only its size):
//   u16 column count (LE), u16 payload bytes (LE), null bitmap (ceil(n/8) bytes), one type tag
//   per column, zero padding to a multiple of 4 bytes (8 bytes for one column).
// Payload, per non-null column: INTEGER 4 bytes, BIGINT 8 bytes, both big-endian with the sign
// bit flipped, so that bytewise order is numeric order (what an index range scan needs);
// VARCHAR its bytes, preceded by a u16 length (LE) unless it is the last column.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace kizuna {

enum class DataType : uint8_t {
  INTEGER = 1,
  BIGINT = 2,
  VARCHAR = 3,
};

/// One column value.
struct Value {
  DataType type = DataType::INTEGER;
  bool is_null = false;
  int64_t integer = 0;
  std::string text;

  static Value Integer(int32_t v) { return Value{DataType::INTEGER, false, v, {}}; }
  static Value BigInt(int64_t v) { return Value{DataType::BIGINT, false, v, {}}; }
  static Value Varchar(std::string v) { return Value{DataType::VARCHAR, false, 0, std::move(v)}; }
  static Value Null(DataType type) { return Value{type, true, 0, {}}; }
};

namespace record {

inline constexpr size_t kSingleColumnHeaderBytes = 8;

namespace detail {
inline void put_be(std::vector<uint8_t>& out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) {
    out.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
}
inline void put_le16(std::vector<uint8_t>& out, size_t v) {
  out.push_back(static_cast<uint8_t>(v));
  out.push_back(static_cast<uint8_t>(v >> 8));
}
}  // namespace detail

/// The encoded record of the given column values.
inline std::vector<uint8_t> encode(const std::vector<Value>& values) {
  std::vector<uint8_t> payload;
  for (size_t i = 0; i < values.size(); ++i) {
    const Value& v = values[i];
    if (v.is_null) {
      continue;
    }
    switch (v.type) {
      case DataType::INTEGER:
        detail::put_be(payload, static_cast<uint32_t>(static_cast<int32_t>(v.integer)) ^ 0x80000000u, 4);
        break;
      case DataType::BIGINT:
        detail::put_be(payload, static_cast<uint64_t>(v.integer) ^ 0x8000000000000000ull, 8);
        break;
      case DataType::VARCHAR:
        if (i + 1 != values.size()) {
          detail::put_le16(payload, v.text.size());
        }
        payload.insert(payload.end(), v.text.begin(), v.text.end());
        break;
    }
  }
  if (values.size() > 0xFFFF || payload.size() > 0xFFFF) {
    throw std::length_error("record too large for this stand-in");
  }
  std::vector<uint8_t> out;
  detail::put_le16(out, values.size());
  detail::put_le16(out, payload.size());
  const size_t bitmap_at = out.size();
  out.resize(out.size() + (values.size() + 7) / 8, 0);
  for (size_t i = 0; i < values.size(); ++i) {
    if (values[i].is_null) {
      out[bitmap_at + i / 8] = static_cast<uint8_t>(out[bitmap_at + i / 8] | (1u << (i % 8)));
    }
    out.push_back(static_cast<uint8_t>(values[i].type));
  }
  while (out.size() % 4 != 0) {
    out.push_back(0);
  }
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

/// One column.
inline std::vector<uint8_t> encode(const Value& value) { return encode(std::vector<Value>{value}); }

}  // namespace record
}  // namespace kizuna
