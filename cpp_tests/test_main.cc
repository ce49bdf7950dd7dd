// main() of every test binary: runs a registered child entry point when started as
// `<binary> --pcore-child <name> ...` (see spawn_child), GoogleTest otherwise. `--long`
// (or PCORE_LONG=1 in the environment, which reaches tests run by ctest) makes the
// duration-bound suites run their long form (see pcore_test::long_run).
#include <gtest/gtest.h>

#include "test_support.hpp"

int main(int argc, char** argv) {
  int exit_code = 0;
  if (pcore_test::maybe_run_child(argc, argv, &exit_code)) {
    return exit_code;
  }
  pcore_test::take_long_flag(&argc, argv);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
