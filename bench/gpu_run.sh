#!/bin/bash
# bench/gpu_run.sh - one call on a GPU machine: build (unless prebuilt binaries came along),
# run the CUDA tests, the CUDA benchmark and the PyTorch SDPA comparison; logs and the
# results table go to $OUT (default /tmp/fa_gpu). The short table is printed last.
#   usage: bench/gpu_run.sh [test|bench|all|nosdpa]   (default all; nosdpa (or nopy) = tests + our bench)
#   A hung kernel cannot eat the call: the tests and the bench run under timeout.
set -u
what=${1:-all}
[ "$what" = nopy ] && what=nosdpa
OUT=${OUT:-/tmp/fa_gpu}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw \
    --format=csv 2>&1 | tee "$OUT/gpu.txt"
if ! [ -x build/test_cuda ] || ! [ -x build/bench_cuda ] || ldd build/test_cuda | grep -q "not found"; then
    echo "== building with $(nvcc --version | tail -1)"
    make cuda NVCC=nvcc 2>&1 | tail -20
fi
if command -v cuobjdump > /dev/null; then
    echo "SASS of bench_cuda: $(cuobjdump -sass build/bench_cuda | grep -c HGMMA) HGMMA, $(cuobjdump -sass build/bench_cuda | grep -c HMMA) HMMA"
fi
rc=0
if [ "$what" != bench ]; then
    echo "== test_cuda"
    set -o pipefail
    timeout ${TEST_TIMEOUT:-240} build/test_cuda 2>&1 | tee "$OUT/test.log" | grep -v "^ok " | tail -40 || rc=1
    grep -c "^ok " "$OUT/test.log" | sed 's/^/tests ok: /'
    set +o pipefail
fi
if [ "$what" != test ]; then
    echo "== bench_cuda"
    timeout ${BENCH_TIMEOUT:-150} build/bench_cuda "$OUT/bench_cuda.csv" 2>&1 | tee "$OUT/bench.log" || rc=1
fi
if [ "$what" = all ] || [ "$what" = bench ]; then
    echo "== PyTorch SDPA"
    PYTHONUNBUFFERED=1 python3 bench/bench_sdpa.py "$OUT/bench_cuda.csv" "$OUT/results.md" \
        > "$OUT/sdpa.log" 2>&1 || { rc=1; tail -20 "$OUT/sdpa.log"; }
    grep -v "^(" "$OUT/sdpa.log" | tail -20
fi
exit $rc
