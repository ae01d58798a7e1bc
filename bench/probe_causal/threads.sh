#!/bin/sh
# bench/probe_causal/threads.sh [threads [calls [options]]] - builds build/probe_threads against a
# copy of the working tree's flashattn.h with phase timers (phases.py, threads.py) and runs it.
# x86-64 only. PT_BUILD_ONLY=1: build only (with PT_STATIC=1: a static binary).
set -eu
cd "$(dirname "$0")/../.."
mkdir -p build/probe_threads_h
python3 bench/probe_causal/instrument.py flashattn.h build/probe_threads_h/a.h
python3 bench/probe_causal/phases.py build/probe_threads_h/a.h build/probe_threads_h/b.h
python3 bench/probe_causal/threads.py build/probe_threads_h/b.h build/probe_threads_h/flashattn.h
${CC:-cc} -std=c11 -O3 ${PT_STATIC:+-static} -Ibuild/probe_threads_h bench/probe_causal/probe_threads.c -o build/probe_threads -lm -lpthread
[ -n "${PT_BUILD_ONLY:-}" ] || build/probe_threads "$@"
