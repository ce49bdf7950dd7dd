# cmake -P script run after cargo: stages libpcore into STAGE_DIR under its installed names.
#   -DCARGO_OUT=<target>/release -DSTAGE_DIR=<build>/lib -DSONAME=libpcore.so.<major> -DSTAMP=<file>
# copy_if_different keeps the staged files' times when cargo did not relink, so nothing that
# links them is rebuilt needlessly.
foreach(_var CARGO_OUT STAGE_DIR SONAME STAMP)
  if(NOT DEFINED ${_var})
    message(FATAL_ERROR "PcoreStageLibs.cmake: -D${_var}=... is required")
  endif()
endforeach()

set(_shared "${CARGO_OUT}/libpcore.so")
set(_static "${CARGO_OUT}/libpcore.a")
foreach(_lib "${_shared}" "${_static}")
  if(NOT EXISTS "${_lib}")
    message(FATAL_ERROR "cargo did not produce ${_lib} (crate-type must include cdylib and staticlib)")
  endif()
endforeach()

file(MAKE_DIRECTORY "${STAGE_DIR}")
execute_process(COMMAND "${CMAKE_COMMAND}" -E copy_if_different "${_shared}" "${STAGE_DIR}/${SONAME}"
                RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "cannot stage ${_shared}")
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" -E copy_if_different "${_static}" "${STAGE_DIR}/libpcore.a"
                RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "cannot stage ${_static}")
endif()
# The link is made again when it names another SONAME: a build directory kept across an ABI
# major bump would otherwise keep pointing at the old library.
set(_link_target "")
if(IS_SYMLINK "${STAGE_DIR}/libpcore.so")
  file(READ_SYMLINK "${STAGE_DIR}/libpcore.so" _link_target)
endif()
if(NOT _link_target STREQUAL SONAME)
  file(REMOVE "${STAGE_DIR}/libpcore.so")
  file(CREATE_LINK "${SONAME}" "${STAGE_DIR}/libpcore.so" SYMBOLIC)
endif()

# The SONAME comes from build.rs (-Wl,-soname). Warn when it is missing or different: binaries
# would then record another name than the one installed.
find_program(_readelf NAMES readelf llvm-readelf)
if(_readelf)
  execute_process(COMMAND "${_readelf}" -d "${STAGE_DIR}/${SONAME}"
                  OUTPUT_VARIABLE _dyn ERROR_QUIET RESULT_VARIABLE _rc)
  if(_rc EQUAL 0)
    string(REGEX MATCH "Library soname: \\[([^]]*)\\]" _m "${_dyn}")
    if(NOT CMAKE_MATCH_1 STREQUAL SONAME)
      message(WARNING "libpcore.so has SONAME '${CMAKE_MATCH_1}', expected '${SONAME}' "
                      "(build.rs should pass -Wl,-soname,${SONAME})")
    endif()
  endif()
endif()

file(TOUCH "${STAMP}")
