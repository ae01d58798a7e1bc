#!/bin/bash
# bench/gpu_profile.sh - Nsight Compute stall reasons and SASS of the forward kernel (GPU machine).
OUT=${OUT:-/tmp/fa_gpu}; mkdir -p "$OUT"
B=${1:-build/bench_cuda}
ncu --clock-control none -k regex:fa__cu_fwd -c 1 \
    --section SpeedOfLight --section Occupancy --section LaunchStats --section SchedulerStats \
    --section WarpStateStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
    --section InstructionStats --section SourceCounters "$B" --profile > "$OUT/ncu.txt" 2>&1
ncu --clock-control none -k regex:fa__cu_fwd --launch-skip 3 -c 1 --section SpeedOfLight \
    --section WarpStateStats --section SchedulerStats --section InstructionStats \
    --section SourceCounters "$B" --profile > "$OUT/ncu_decode.txt" 2>&1
cuobjdump -sass "$B" > "$OUT/sass_all.txt" 2>&1
K=bfloat16Li128ELi8ELi64ELi4ELb1ELb0E
awk -v k="$K" '/Function : /{p = index($0, k) > 0} p' "$OUT/sass_all.txt" > "$OUT/sass_d128.txt"
rm -f "$OUT/sass_all.txt"
grep -E "Duration|Throughput|Warp Cycles|Stall|stall|Issued|Eligible|Active Warps|Registers|Achieved|Theoretical Occ|Block Limit|Bank|Executed Ipc" "$OUT/ncu.txt" | head -80
echo "== decode"
grep -E "Duration|Throughput|Warp Cycles Per Issued|Eligible Warps|Issued Instructions  " "$OUT/ncu_decode.txt" | head -20
wc -l "$OUT/sass_d128.txt"
