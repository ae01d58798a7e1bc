#!/bin/sh
# bench/probe_phases/run.sh [threads [kv_len [reps]]] - instruments the working tree's flashattn.h,
# builds build/probe_decode_phases against it and runs it. Needs python3 and an x86 compiler.
set -eu
cd "$(dirname "$0")/../.."
make -s build/probe_decode_phases
build/probe_decode_phases "$@"
