#!/usr/bin/env bash
# Compares the symbols that libcircbuf.so.0 exports with the checked-in list
# capi/circbuf.symbols (the C ABI, capi/circbuf.h). Any difference fails: an
# accidental export, a removed or renamed function. After a deliberate
# change of the ABI, regenerate the list with --update and commit it with
# the header. Also checks the soname.
#   .ci/abi-check.sh LIBRARY            check (ctest capi.symbols runs this)
#   .ci/abi-check.sh LIBRARY --update   rewrite capi/circbuf.symbols
set -euo pipefail
library=$(realpath "${1:?usage: .ci/abi-check.sh LIBRARY [--update]}")
cd "$(dirname "$0")/.."
list=capi/circbuf.symbols
# Defined, exported symbols, with their version (name@@CIRCBUF_0).
actual=$(nm -D --defined-only --with-symbol-versions "$library" | awk '{print $3}' | sed 's/@@*/ /' | sort)
if [[ "${2:-}" == "--update" ]]; then
  {
    echo "# Exported by libcircbuf.so.0: symbol and version (.ci/abi-check.sh compares; --update rewrites)"
    echo "$actual"
  } > "$list"
  echo "abi-check: wrote $list ($(echo "$actual" | wc -l) symbols)"
  exit 0
fi
soname=$(objdump -p "$library" | awk '$1 == "SONAME" {print $2}')
if [[ "$soname" != "libcircbuf.so.0" ]]; then
  echo "abi-check: soname of $library is '$soname', expected libcircbuf.so.0" >&2
  exit 1
fi
expected=$(grep -v '^#' "$list" | sort)
if ! diff_out=$(diff <(echo "$expected") <(echo "$actual")); then
  echo "abi-check: the exports of $library differ from $list ('<' listed only, '>' exported only):" >&2
  echo "$diff_out" >&2
  echo "abi-check: a deliberate ABI change? .ci/abi-check.sh $library --update, and commit the list" >&2
  exit 1
fi
echo "abi-check: $(echo "$actual" | wc -l) exported symbols match $list; soname $soname"
