#!/usr/bin/env bash
# CI: the libFuzzer targets (issue 6; docs/fuzzing.md). Builds the clang-fuzz
# preset (ASan + UBSan + libFuzzer), replays each seed corpus (ctest), then
# fuzzes each target for a fixed time starting from its corpus. Exits
# non-zero on a crash, a sanitizer report, a leak, a timeout or a broken
# invariant; the reproducer is left in build/clang-fuzz/artifacts/.
#
#   .ci/fuzz.sh              45 s per target
#   FUZZ_SECONDS=600 .ci/fuzz.sh
# New inputs go to build/clang-fuzz/corpus/<target>/ (not into the repo).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-45}
build=build/clang-fuzz
cmake --preset clang-fuzz -B "$build" >/dev/null
cmake --build "$build" -j2
ctest --test-dir "$build" --output-on-failure

symbolizer=$(command -v llvm-symbolizer-19 || command -v llvm-symbolizer || true)
export ASAN_SYMBOLIZER_PATH=${symbolizer}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
mkdir -p "$build/artifacts"
status=0
for target in fuzz/*.fuzz.cpp; do
  name=$(basename "$target" .fuzz.cpp)
  work="$build/corpus/$name"
  mkdir -p "$work"
  printf '\n=== fuzz_%s: %s s (%s) ===\n' "$name" "$seconds" "$(date -u +%H:%M:%S)"
  set +e
  "$build/fuzz_$name" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="$build/artifacts/$name-" "$work" "fuzz/corpus/$name" 2>&1 |
    grep -v -E '[[:space:]](NEW|REDUCE|pulse)[[:space:]]|Uses: '
  rc=${PIPESTATUS[0]}
  set -e
  if [[ $rc -ne 0 ]]; then
    echo "fuzz: fuzz_$name failed (exit $rc); reproducer in $build/artifacts/" >&2
    status=1
  fi
done
# Nothing may be left in /dev/shm by a fuzzer that has exited
# (names are /cbfuzz-<target>-<pid>; a live pid is another run's).
for file in /dev/shm/cbfuzz-* /dev/shm/sem.cbfuzz-*; do
  [[ -e $file ]] || continue
  pid=${file##*-}
  pid=${pid%.data}
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "fuzz: left in /dev/shm: $file" >&2
    status=1
  fi
done
exit $status
