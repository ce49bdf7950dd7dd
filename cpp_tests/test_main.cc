// main() of every test binary: runs a registered child entry point when started as
// `<binary> --pcore-child <name> ...` (see spawn_child), GoogleTest otherwise.
#include <gtest/gtest.h>

#include "test_support.hpp"

int main(int argc, char** argv) {
  int exit_code = 0;
  if (pcore_test::maybe_run_child(argc, argv, &exit_code)) {
    return exit_code;
  }
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
