# The Debian package: one package `circbuf` with everything `cmake --install`
# installs (static library, module interface units, CMake package files and
# the circbuf tool). A static library has no run-time package of its own, so
# there is no split into libcircbuf0 / libcircbuf-dev.
#   cmake -B build/pkg-clang --preset clang-release -DCMAKE_INSTALL_PREFIX=/usr
#   cmake --build build/pkg-clang && (cd build/pkg-clang && cpack)
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME circbuf)
set(CPACK_PACKAGE_VENDOR "circbuf")
set(CPACK_PACKAGE_CONTACT "circbuf developers <dev@circbuf.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_STRIP_FILES ON)  # the tool; the static library keeps its symbols
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # circbuf_0.1.0_amd64.deb
set(CPACK_DEBIAN_PACKAGE_SECTION libdevel)
# The extended description; CPackDeb indents each line by one space.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION [[
circbuf is a C++20 named-modules library (import circbuf;): one writer
publishes messages into a ring in POSIX shared memory, any number of reader
processes read them without slowing it down, and a reader that was lapped
learns exactly how many messages it lost.
.
This package holds the static library, its module interface units, the
CMake package (find_package(circbuf)), the circbuf command-line tool, the
C ABI (libcircbuf.so.0, /usr/include/circbuf.h) and the Python package
(import circbuf, over the C ABI).
Consumers need CMake >= 3.28 (bookworm-backports), Ninja >= 1.11 and
clang-19 with clang-tools-19 (or g++ >= 14).]])
# Consumers' find_package(circbuf) finds spdlog (the static library links it).
set(CPACK_DEBIAN_PACKAGE_DEPENDS "libspdlog-dev (>= 1:1.10)")
# libcircbuf.so.0 (the C ABI): a shlibs file and the ldconfig trigger.
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "cmake (>= 3.28), ninja-build (>= 1.11), clang-19, clang-tools-19")
# libc6, libstdc++6, libspdlog, libfmt for the tool (and libnats for
# `circbuf bridge`, when it is built), from dpkg-shlibdeps.
find_program(CIRCBUF_DPKG_SHLIBDEPS dpkg-shlibdeps)
if(CIRCBUF_DPKG_SHLIBDEPS)
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
else()
  message(STATUS "circbuf: dpkg-shlibdeps not found (apt-get install dpkg-dev): the .deb depends on libspdlog-dev only")
  if(CIRCBUF_BUILD_BRIDGE)
    message(WARNING "circbuf: without dpkg-shlibdeps the .deb does not depend on libnats, which `circbuf bridge` links")
  endif()
endif()
include(CPack)
