// XTree-shaped test data: 2-D buckets in XTree's wire size (7-byte header, then 32 bytes per
// child: 4 MBR floats, an 8-byte NodeID, 4 bytes of flags, 4 bytes of padding), with content
// that depends only on (bucket seed, child count), so nothing needs to be kept to verify it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "test_support.hpp"

namespace pcore_test {

inline constexpr size_t kBucketHeaderBytes = 7;
inline constexpr size_t kBucketChildBytes = 8 * 2 + 16;  // 8·dims + 16 in 2-D
inline constexpr size_t kXTreeM = 50;
inline constexpr size_t kMaxFanout = 3 * kXTreeM;  // supernode limit: 150 children

inline constexpr size_t bucket_wire_bytes(size_t children) {
  return kBucketHeaderBytes + kBucketChildBytes * children;
}

class Bucket {
 public:
  explicit Bucket(uint64_t seed, size_t children = 0) : seed_(seed) {
    wire_.resize(kBucketHeaderBytes);
    for (size_t i = 0; i < children; ++i) {
      add_child();
    }
    write_header();
  }

  /// Appends child number children() (deterministic bytes) and updates the header.
  void add_child() {
    uint8_t child[kBucketChildBytes];
    child_bytes(seed_, children_, child);
    wire_.insert(wire_.end(), child, child + kBucketChildBytes);
    ++children_;
    write_header();
  }

  size_t children() const { return children_; }
  uint64_t seed() const { return seed_; }
  const uint8_t* data() const { return wire_.data(); }
  size_t size() const { return wire_.size(); }
  const std::vector<uint8_t>& wire() const { return wire_; }

  /// The wire image of a bucket with this seed and child count.
  static std::vector<uint8_t> expected(uint64_t seed, size_t children) {
    return Bucket(seed, children).wire_;
  }

  /// Offset of the first byte that differs from the expected image, or size when equal.
  static size_t mismatch(const void* bytes, size_t size, uint64_t seed, size_t children) {
    const std::vector<uint8_t> want = expected(seed, children);
    if (bytes == nullptr || size != want.size()) {
      return 0;
    }
    const auto* got = static_cast<const uint8_t*>(bytes);
    for (size_t i = 0; i < size; ++i) {
      if (got[i] != want[i]) {
        return i;
      }
    }
    return size;
  }

 private:
  static void child_bytes(uint64_t seed, size_t index, uint8_t* out) {
    uint64_t state = seed * 0x100000001B3ull + index;
    float mbr[4];
    for (float& f : mbr) {
      f = static_cast<float>(splitmix64(state) % 1000000) / 1000.0f;
    }
    std::memcpy(out, mbr, sizeof(mbr));
    const uint64_t child_id = (splitmix64(state) & 0xFFFFFFFFFFull) << 16 | 1u;
    std::memcpy(out + 16, &child_id, 8);
    const uint32_t flags = static_cast<uint32_t>(index) ^ 0x5A5A0000u;
    std::memcpy(out + 24, &flags, 4);
    std::memset(out + 28, 0, 4);
  }

  void write_header() {
    wire_[0] = 2;  // leaf
    wire_[1] = 0;  // level
    wire_[2] = static_cast<uint8_t>(seed_);
    const uint16_t count = static_cast<uint16_t>(children_);
    std::memcpy(&wire_[3], &count, 2);
    wire_[5] = static_cast<uint8_t>(seed_ >> 8);
    wire_[6] = 0xB7;
  }

  uint64_t seed_;
  size_t children_ = 0;
  std::vector<uint8_t> wire_;
};

}  // namespace pcore_test
