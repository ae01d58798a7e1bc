#!/usr/bin/env bash
# bench/ab.sh - A/B of fa_attn_forward on the CPU: flashattn.h at a git revision (A) against the
# working tree's (B), both linked into one program and called alternately (see bench/ab_main.c).
#   usage: bench/ab.sh REV [threads sq sk hq hkv d dtype causal cold calls splits]
#   REV:     a git revision, or the path of a flashattn.h file (A from outside git)
#   default: 1 thread, decode (sq 1, sk 4096, 32/8 heads, d 128, bf16), warm, 30 calls
#   e.g.     bench/ab.sh HEAD 2 1024 1024 2 2 128 f32 1 0 10 0     (causal prefill, 2 threads)
#   dtype:   f32 | bf16 | f16 | e4m3 (K and V; Q f32) | bf16q (Q, K and V bf16)
#   env:     AB_WINDOW=w (a sliding window), AB_ISA=avx2 (the AVX2 kernels on an AVX-512 machine)
#            AB_MASK=density (a BigBird-style block mask: random full key blocks, that fraction kept)
#            AB_BIN=path: only build, statically, to path (to carry to another machine, such as
#            the 16-core host through the device tool: run it there with the arguments above)
set -eu
rev=${1:?usage: bench/ab.sh REV [threads sq sk hq hkv d dtype causal cold calls splits]}
shift
args=("$@")
[ ${#args[@]} -eq 0 ] && args=(1 1 4096 32 8 128 bf16 1 0 30 0)
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ -f "$rev" ]; then cp "$rev" "$tmp/a.h"; else git show "$rev:flashattn.h" > "$tmp/a.h"; fi
cp flashattn.h "$tmp/b.h"
CC=${CC:-cc}
FLAGS=${AB_CFLAGS:--O3}
$CC $FLAGS -DAB_SIDE=a "-DAB_HEADER=\"$tmp/a.h\"" -c bench/ab_tu.c -o "$tmp/a.o"
$CC $FLAGS -DAB_SIDE=b "-DAB_HEADER=\"$tmp/b.h\"" -c bench/ab_tu.c -o "$tmp/b.o"
if [ -n "${AB_BIN:-}" ]; then
  $CC $FLAGS -static -I. bench/ab_main.c "$tmp/a.o" "$tmp/b.o" -o "$AB_BIN" -lm -lpthread
  exit 0
fi
$CC $FLAGS -I. bench/ab_main.c "$tmp/a.o" "$tmp/b.o" -o "$tmp/ab" -lm -lpthread
"$tmp/ab" "${args[@]}"
