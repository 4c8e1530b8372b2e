#!/usr/bin/env bash
# CI: circbuf as other projects use it (issue 7).
#  1. clang-19: configure/build/install circbuf (clang-release settings, tests
#     off) into a fresh temporary prefix; check what was installed; run the
#     examples (market_data writer + readers, blocking_reader) as a smoke
#     test; build the standalone project examples/consumer against that
#     prefix (find_package(circbuf 0.1), import circbuf;), run it, and
#     check that Read and Write inlined into it (.ci/inline-check.sh).
#  2. g++-14: the same (without the tool) inside the Debian 13 chroot of
#     toolchains/gcc-chroot.sh.
#     circbuf is built with g++-14 there too: the consumer recompiles the
#     installed interface units, but links the static library, whose object
#     code should come from the same compiler and standard library.
#  3. FetchContent: examples/fetchcontent pulls this tree in as a subproject
#     (FETCHCONTENT_SOURCE_DIR_CIRCBUF) with clang-19; checks that circbuf's
#     tests, tool, examples and install rules stay off there, builds and runs it.
#
#   .ci/consumer.sh                 all three
#   .ci/consumer.sh --leg clang|gcc|fetchcontent
#
# Build directories: build/pkg-clang, build/pkg-gcc, build/pkg-fetchcontent
# (kept: incremental), build/pkg-consumer-* (fresh every run). The install
# prefixes are temporary directories, removed on exit. Parallelism: Ninja's
# default, or CMAKE_BUILD_PARALLEL_LEVEL.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$(pwd -P)

