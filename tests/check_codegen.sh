#!/bin/sh
# tests/check_codegen.sh - the register-blocked kernels keep each loaded K/V vector in a
# register for all the rows that use it. A compiler that instead folds the load into every FMA
# as a memory operand (gcc 12 with -march=native on Zen, tuning for znver3, did: prefill f32
# at 0.53x) reads the same address several times in a row. For each compiler given, at three
# targets, this compiles the header to assembly and fails when, in the S and P V kernels of
# prefill and decode (fa__qk, fa__pv, fa__dec_qk, fa__dec_pv; AVX-512 and AVX2), one memory
# operand (not an embedded broadcast) feeds two FMAs with no label and no write of an integer
# register in between.
#   usage: tests/check_codegen.sh [cc ...]        (default: cc)
set -eu
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '#define FLASHATTN_IMPLEMENTATION\n#include "flashattn.h"\n' > "$tmp/tu.c"
[ $# -eq 0 ] && set -- cc
# -march=znver3 is what gcc 12's -march=native picks on Zen 4/5; haswell tunes the AVX2 kernels
check() { # cc flags... : prints the offending operands, if any
  out="$tmp/$(echo "$*" | tr -c 'a-z0-9' _)"
  "$@" -I. -S "$tmp/tu.c" -o "$out.s" 2>"$out.err" || { cat "$out.err"; echo "check_codegen: $* did not compile"; return; }
  awk '
    { sub(/[#;].*/, "") }                                          # comments
    /^[A-Za-z_][A-Za-z0-9_.]*:/ { fn = $1; sub(/:$/, "", fn); n = 0; next }
    fn !~ /^fa__(dec_)?(qk|pv)(_bf16)?_avx(512|2)/ { next }
    /^\.?L?[A-Za-z0-9_.]*:/ { n = 0; next }                       # a label: a new block
    /^\t(vfmadd|vfnmadd)[0-9a-z]*\t/ {
      if (match($0, /[-0-9a-fx]*\([^)]*\)(\{1to[0-9]+\})?/)) {
        op = substr($0, RSTART, RLENGTH)
        if (op ~ /\{1to/) next
        for (i = 0; i < n; i++) if (seen[i] == op) { print fn ": " op " feeds two FMAs"; n = 0; next }
        seen[n++] = op
      }
      next
    }
    /^\t[a-z]/ && $NF ~ /^%[re][a-z0-9]+$/ { n = 0 }                 # an integer register written
  ' "$out.s" | sort -u | head -5 > "$out.bad"
  if [ -s "$out.bad" ]; then echo "check_codegen: $*:"; cat "$out.bad"; else echo "check_codegen ok: $*"; fi
}
for cc in "$@"; do
  check $cc -O2 -march=znver3 > "$tmp/r1" &
  check $cc -O3 -march=haswell > "$tmp/r2" &
  check $cc -O3 > "$tmp/r3"
  wait
  cat "$tmp/r1" "$tmp/r2" "$tmp/r3"
done | tee "$tmp/all"
if grep -q "^check_codegen:" "$tmp/all"; then exit 1; fi

