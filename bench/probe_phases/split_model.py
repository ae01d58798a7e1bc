# bench/probe_phases/split_model.py - a list-scheduling model of decode's shrinking KV splits
# (fa__attn_schedule): W threads claim splits in order, each split costing its keys' reading
# time plus a fixed cost, on threads of given speeds; prints when the call would end, plus 0.2 us
# of merge a split, for pieces of `piece` keys where each split takes 1/(f W) of what is left.
# The 0.1.11 scheme is piece 64, f 2; 0.1.12's is piece 16, f 1. Reading speed: 64 KiB of bf16
# K/V (16 keys at 32/8 heads, d=128) in 14.9 us, the 16-core host's cold rate per thread.
#   usage: python3 split_model.py [fixed_us_per_split]
import heapq, random, sys

def pieces(total, div, minsz):
    out, pos = [], 0
    while pos < total:
        c = min(max(minsz, -(-(total - pos) // div)), total - pos)
        out.append(c)
        pos += c
    return out

def end_time(ps, speeds, us_per_piece, fixed):
    h = [(0.0, i) for i in range(len(speeds))]
    heapq.heapify(h)
    end = 0.0
    for c in ps:
        t, i = heapq.heappop(h)
        t += (c * us_per_piece + fixed) / speeds[i]
        end = max(end, t)
        heapq.heappush(h, (t, i))
    return end

fixed = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
W = 16
random.seed(1)
cases = [("equal", [1.0] * W), ("4 at 1/1.6", [1.0] * 12 + [1 / 1.6] * 4),
         ("0.8-1.0", [random.uniform(0.8, 1.0) for _ in range(W)])]
print("keys piece f minsz splits | " + " | ".join(name for name, _ in cases) + "  (us)")
for keys in (4096, 8192):
    for piece, f in ((64, 2), (64, 1), (16, 1), (16, 2)):
        ps = pieces(keys // piece, f * W, 1)
        ends = [end_time(ps, sp, 14.9 * piece / 16, fixed) + 0.2 * len(ps) for _, sp in cases]
        print("%5d %5d %d %5d %6d | " % (keys, piece, f, 1, len(ps)) + " | ".join("%6.0f" % e for e in ends))
