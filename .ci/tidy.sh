#!/usr/bin/env bash
# Runs clang-tidy-19 (checks: .clang-tidy) over the project's own sources and
# exits 1 if it reports anything.
#
# Named modules: a translation unit that imports circbuf needs the BMIs
# (.pcm) of the modules it imports, and CMake passes them through response
# files in compile_commands.json (`@CMakeFiles/....o.modmap`, which name the
# -fmodule-file=NAME=PATH.pcm). So the tree is configured and BUILT first,
# with clang-19: clang-tidy-19 then reads the same compile commands and the
# same BMIs (a BMI is only readable by the clang version that wrote it).
# Building also keeps the BMIs in step with sources edited since the last run.
#
#   .ci/tidy.sh                  everything (modules, tools, tests, bench, examples, fuzz)
#   .ci/tidy.sh REGEX...         only the source files whose path matches
#   TIDY_BUILD=build/tidy        the build directory (a clang-debug configuration + benchmarks)
#   TIDY_JOBS=2                  parallel clang-tidy processes (and build jobs)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

build=${TIDY_BUILD:-build/tidy}
jobs=${TIDY_JOBS:-2}

for tool in clang-tidy-19 run-clang-tidy-19; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "tidy.sh: $tool not found (apt-get install clang-tidy-19, or toolchains/setup-debian12.sh)" >&2
    exit 2
  }
done

echo "tidy.sh: building $build (clang-debug + benchmarks) for its compile commands and BMIs" >&2
cmake --preset clang-debug -B "$build" -DCIRCBUF_BUILD_BENCHMARKS=ON >/dev/null
cmake --build "$build" -j "$jobs" >/dev/null

if [[ $# -gt 0 ]]; then
  files=("$@")
else
  # C++ sources only: the C files (tests/capi/*.c, examples/c/*.c) are C11.
  files=("^$root/(modules|tools|tests|bench|examples|fuzz|capi)/.*\\.(cpp|cppm)$")
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
start=$SECONDS
status=0
run-clang-tidy-19 -clang-tidy-binary clang-tidy-19 -p "$build" -j "$jobs" -quiet "${files[@]}" >"$log" 2>&1 || status=$?

# Header warnings repeat once per translation unit that includes the header:
# report each once.
grep -E '^/.*:[0-9]+:[0-9]+: (warning|error): ' "$log" | sort -u >"$log.found" || true
count=$(wc -l <"$log.found")
if [[ $status -ne 0 || $count -ne 0 ]]; then
  cat "$log" >&2
  echo >&2
  echo "tidy.sh: $count distinct warning(s)/error(s) in $((SECONDS - start)) s:" >&2
  sed "s|^$root/||" "$log.found" >&2
  rm -f "$log.found"
  exit 1
fi
rm -f "$log.found"
echo "tidy.sh: no warnings ($((SECONDS - start)) s)"
