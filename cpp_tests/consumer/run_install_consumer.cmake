# ctest driver: installs the built pcore into a fresh prefix, then configures, builds and runs
# the consumer project against it (CMake package, static and shared, and pkg-config).
#   -DBUILD_DIR=<pcore build> -DSOURCE_DIR=<consumer sources> -DWORK_DIR=<scratch>
#   -DGENERATOR=<generator>
foreach(_var BUILD_DIR SOURCE_DIR WORK_DIR GENERATOR)
  if(NOT DEFINED ${_var})
    message(FATAL_ERROR "run_install_consumer.cmake: -D${_var}=... is required")
  endif()
endforeach()

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "${out}")
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")
run("${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${prefix}")

foreach(f include/pcore.h include/pcore.hpp include/pcore/xtree_store.hpp
          lib/libpcore.so lib/libpcore.a
          lib/cmake/pcore/pcoreConfig.cmake lib/cmake/pcore/pcoreConfigVersion.cmake
          lib/pkgconfig/pcore.pc)
  if(NOT EXISTS "${prefix}/${f}")
    message(FATAL_ERROR "not installed: ${f}")
  endif()
endforeach()
if(NOT IS_SYMLINK "${prefix}/lib/libpcore.so")
  message(FATAL_ERROR "lib/libpcore.so is not a symlink to the SONAME file")
endif()
# The SONAME's major follows the ABI's (libpcore.so.2 for ABI 2.x).
file(READ_SYMLINK "${prefix}/lib/libpcore.so" _soname)
if(NOT _soname MATCHES "^libpcore\\.so\\.[0-9]+$" OR NOT EXISTS "${prefix}/lib/${_soname}")
  message(FATAL_ERROR "lib/libpcore.so -> '${_soname}': not an installed libpcore.so.<major>")
endif()

set(ENV{PKG_CONFIG_PATH} "${prefix}/lib/pkgconfig")
run("${CMAKE_COMMAND}" -S "${SOURCE_DIR}" -B "${WORK_DIR}/build" -G "${GENERATOR}"
    "-DCMAKE_PREFIX_PATH=${prefix}" -DCMAKE_BUILD_TYPE=Release)
run("${CMAKE_COMMAND}" --build "${WORK_DIR}/build")

set(ENV{LD_LIBRARY_PATH} "${prefix}/lib")
foreach(exe consumer_shared consumer_static consumer_pkgconfig)
  if(EXISTS "${WORK_DIR}/build/${exe}")
    run("${WORK_DIR}/build/${exe}")
  elseif(NOT exe STREQUAL "consumer_pkgconfig")
    message(FATAL_ERROR "${exe} was not built")
  endif()
endforeach()
file(REMOVE_RECURSE "${WORK_DIR}")
