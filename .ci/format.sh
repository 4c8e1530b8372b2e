#!/usr/bin/env bash
# Checks that every tracked C++ file (*.cpp, *.cppm, *.hpp) is formatted as
# .clang-format says, with clang-format-19; lists the offending files and
# exits 1 if any is not. `--fix` reformats them in place instead.
# It also checks that every C and C++ source is plain ASCII: that is what
# lets .clang-tidy leave out misc-confusable-identifiers and the
# misc-misleading-* checks (homoglyphs and bidirectional text need non-ASCII).
#   .ci/format.sh          check (CI)
#   .ci/format.sh --fix    reformat
#   CLANG_FORMAT=...       another binary (the version must be 19: others format differently)
set -euo pipefail
cd "$(dirname "$0")/.."

fix=0
case "${1:-}" in
  "") ;;
  --fix) fix=1 ;;
  -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "format.sh: unknown argument '$1' (use --fix or nothing)" >&2; exit 2 ;;
esac

clang_format=${CLANG_FORMAT:-clang-format-19}
if ! command -v "$clang_format" >/dev/null 2>&1; then
  echo "format.sh: $clang_format not found (apt-get install clang-format-19, or toolchains/setup-debian12.sh)" >&2
  exit 2
fi
version=$("$clang_format" --version)
if [[ $version != *" version 19."* ]]; then
  echo "format.sh: $clang_format is not version 19 ($version)" >&2
  exit 2
fi

mapfile -d '' files < <(git ls-files -z -- '*.cpp' '*.cppm' '*.hpp')
[[ ${#files[@]} -gt 0 ]] || { echo "format.sh: no C++ files tracked" >&2; exit 2; }

if [[ $fix -eq 1 ]]; then
  printf '%s\0' "${files[@]}" | xargs -0 -n 16 -P 2 "$clang_format" -i --style=file
  echo "format.sh: formatted ${#files[@]} files"
  exit 0
fi

bad=()
for f in "${files[@]}"; do
  [[ -f $f ]] || continue  # deleted in the working tree but not yet in the index
  if ! "$clang_format" --dry-run -Werror --style=file "$f" >/dev/null 2>&1; then
    bad+=("$f")
  fi
done
if [[ ${#bad[@]} -gt 0 ]]; then
  echo "format.sh: ${#bad[@]} of ${#files[@]} files are not formatted (fix: .ci/format.sh --fix):" >&2
  printf '  %s\n' "${bad[@]}" >&2
  exit 1
fi
mapfile -d '' sources < <(git ls-files -z -- '*.cpp' '*.cppm' '*.hpp' '*.c' '*.h')
nonascii=()
for f in "${sources[@]}"; do
  [[ -f $f ]] || continue
  if LC_ALL=C grep -q -P '[^\x00-\x7F]' "$f"; then nonascii+=("$f"); fi
done
if [[ ${#nonascii[@]} -gt 0 ]]; then
  echo "format.sh: ${#nonascii[@]} source file(s) contain non-ASCII bytes (sources are plain ASCII; see .clang-tidy):" >&2
  for f in "${nonascii[@]}"; do LC_ALL=C grep -n -P '[^\x00-\x7F]' "$f" | head -3 | sed "s|^|  $f:|" >&2; done
  exit 1
fi
echo "format.sh: ${#files[@]} files formatted; ${#sources[@]} C/C++ sources are ASCII"
