#!/bin/bash
# bench/gpu_run.sh - one call on a GPU machine: build (unless prebuilt binaries came along),
# run the CUDA tests, the CUDA benchmark and the PyTorch SDPA comparison; logs and the
# results table go to $OUT (default /tmp/fa_gpu). The short table is printed last.
#   usage: bench/gpu_run.sh [test|bench|nopy|all]   (default all; nopy = test + bench_cuda,
#   no PyTorch side)
set -u
what=${1:-all}
OUT=${OUT:-/tmp/fa_gpu}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw \
    --format=csv 2>&1 | tee "$OUT/gpu.txt"
if ! [ -x build/test_cuda ] || ! [ -x build/bench_cuda ] || ldd build/test_cuda | grep -q "not found"; then
    echo "== building with $(nvcc --version | tail -1)"
    make cuda NVCC=nvcc 2>&1 | tail -20
fi
rc=0
if [ "$what" != bench ]; then
    echo "== test_cuda"
    set -o pipefail
    build/test_cuda 2>&1 | tee "$OUT/test.log" | grep -v "^ok " | tail -40 || rc=1
    grep -c "^ok " "$OUT/test.log" | sed 's/^/tests ok: /'
    set +o pipefail
fi
if [ "$what" != test ]; then
    echo "== bench_cuda"
    build/bench_cuda "$OUT/bench_cuda.csv" 2>&1 | tee "$OUT/bench.log" || rc=1
    [ "$what" = nopy ] && exit $rc
    echo "== PyTorch SDPA"
    PYTHONUNBUFFERED=1 python3 bench/bench_sdpa.py "$OUT/bench_cuda.csv" "$OUT/results.md" \
        > "$OUT/sdpa.log" 2>&1 || { rc=1; tail -20 "$OUT/sdpa.log"; }
    grep -v "^(" "$OUT/sdpa.log" | tail -20
fi
exit $rc
