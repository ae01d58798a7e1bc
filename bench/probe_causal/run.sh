#!/bin/sh
# bench/probe_causal/run.sh [seqlen [calls]] - builds build/probe_causal against a copy of the
# working tree's flashattn.h that can run part of a causal unit (instrument.py), and runs it.
set -eu
cd "$(dirname "$0")/../.."
make -s build/probe_causal
build/probe_causal "$@"
