#!/bin/bash
# bench/gpu_profile.sh - Nsight Compute stall reasons and SASS of the forward kernel (GPU machine).
OUT=${OUT:-/tmp/fa_gpu}; mkdir -p "$OUT"
B=${1:-build/bench_cuda}
ncu --clock-control none -k regex:fa__cu_fwd -c 1 \
    --section SpeedOfLight --section Occupancy --section LaunchStats --section SchedulerStats \
    --section WarpStateStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
    --section InstructionStats "$B" --profile > "$OUT/ncu.txt" 2>&1
cuobjdump -sass "$B" > "$OUT/sass_all.txt" 2>&1
awk '/Function : .*fa__cu_fwd_kernelI13__nv_bfloat16Li128ELi64ELb1ELb0E/{p=1} p&&/Function : /&&!/Li128ELi64ELb1ELb0E/{p=0} p' "$OUT/sass_all.txt" > "$OUT/sass_d128.txt"
rm -f "$OUT/sass_all.txt"
grep -E "Duration|Throughput|Warp Cycles|Stall|stall|Issued|Eligible|Active Warps|Registers|Achieved|Theoretical Occ|Block Limit|Bank|Executed Ipc" "$OUT/ncu.txt" | head -80
wc -l "$OUT/sass_d128.txt"