section() { printf '\n=== consumer: %s (%s) ===\n' "$1" "$(date -u +%H:%M:%S)"; }
fail() { echo "consumer: FAILED: $*" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/circbuf-consumer.XXXXXX")
trap 'rm -rf -- "$tmp"' EXIT

# circbuf's own build and install: $1 preset, $2 build dir, $3 prefix, $4 ON
# or OFF: with the tool. CMAKE_INSTALL_PREFIX=/usr as for the Debian package
# (.ci/deb.sh shares build/pkg-clang); --prefix puts this install elsewhere.
install_circbuf() {
  local preset=$1 build=$2 prefix=$3 tool=$4
  section "$preset: build circbuf and install it into $prefix"
  cmake --preset "$preset" -B "$build" -DCIRCBUF_BUILD_TESTS=OFF -DCIRCBUF_BUILD_BENCHMARKS=OFF \
    -DCIRCBUF_BUILD_TOOLS="$tool" -DCIRCBUF_BUILD_EXAMPLES=ON -DCMAKE_INSTALL_PREFIX=/usr >/dev/null
  cmake --build "$build"
  cmake --install "$build" --prefix "$prefix" >/dev/null
  check_installed "$prefix" "$tool"
}

# What an install must hold, and what it must not.
check_installed() {
  local prefix=$1 tool=$2 f
  for f in include/circbuf/modules/circbuf.cppm include/circbuf/modules/ring/reader.cppm; do
    [[ -f $prefix/$f ]] || fail "not installed: $f"
  done
  for f in libcircbuf.a circbufConfig.cmake circbufConfigVersion.cmake circbufTargets.cmake; do
    find "$prefix" -name "$f" | grep -q . || fail "not installed: $f"
  done
  # Implementation units and the internal logging header stay private: the
  # installed interface units must not need them.
  if find "$prefix" -name '*.hpp' -o -name '*.cpp' | grep -q .; then
    fail "installed a header or implementation unit: $(find "$prefix" -name '*.hpp' -o -name '*.cpp')"
  fi
  if grep -rlE '#include *"|detail/' "$prefix/include/circbuf/modules" | grep -q .; then
    fail "an installed interface unit includes a project header"
  fi
  if [[ $tool == ON ]]; then
    "$prefix/bin/circbuf" --help >/dev/null || fail "the installed circbuf tool does not run"
  fi
  echo "installed: $(cd "$prefix" && find . -type f | sort | tr '\n' ' ')"
}

# examples/consumer against an installed prefix: $1 build dir, $2 prefix,
# then the compiler's cache settings.
build_and_run_consumer() {
  local build=$1 prefix=$2
  shift 2
  rm -rf -- "$build"
  cmake -S examples/consumer -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_CXX_FLAGS="-Wall -Wextra -Werror" "$@" >/dev/null
  cmake --build "$build"
  "$build/circbuf_roundtrip" || fail "examples/consumer ($build) exited with $?"
  .ci/inline-check.sh "$build/circbuf_roundtrip" || fail "the hot path of examples/consumer ($build) is not inlined"
}

# The examples of circbuf's own build: a writer and three readers at once.
smoke_examples() {
  local bin=$1 pids=() rc=0 p
  section "examples: market_data writer, readers (copy, in place), blocking_reader"
  rm -f /dev/shm/example-quotes /dev/shm/example-quotes.data  # left over from a killed run
  "$bin/example_market_data_reader" & pids+=($!)
  "$bin/example_market_data_reader" --in-place & pids+=($!)
  "$bin/example_blocking_reader" /example-quotes 5 & pids+=($!)
  sleep 0.3  # the readers wait for the ring; started first, they see all of it
  "$bin/example_market_data_writer" 100000 1000000 || rc=1
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  [[ $rc -eq 0 ]] || fail "an example failed"
  if [[ -x $bin/example_c_tail ]]; then  # plain C over libcircbuf.so.0
    section "examples: c_tail (the C ABI), a reader and a writer"
    rm -f /dev/shm/example-c /dev/shm/example-c.data
    "$bin/example_c_tail" /example-c > "$tmp/c_tail.out" & p=$!
    # The writer holds the ring open a second after its input, so that the
    # reader (waiting for the ring to appear) attaches before it closes.
    (printf 'one\ntwo\nthree\n'; sleep 1) | "$bin/example_c_tail" /example-c --write || rc=1
    wait "$p" || rc=1
    [[ $rc -eq 0 && "$(cat "$tmp/c_tail.out")" == $'one\ntwo\nthree\ndelivered 3, lost 0' ]] ||
      fail "examples/c: expected the three lines and 'delivered 3, lost 0', got: $(cat "$tmp/c_tail.out")"
  fi
}

clang_args=(-DCMAKE_CXX_COMPILER=clang++-19)

leg_clang() {
  local prefix=$tmp/prefix-clang start=$SECONDS
  install_circbuf clang-release build/pkg-clang "$prefix" ON
  smoke_examples build/pkg-clang
  section "clang-19: examples/consumer against $prefix"
  build_and_run_consumer build/pkg-consumer-clang "$prefix" "${clang_args[@]}" \
    -DCMAKE_CXX_COMPILER_CLANG_SCAN_DEPS="$(command -v clang-scan-deps-19)"
  echo "clang leg: $((SECONDS - start)) s"
}

leg_gcc() {  # inside the Debian 13 chroot
  local prefix=$tmp/prefix-gcc start=$SECONDS
  # Without the tool: the gcc presets of .ci/run build and test it already.
  install_circbuf gcc-release build/pkg-gcc "$prefix" OFF
  smoke_examples build/pkg-gcc
  section "g++-14: examples/consumer against $prefix"
  build_and_run_consumer build/pkg-consumer-gcc "$prefix" -DCMAKE_CXX_COMPILER=g++-14
  echo "gcc leg: $((SECONDS - start)) s"
}

leg_fetchcontent() {
  local build=build/pkg-fetchcontent start=$SECONDS targets extra
  section "clang-19: FetchContent of this tree (examples/fetchcontent)"
  # --fresh: a new cache (so the subproject defaults are what is checked),
  # while unchanged objects are kept.
  cmake --fresh -S examples/fetchcontent -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DFETCHCONTENT_SOURCE_DIR_CIRCBUF="$src" -DCMAKE_CXX_FLAGS="-Wall -Wextra -Werror" "${clang_args[@]}" \
    -DCMAKE_CXX_COMPILER_CLANG_SCAN_DEPS="$(command -v clang-scan-deps-19)" >/dev/null
  # As a subproject circbuf builds its library only.
  targets=$(cmake --build "$build" --target help)
  extra=$(grep -oE '^(circbuf-tool|test_[^:]*|bench_[^:]*|example_[^:]*)' <<<"$targets" || true)
  [[ -z $extra ]] || fail "circbuf as a subproject builds more than the library: $extra"
  if grep -qsE 'libcircbuf|circbufTargets' "$build/_deps/circbuf-build/cmake_install.cmake"; then
    fail "circbuf as a subproject has install rules (CIRCBUF_INSTALL should default to OFF)"
  fi
  cmake --build "$build"
  "$build/circbuf_roundtrip" || fail "examples/fetchcontent exited with $?"
  echo "fetchcontent leg: $((SECONDS - start)) s"
}

case ${1:-} in
  --leg)
    case ${2:-} in
      clang) leg_clang ;;
      gcc) leg_gcc ;;
      fetchcontent) leg_fetchcontent ;;
      *) fail "unknown leg '${2:-}' (clang, gcc, fetchcontent)" ;;
    esac ;;
  '')
    start=$SECONDS
    leg_clang
    section "g++-14 leg, in the Debian 13 chroot (toolchains/gcc-chroot.sh)"
    toolchains/gcc-chroot.sh .ci/consumer.sh --leg gcc
    leg_fetchcontent
    section "all consumer legs passed in $((SECONDS - start)) s"
    ;;
  *) fail "usage: .ci/consumer.sh [--leg clang|gcc|fetchcontent]" ;;
esac
