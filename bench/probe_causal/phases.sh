#!/bin/sh
# bench/probe_causal/phases.sh [seqlen [calls]] - builds build/probe_phases (make: a copy of the
# working tree's flashattn.h with part-unit modes, instrument.py, and phase timers, phases.py)
# and runs it. x86-64 only.
set -eu
cd "$(dirname "$0")/../.."
make -s build/probe_phases
build/probe_phases "$@"
