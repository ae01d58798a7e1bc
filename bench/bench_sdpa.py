#!/usr/bin/env python3
"""PyTorch SDPA side of the CUDA benchmark (comparison only; the library never needs torch).

Times torch.nn.functional.scaled_dot_product_attention with the flash (FA2) and cuDNN
backends on the shapes of bench/bench_cuda.cu, in the same memory layout (BSHD tensors viewed
as BHSD), then writes one markdown table with flashattn_cuda beside both.

usage: bench_sdpa.py ours.csv out.md
"""
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def median_ms(fn, warm=2, reps=10):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def bshd(b, s, h, d):
    # random, never zeros; BSHD memory seen as (b, h, s, d) like FlashAttention's layout
    return (torch.rand(b, s, h, d, device="cuda", dtype=torch.bfloat16) * 2 - 1).transpose(1, 2)


BACKENDS = [("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)]


def fwd(d, s, causal):
    h, b = 2048 // d, 16384 // s
    q, k, v = bshd(b, s, h, d), bshd(b, s, h, d), bshd(b, s, h, d)
    flops = 4.0 * b * h * s * s * d * (0.5 if causal else 1.0)
    out = {}
    for name, be in BACKENDS:
        try:
            with sdpa_kernel(be):
                ms = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
            out[name] = flops / (ms * 1e-3) / 1e12
        except Exception as e:  # backend cannot run this shape
            print(f"  {name} d{d} causal={causal}: n/a ({str(e).splitlines()[0][:80]})")
            out[name] = None
    return out


def decode():
    hq, hkv, d, sk = 32, 8, 128, 32768
    q, k, v = bshd(1, 1, hq, d), bshd(1, sk, hkv, d), bshd(1, sk, hkv, d)
    nbytes = 2.0 * sk * hkv * d * 2 + 2.0 * hq * d * 2
    out = {}
    for name, be in BACKENDS:
        try:
            with sdpa_kernel(be):
                ms = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True),
                               warm=5, reps=100)
            out[name] = nbytes / (ms * 1e-3) / 1e9
        except Exception as e:
            # some backends refuse enable_gqa: give them the K/V heads expanded (their cost)
            try:
                ke = k.repeat_interleave(hq // hkv, dim=1)
                ve = v.repeat_interleave(hq // hkv, dim=1)
                with sdpa_kernel(be):
                    ms = median_ms(lambda: F.scaled_dot_product_attention(q, ke, ve),
                                   warm=5, reps=100)
                out[name] = nbytes / (ms * 1e-3) / 1e9
                print(f"  {name} decode: enable_gqa refused, timed with expanded K/V heads")
            except Exception as e2:
                print(f"  {name} decode: n/a ({str(e2).splitlines()[0][:80]})")
                out[name] = None
    return out


def copy_gbs():
    n = 1 << 29  # bf16 elements = 1 GiB
    src = torch.rand(n, device="cuda", dtype=torch.bfloat16)
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src), warm=3, reps=20)
    return 2.0 * n * 2 / (ms * 1e-3) / 1e9


def main():
    ours_csv, out_md = sys.argv[1], sys.argv[2]
    ours, device = {}, torch.cuda.get_device_name()
    for line in open(ours_csv):
        if line.startswith("#") or line.startswith("name,"):
            continue
        name, unit, value, ms = line.strip().split(",")
        ours[name] = float(value)

    def fmt(x):
        return "n/a" if x is None else f"{x:.0f}"

    rows = []
    for d, causal in [(128, False), (128, True), (64, False), (64, True), (256, False), (256, True)]:
        key = f"fwd bf16 d{d} s16384 {'causal' if causal else 'non-causal'}"
        t = fwd(d, 16384, causal)
        rows.append((f"bf16 fwd d{d}, s16384, {'causal' if causal else 'non-causal'}", "TFLOP/s",
                     ours.get(key), t["flash"], t["cudnn"]))
        print(rows[-1], flush=True)
    dec = decode()
    best = max([v for k, v in ours.items() if k.startswith("decode b1")] or [None])
    auto = [v for k, v in ours.items() if k.startswith("decode b1")]
    paged = [v for k, v in ours.items() if k.startswith("decode paged")]
    rows.append(("decode: 1 query, 32 q / 8 kv heads, d128, 32768 keys (auto splits)", "GB/s",
                 auto[0] if auto else None, dec["flash"], dec["cudnn"]))
    rows.append(("decode, best forced split count", "GB/s", best, None, None))
    rows.append(("decode, paged KV (64-key pages)", "GB/s", paged[0] if paged else None, None, None))
    cp = copy_gbs()
    rows.append(("device-to-device copy, 1 GiB (read + write)", "GB/s",
                 ours.get("copy d2d 1 GiB (read+write)"), cp, None))

    lines = [f"GPU: {device}; PyTorch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}; "
             "medians of CUDA-event timings, random bf16 inputs.", "",
             "| shape | unit | flashattn_cuda | PyTorch flash (FA2) | PyTorch cuDNN |",
             "|---|---|---|---|---|"]
    for name, unit, a, b, c in rows:
        lines.append(f"| {name} | {unit} | {fmt(a)} | {fmt(b)} | {fmt(c)} |")
    text = "\n".join(lines) + "\n"
    open(out_md, "w").write(text)
    print(text)


if __name__ == "__main__":
    main()
