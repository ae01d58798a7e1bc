#!/bin/sh
# bench/probe_causal/run.sh [seqlen [calls]] - builds build/probe_causal against a copy of the
# working tree's flashattn.h that can run part of a causal unit (instrument.py), and runs it.
set -eu
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 bench/probe_causal/instrument.py flashattn.h "$tmp/flashattn.h"
mkdir -p build
${CC:-cc} -O3 -I"$tmp" bench/probe_causal/probe_causal.c -o build/probe_causal -lm -lpthread
build/probe_causal "$@"
