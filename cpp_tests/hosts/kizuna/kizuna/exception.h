// Stand-in of Kizuna's exception type (namespace kizuna): errors are exceptions carrying a
// StatusCode (design/HOSTS.md).
#pragma once

#include <stdexcept>
#include <string>

#include "kizuna/status.h"

namespace kizuna {

class DBException : public std::runtime_error {
 public:
  DBException(StatusCode code, const std::string& message)
      : std::runtime_error(std::string(status_name(code)) + ": " + message), code_(code) {}

  [[nodiscard]] StatusCode code() const noexcept { return code_; }

 private:
  StatusCode code_;
};

}  // namespace kizuna
