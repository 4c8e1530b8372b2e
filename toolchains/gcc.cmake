# g++ >= 14 (the first GCC whose module dependency scanning CMake supports).
# On Debian 12 run the gcc presets inside the Debian 13 chroot made by
# toolchains/gcc-chroot.sh; where g++ >= 14 is native they work directly.
include_guard(GLOBAL)

find_program(CIRCBUF_GXX NAMES g++-15 g++-14 g++)
if(CIRCBUF_GXX)
  execute_process(COMMAND "${CIRCBUF_GXX}" -dumpfullversion
                  OUTPUT_VARIABLE _circbuf_gxx_version OUTPUT_STRIP_TRAILING_WHITESPACE)
endif()
if(NOT CIRCBUF_GXX OR _circbuf_gxx_version VERSION_LESS 14)
  message(FATAL_ERROR "g++ >= 14 not found (found: '${CIRCBUF_GXX}' ${_circbuf_gxx_version}). "
                      "On Debian 12 use: toolchains/gcc-chroot.sh cmake --workflow --preset gcc-debug")
endif()

set(CMAKE_CXX_COMPILER "${CIRCBUF_GXX}")
# The C compiler of the same GCC (the C tests of the C ABI, capi/).
string(REPLACE "g++" "gcc" _circbuf_gcc "${CIRCBUF_GXX}")
find_program(CIRCBUF_GCC NAMES "${_circbuf_gcc}" NAMES_PER_DIR)
if(CIRCBUF_GCC)
  set(CMAKE_C_COMPILER "${CIRCBUF_GCC}")
endif()
