# clang-19 with clang-scan-deps-19 (C++20 named modules need the scanner).
include_guard(GLOBAL)

find_program(CIRCBUF_CLANGXX NAMES clang++-19)
if(NOT CIRCBUF_CLANGXX)
  message(FATAL_ERROR "clang++-19 not found: run toolchains/setup-debian12.sh as root "
                      "(Debian 12: apt-get install clang-19 clang-tools-19)")
endif()
find_program(CIRCBUF_CLANG_SCAN_DEPS NAMES clang-scan-deps-19)
if(NOT CIRCBUF_CLANG_SCAN_DEPS)
  # Without it CMake fails later with a misleading "Could NOT find Threads".
  message(FATAL_ERROR "clang-scan-deps-19 not found: apt-get install clang-tools-19")
endif()

find_program(CIRCBUF_CLANG NAMES clang-19)  # the C tests of the C ABI (capi/)
set(CMAKE_CXX_COMPILER "${CIRCBUF_CLANGXX}")
if(CIRCBUF_CLANG)
  set(CMAKE_C_COMPILER "${CIRCBUF_CLANG}")
endif()
set(CMAKE_CXX_COMPILER_CLANG_SCAN_DEPS "${CIRCBUF_CLANG_SCAN_DEPS}")
