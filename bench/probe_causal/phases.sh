#!/bin/sh
# bench/probe_causal/phases.sh [seqlen [calls]] - builds build/probe_phases against a copy of the
# working tree's flashattn.h with part-unit modes (instrument.py) and phase timers (phases.py),
# and runs it. x86-64 only.
set -eu
cd "$(dirname "$0")/../.."
mkdir -p build/probe_phases_h
python3 bench/probe_causal/instrument.py flashattn.h build/probe_phases_h/a.h
python3 bench/probe_causal/phases.py build/probe_phases_h/a.h build/probe_phases_h/flashattn.h
${CC:-cc} -std=c11 -O3 -Ibuild/probe_phases_h bench/probe_causal/probe_phases.c -o build/probe_phases -lm -lpthread
build/probe_phases "$@"
