#!/bin/sh
# bench/probe_phases/run.sh [threads [kv_len [reps]]] - instruments the working tree's flashattn.h,
# builds build/probe_decode_phases against it and runs it. Needs python3 and an x86 compiler.
set -eu
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 bench/probe_phases/instrument.py flashattn.h "$tmp/flashattn.h"
mkdir -p build
${CC:-cc} -O3 -I"$tmp" bench/probe_phases/probe_decode.c -o build/probe_decode_phases -lm -lpthread
build/probe_decode_phases "$@"
