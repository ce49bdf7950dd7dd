// Shared by the kizuna_tests suites: the host policy Kizuna would write in the one place it
// builds its index tree (its types and its thrower, over the stand-ins in hosts/kizuna/), key
// makers in Kizuna's encoded shapes, and status assertions.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <kizuna/exception.h>
#include <kizuna/record.h>
#include <kizuna/status.h>
#include <kizuna/types.h>

#include <pcore.hpp>
#include <pcore/kizuna_index.hpp>

namespace kizuna_test {

/// What Kizuna supplies to the adapter: its types and its thrower.
struct PcoreHost {
  using page_id_t = kizuna::page_id_t;
  using record_id_t = kizuna::record_id_t;
  using StatusCode = kizuna::StatusCode;
  [[noreturn]] static void raise(StatusCode code, const std::string& message) {
    throw kizuna::DBException(code, message);
  }
};

/// Kizuna's index type after the swap.
using BPlusTree = pcore::kizuna::BPlusTree<PcoreHost>;
using Key = std::vector<uint8_t>;

// ---- keys in Kizuna's shapes ----------------------------------------------------------------

enum class Shape { Integer, BenchKey, Varchar32 };

inline const char* shape_name(Shape shape) {
  switch (shape) {
    case Shape::Integer:
      return "Integer12B";
    case Shape::BenchKey:
      return "BenchKey17B";
    case Shape::Varchar32:
      return "Varchar32Full40B";
  }
  return "?";
}

/// Encoded key size of a shape.
inline size_t shape_bytes(Shape shape) {
  switch (shape) {
    case Shape::Integer:
      return 12;
    case Shape::BenchKey:
      return 17;
    case Shape::Varchar32:
      return 40;
  }
  return 0;
}

/// INTEGER column i: 12 bytes.
inline Key int_key(int32_t i) { return kizuna::record::encode(kizuna::Value::Integer(i)); }

/// The benchmark's VARCHAR 'key%06d': 17 bytes.
inline Key bench_key(uint32_t i) {
  char text[32];
  std::snprintf(text, sizeof(text), "key%06u", i % 1000000u);
  return kizuna::record::encode(kizuna::Value::Varchar(text));
}

/// A full VARCHAR(32): 32 characters, ordered by i (a 10-digit prefix), the rest varying
/// with i: 40 bytes.
inline std::string varchar32_text(uint32_t i) {
  char text[40];
  std::snprintf(text, sizeof(text), "u%010u_", i);
  std::string s(text);
  uint32_t h = i * 2654435761u + 12345u;
  while (s.size() < 32) {
    s.push_back(static_cast<char>('a' + (h % 26)));
    h = h * 1103515245u + 12345u;
  }
  return s;
}
inline Key varchar32_key(uint32_t i) { return kizuna::record::encode(kizuna::Value::Varchar(varchar32_text(i))); }

/// Key number i in the given shape; keys of one shape sort by i.
inline Key make_key(Shape shape, uint32_t i) {
  switch (shape) {
    case Shape::Integer:
      return int_key(static_cast<int32_t>(i));
    case Shape::BenchKey:
      return bench_key(i);
    case Shape::Varchar32:
      return varchar32_key(i);
  }
  return {};
}

/// A record id for row i (page << 32 | slot, never 0).
inline kizuna::record_id_t rid(uint64_t i) {
  return kizuna::make_record_id(static_cast<kizuna::page_id_t>(i / 64 + 1), static_cast<uint32_t>(i % 64));
}

/// Keys' count that fit a 4 KiB leaf if full: pcore's leaf entry is slot (2) + key length
/// varint (1) + key + value header (1) + 8-byte record id, over 4080 bytes.
inline size_t leaf_capacity_4k(size_t key_bytes) { return (4096 - 16) / (2 + 1 + key_bytes + 1 + 8); }

}  // namespace kizuna_test

/// Expects stmt to throw kizuna::DBException with the given StatusCode enumerator.
#define EXPECT_KIZUNA_STATUS(expected_code, stmt)                                                 \
  do {                                                                                            \
    try {                                                                                         \
      stmt;                                                                                       \
      ADD_FAILURE() << #stmt << " did not throw; expected " #expected_code;                       \
    } catch (const ::kizuna::DBException& kizuna_error_) {                                        \
      EXPECT_EQ(kizuna_error_.code(), ::kizuna::StatusCode::expected_code)                        \
          << #stmt << " threw " << kizuna_error_.what() << "; expected " #expected_code;          \
    }                                                                                             \
  } while (0)
