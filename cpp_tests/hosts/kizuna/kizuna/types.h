// Stand-in of Kizuna's basic id types (namespace kizuna), written from the interface facts in
// design/HOSTS.md (Kizuna section). Only the interface is reproduced; none of Kizuna's code is.
#pragma once

#include <cstdint>

namespace kizuna {

/// A page number; 0 is invalid.
using page_id_t = uint32_t;
inline constexpr page_id_t kInvalidPageId = 0;

/// A row's address: page << 32 | slot. Never 0.
using record_id_t = uint64_t;

inline constexpr record_id_t make_record_id(page_id_t page, uint32_t slot) noexcept {
  return (static_cast<record_id_t>(page) << 32) | slot;
}

}  // namespace kizuna
