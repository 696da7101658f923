"""Can a convolution that knows its input is binary (spikes) beat oneDNN's dense one on a CPU?

Probe behind the simulation-speed note in the README: privsnn's SNN spends ~73% of its time in
dense convolutions, so beating SpikingJelly by 2x needs cheaper convolutions, not a cheaper neuron
loop. This measures one torch-level candidate against the dense channels-last convolution for the
ResNet-20 layer shapes (256 image-timesteps per call, ~10% spikes): the **lookup-table
convolution**, which packs each group of b input channels' spikes into a b-bit code, precomputes
every group's 2^b partial sums of the weights once, and sums one table row per (kernel offset,
group) with ``F.embedding_bag`` (8x fewer additions than multiply-adds at b = 8); and, when numba
is installed (the ``bench`` extra), a compiled **event-driven convolution**: per input pixel the list
of channels that spiked, then per output pixel the weight rows of those channels summed over the 3x3
window (additions only, ~10% of the dense work). Also the **int8 convolution** the chip model uses
(``hw_targets/int8_conv.py``: oneDNN's quantised convolution, uint8 spikes x int8 weights, exact
integer sums) on 8-bit weights, where this CPU and torch build make it exact.
Not a test; writes bench/results/binary_conv.json.

    python bench/binary_conv.py --threads 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import set_threads, write_results  # noqa: E402

# (in channels, out channels, input size, stride): ResNet-20's convolutions on spikes
SHAPES = [(16, 16, 32, 1), (16, 32, 32, 2), (32, 32, 16, 1), (32, 64, 16, 2), (64, 64, 8, 1)]


def lookup_table(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """(kh*kw*groups*2^bits, Co): row (k, g, p) = the sum of the weights of offset k, group g whose bit is set in p."""
    co, ci, kh, kw = weight.shape
    patterns = ((torch.arange(2 ** bits)[:, None] >> torch.arange(bits)) & 1).float()
    w = weight.permute(2, 3, 1, 0).reshape(kh * kw, ci // bits, bits, co)
    return torch.einsum("pb,kgbc->kgpc", patterns, w).reshape(-1, co).contiguous()


def lut_conv(x: torch.Tensor, table: torch.Tensor, kernel: int, stride: int, pad: int, bits: int) -> torch.Tensor:
    """A binary (N, C, H, W) channels-last input convolved through ``table`` (see lookup_table)."""
    n, c, h, w = x.shape
    g = c // bits
    codes = (x.permute(0, 2, 3, 1).reshape(n, h, w, g, bits) @ (2.0 ** torch.arange(bits))).long()
    codes = F.pad(codes.permute(0, 3, 1, 2), (pad, pad, pad, pad)).permute(0, 2, 3, 1)  # code 0: no spike
    ho, wo = (h + 2 * pad - kernel) // stride + 1, (w + 2 * pad - kernel) // stride + 1
    parts = []
    for k in range(kernel * kernel):
        i, j = divmod(k, kernel)
        window = codes[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
        parts.append(window + (k * g + torch.arange(g)) * 2 ** bits)
    idx = torch.stack(parts, dim=3).reshape(-1, kernel * kernel * g)
    return F.embedding_bag(idx, table, mode="sum").view(n, ho, wo, -1).permute(0, 3, 1, 2)


def numba_event_conv():
    """The compiled event-driven convolution, or None without numba (why hand-written: no library
    offers a CPU convolution over binary event lists; this measures whether one would pay)."""
    try:
        import numba
        import numpy as np
    except ImportError:
        return None

    @numba.njit(cache=False, fastmath=True)
    def events(s):  # (P, C) uint8 spikes -> per-pixel list of active channels, and their counts
        p_all, c_all = s.shape
        idx = np.empty((p_all, c_all), np.int32)
        cnt = np.zeros(p_all, np.int32)
        for p in range(p_all):
            k = 0
            for c in range(c_all):
                idx[p, k] = c
                k += s[p, c]
            cnt[p] = k
        return idx, cnt

    @numba.njit(cache=False, fastmath=True)
    def gather(idx, cnt, wf, out, n, h, w, cin, stride, pad):
        cout = wf.shape[1]
        ho_all, wo_all = out.shape[1], out.shape[2]
        of = out.reshape(n * ho_all * wo_all, cout)
        acc = np.empty(cout, np.float32)
        q = 0
        for b in range(n):
            for ho in range(ho_all):
                for wo in range(wo_all):
                    acc[:] = 0.0
                    for kh in range(3):
                        y = ho * stride - pad + kh
                        if y < 0 or y >= h:
                            continue
                        for kw in range(3):
                            x = wo * stride - pad + kw
                            if x < 0 or x >= w:
                                continue
                            p = (b * h + y) * w + x
                            base = (kh * 3 + kw) * cin
                            for j in range(cnt[p]):
                                row = wf[base + idx[p, j]]
                                for co in range(cout):
                                    acc[co] += row[co]
                    for co in range(cout):
                        of[q, co] = acc[co]
                    q += 1

    def conv(x: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
        n, c, h, w = x.shape
        s = x.permute(0, 2, 3, 1).reshape(-1, c).to(torch.uint8).numpy()
        wf = weight.permute(2, 3, 1, 0).reshape(-1, weight.shape[0]).contiguous().numpy()
        ho, wo = (h + 2 - 3) // stride + 1, (w + 2 - 3) // stride + 1
        out = np.empty((n, ho, wo, weight.shape[0]), np.float32)
        idx, cnt = events(s)
        gather(idx, cnt, wf, out, n, h, w, c, stride, 1)
        return torch.from_numpy(out).permute(0, 3, 1, 2)

    return conv


def seconds(fn, repeats: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=256, help="image-timesteps per call")
    p.add_argument("--rate", type=float, default=0.1, help="spike density of the input")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    set_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    event_conv = numba_event_conv()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from privatesnn.hw_targets.int8_conv import Int8Conv, int8_conv_exact

    int8 = int8_conv_exact()
    print(f"{'layer':<22}{'dense ms':>10}{'LUT b=4 ms':>12}{'LUT b=8 ms':>12}{'events ms':>11}{'best LUT':>10}"
          f"{'events':>8}{'max |diff|':>12}")
    for ci, co, size, stride in SHAPES:
        x = (torch.rand(args.batch, ci, size, size) < args.rate).float().contiguous(memory_format=torch.channels_last)
        w = torch.randn(co, ci, 3, 3) * 0.1
        wc = w.contiguous(memory_format=torch.channels_last)
        dense = seconds(lambda: F.conv2d(x, wc, None, stride, 1), args.repeats)
        ref = F.conv2d(x, wc, None, stride, 1)
        row = {"in": ci, "out": co, "size": size, "stride": stride, "dense_s": dense}
        for bits in (4, 8):
            table = lookup_table(w, bits)
            row[f"lut{bits}_s"] = seconds(lambda: lut_conv(x, table, 3, stride, 1, bits), args.repeats)
            row[f"lut{bits}_max_abs_diff"] = float((lut_conv(x, table, 3, stride, 1, bits) - ref).abs().max())
        row["best_speedup"] = dense / min(row["lut4_s"], row["lut8_s"])
        if event_conv is not None:
            event_conv(x[:2], w, stride)  # compile
            row["events_s"] = seconds(lambda: event_conv(x, w, stride), args.repeats)  # spike lists included
            row["events_max_abs_diff"] = float((event_conv(x, w, stride) - ref).abs().max())
            row["events_speedup"] = dense / row["events_s"]
        if int8:  # 8-bit mantissas times a power of two: the chip model's weights
            mant = torch.randint(-128, 128, (co, ci, 3, 3))
            wq = (mant.float() / 64).contiguous(memory_format=torch.channels_last)
            conv8 = Int8Conv(mant, 1 / 64, (stride, stride), (1, 1))
            x8 = x.to(torch.uint8)
            row["dense_8bit_weights_s"] = seconds(lambda: F.conv2d(x, wq, None, stride, 1), args.repeats)
            row["int8_s"] = seconds(lambda: conv8(x8), args.repeats)
            row["int8_exact"] = bool(torch.equal(conv8(x8), F.conv2d(x, wq, None, stride, 1)))
            row["int8_speedup"] = row["dense_8bit_weights_s"] / row["int8_s"]
        rows.append(row)
        ev = (f"{1e3 * row['events_s']:>11.1f}", f"{row['events_speedup']:>7.2f}x") if event_conv else (f"{'-':>11}", f"{'-':>8}")
        print(f"{ci}->{co} {size}x{size} s{stride}".ljust(22) + f"{1e3 * dense:>10.1f}{1e3 * row['lut4_s']:>12.1f}"
              f"{1e3 * row['lut8_s']:>12.1f}{ev[0]}{row['best_speedup']:>9.2f}x{ev[1]}{row['lut8_max_abs_diff']:>12.1e}"
              + (f"   int8 {1e3 * row['int8_s']:.1f} ms ({row['int8_speedup']:.2f}x, exact {row['int8_exact']})"
                 if int8 else ""))
    import importlib.metadata as md

    try:
        numba_version = md.version("numba")
    except md.PackageNotFoundError:
        numba_version = None
    write_results("binary_conv.json", {"command": " ".join(["bench/binary_conv.py", *sys.argv[1:]]),
                                       "threads": args.threads, "batch": args.batch, "rate": args.rate,
                                       "torch": torch.__version__, "numba": numba_version, "int8_exact_on_this_cpu": int8,
                                       "rows": rows})


if __name__ == "__main__":
    main()
