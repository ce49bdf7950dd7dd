# Builds libpcore with cargo and exposes it as imported targets.
#
# cargo builds into ${PCORE_CARGO_TARGET_DIR}/release. The libraries are then staged into
# ${PCORE_STAGE_DIR} (<build>/lib) under their installed names:
#   libpcore.so.<SOVERSION>   the shared library (its SONAME, set by build.rs)
#   libpcore.so               -> libpcore.so.<SOVERSION>
#   libpcore.a
# so binaries linked in the build tree find the SONAME through their build RPATH, and a
# `cargo clean` or a concurrent `cargo build` never leaves them without a library.
#
# Targets:
#   pcore_cargo          runs cargo when src/**/*.rs, Cargo.toml, Cargo.lock or build.rs changed
#   pcore::pcore         SHARED IMPORTED (links the staged .so)
#   pcore::pcore_static  STATIC IMPORTED (plus pthread, dl, m)

find_program(PCORE_CARGO_EXECUTABLE cargo HINTS "$ENV{HOME}/.cargo/bin" REQUIRED)

set(PCORE_STAGE_DIR "${CMAKE_BINARY_DIR}/lib")
set(_pcore_cargo_out "${PCORE_CARGO_TARGET_DIR}/release")
set(PCORE_SONAME "libpcore.so.${PCORE_SOVERSION}")
set(PCORE_SHARED_LIBRARY "${PCORE_STAGE_DIR}/${PCORE_SONAME}")
set(PCORE_STATIC_LIBRARY "${PCORE_STAGE_DIR}/libpcore.a")
set(PCORE_INCLUDE_DIR "${CMAKE_CURRENT_SOURCE_DIR}/include")

file(GLOB_RECURSE _pcore_rust_sources CONFIGURE_DEPENDS
     "${CMAKE_CURRENT_SOURCE_DIR}/src/*.rs")
set(_pcore_cargo_inputs ${_pcore_rust_sources} "${CMAKE_CURRENT_SOURCE_DIR}/Cargo.toml")
foreach(_f build.rs Cargo.lock cbindgen.toml)
  if(EXISTS "${CMAKE_CURRENT_SOURCE_DIR}/${_f}")
    list(APPEND _pcore_cargo_inputs "${CMAKE_CURRENT_SOURCE_DIR}/${_f}")
  endif()
endforeach()

set(_pcore_cargo_stamp "${CMAKE_BINARY_DIR}/pcore_cargo.stamp")
add_custom_command(
  OUTPUT "${_pcore_cargo_stamp}"
  BYPRODUCTS "${PCORE_SHARED_LIBRARY}" "${PCORE_STAGE_DIR}/libpcore.so" "${PCORE_STATIC_LIBRARY}"
  COMMAND "${PCORE_CARGO_EXECUTABLE}" build --release -p pcore --lib
          --manifest-path "${CMAKE_CURRENT_SOURCE_DIR}/Cargo.toml"
          --target-dir "${PCORE_CARGO_TARGET_DIR}"
  COMMAND "${CMAKE_COMMAND}"
          "-DCARGO_OUT=${_pcore_cargo_out}"
          "-DSTAGE_DIR=${PCORE_STAGE_DIR}"
          "-DSONAME=${PCORE_SONAME}"
          "-DSTAMP=${_pcore_cargo_stamp}"
          -P "${CMAKE_CURRENT_SOURCE_DIR}/cmake/PcoreStageLibs.cmake"
  DEPENDS ${_pcore_cargo_inputs} "${CMAKE_CURRENT_SOURCE_DIR}/cmake/PcoreStageLibs.cmake"
  WORKING_DIRECTORY "${CMAKE_CURRENT_SOURCE_DIR}"
  COMMENT "cargo build --release --lib (libpcore)"
  USES_TERMINAL
  VERBATIM)
add_custom_target(pcore_cargo ALL DEPENDS "${_pcore_cargo_stamp}")

add_library(pcore::pcore SHARED IMPORTED GLOBAL)
set_target_properties(pcore::pcore PROPERTIES
  IMPORTED_LOCATION "${PCORE_SHARED_LIBRARY}"
  IMPORTED_SONAME "${PCORE_SONAME}"
  INTERFACE_INCLUDE_DIRECTORIES "${PCORE_INCLUDE_DIR}")
add_dependencies(pcore::pcore pcore_cargo)

add_library(pcore::pcore_static STATIC IMPORTED GLOBAL)
set_target_properties(pcore::pcore_static PROPERTIES
  IMPORTED_LOCATION "${PCORE_STATIC_LIBRARY}"
  INTERFACE_INCLUDE_DIRECTORIES "${PCORE_INCLUDE_DIR}"
  INTERFACE_LINK_LIBRARIES "pthread;dl;m")
add_dependencies(pcore::pcore_static pcore_cargo)
