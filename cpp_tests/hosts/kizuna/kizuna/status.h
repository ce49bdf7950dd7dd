// Stand-in of Kizuna's StatusCode (namespace kizuna): the numbers from design/HOSTS.md.
#pragma once

#include <cstdint>

namespace kizuna {

enum class StatusCode : int32_t {
  OK = 0,
  INVALID_ARGUMENT = 2,
  INTERNAL_ERROR = 5,
  IO_ERROR = 100,
  PAGE_CORRUPTED = 201,
  RECORD_TOO_LARGE = 301,
  INVALID_RECORD_FORMAT = 302,
  INDEX_NOT_FOUND = 400,
  INDEX_CORRUPTED = 401,
  KEY_NOT_FOUND = 402,
  DUPLICATE_KEY = 403,
};

/// The enumerator's name ("DUPLICATE_KEY"), or "UNKNOWN_STATUS".
inline const char* status_name(StatusCode code) noexcept {
  switch (code) {
    case StatusCode::OK:
      return "OK";
    case StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case StatusCode::INTERNAL_ERROR:
      return "INTERNAL_ERROR";
    case StatusCode::IO_ERROR:
      return "IO_ERROR";
    case StatusCode::PAGE_CORRUPTED:
      return "PAGE_CORRUPTED";
    case StatusCode::RECORD_TOO_LARGE:
      return "RECORD_TOO_LARGE";
    case StatusCode::INVALID_RECORD_FORMAT:
      return "INVALID_RECORD_FORMAT";
    case StatusCode::INDEX_NOT_FOUND:
      return "INDEX_NOT_FOUND";
    case StatusCode::INDEX_CORRUPTED:
      return "INDEX_CORRUPTED";
    case StatusCode::KEY_NOT_FOUND:
      return "KEY_NOT_FOUND";
    case StatusCode::DUPLICATE_KEY:
      return "DUPLICATE_KEY";
  }
  return "UNKNOWN_STATUS";
}

}  // namespace kizuna
