#!/bin/sh
# bench/probe_causal/threads.sh [threads [calls [options]]] - builds build/probe_threads (make: a
# copy of the working tree's flashattn.h with phase timers, phases.py, made safe on several
# threads, threads.py) and runs it. x86-64 only. PT_BUILD_ONLY=1: build only (with PT_STATIC=1:
# a static binary, to carry to another machine).
set -eu
cd "$(dirname "$0")/../.."
if [ -n "${PT_STATIC:-}" ]; then make -s -B build/probe_threads PROBE_LDFLAGS=-static
else make -s build/probe_threads; fi
[ -n "${PT_BUILD_ONLY:-}" ] || build/probe_threads "$@"
