#!/usr/bin/env bash
# CI: the hot path inlines across the module boundary (issue 14). In a named
# module a member function defined in its class is not implicitly inline
# (docs/toolchain-notes.md, "Inline across the module boundary"), so without
# `inline` a program that imports circbuf calls Reader::Read, Begin, Finish
# and Writer::Write / Publish out of line, and the leftover bytes of a
# message went through memcpy@plt. This disassembles the two hot functions
# of examples/consumer (built against the installed package by
# .ci/consumer.sh) and fails if either calls (or jumps to) one of them.
#
#   .ci/inline-check.sh BINARY
set -euo pipefail
exe=${1:?usage: .ci/inline-check.sh BINARY}
forbidden='::(Read|Write|Begin|Finish|Publish|Reserve|Advance)\(|memcpy|memmove'
rc=0
for fn in circbuf_consumer_read circbuf_consumer_write; do
  asm=$(objdump -d --no-show-raw-insn -C --disassemble="$fn" "$exe")
  body=$(sed -n "/<$fn>:/,\$p" <<<"$asm")
  lines=$(grep -c $'^ *[0-9a-f]*:\t' <<<"$body" || true)
  if [[ $lines -eq 0 ]]; then
    echo "inline-check: $fn not found in $exe" >&2
    exit 1
  fi
  # Every call or jump to a named function (tail calls are jumps).
  calls=$(grep -E $'\t(call|jmp)[a-z]* +[0-9a-f]+ <' <<<"$body" | grep -vE "<$fn\+0x[0-9a-f]+>" || true)
  bad=$(grep -E "$forbidden" <<<"$calls" || true)
  echo "inline-check: $fn: $lines instructions; out-of-line calls: $(grep -oE '<[^>+]*' <<<"$calls" | tr -d '<' | sed 's/(.*//' | sort -u | tr '\n' ' ')"
  if [[ -n $bad ]]; then
    echo "inline-check: FAILED: $fn calls the hot path out of line:" >&2
    echo "$bad" >&2
    rc=1
  fi
done
exit $rc
