#!/usr/bin/env bash
# CPU benchmarks on a many-core host (run through the device tool on the GPU machine's host
# CPU). Binaries are built beforehand on the development machine (same ISA, run-time dispatch)
# and carried in .devbin/ with the optional baseline libraries (OpenBLAS, Concurrency Kit).
# Usage: bench/cpu16_run.sh [outdir]
set -u
out=${1:-${OUT:-/tmp}}
export LD_LIBRARY_PATH=$PWD/.devbin/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export OPENBLAS_NUM_THREADS=1
n=$(nproc)
lscpu | grep -E "Model name|^CPU\(s\)|Thread|Socket|NUMA node\(s\)" | tee "$out/cpu.txt"
run() { # name, command...
  local name=$1; shift
  echo "===== $name: $*"
  timeout 240 "$@" 2>&1 | tee "$out/$name.txt"
}
run attn   .devbin/bench_attn 8192 3 "$n" bcd
run mask   .devbin/bench_mask 16384 3 "$n"
run queue  .devbin/bench_queue "$n"
run hash   .devbin/bench_hash --no-16m --threads "$n" --runs 3
