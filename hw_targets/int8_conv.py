"""Exact integer convolutions of 0/1 spikes with 8-bit weights on the CPU's int8 units.

A Loihi synapse weight is an 8-bit mantissa times a power of two (``2 * mant << exp``), and a spike
is 0 or 1, so a layer's input current is an integer. oneDNN's quantised convolution
(``torch.ops.onednn.qconv2d_pointwise``: uint8 activations x int8 weights, int32 accumulation,
the x86 VNNI instructions where the CPU has them) computes it exactly, 2-5x faster than a float32
convolution on one core (ResNet-20's layer shapes, ``bench/speed.py``), and hands it back in
float32 already multiplied by the weight's power of two (exact while the sum stays below 2^24,
which the chip model checks per term before it asks for this).

Why a probe: oneDNN picks its kernel per CPU; on CPUs without VNNI some int8 paths may scale
weights to avoid 16-bit saturation, which would not be exact. :func:`int8_conv_exact` runs one
small convolution with extreme weights against float64 and the chip model only uses this path when
it is bit-exact (``PRIVSNN_CHIP_INT8=0`` turns it off).
"""

from __future__ import annotations

import os
from functools import lru_cache

import torch
import torch.nn.functional as F


class Int8Conv:
    """One convolution with weight ``mant * scale`` (``mant`` int8 values, ``scale`` a power of two)
    applied to 0/1 spikes, plus an optional per-channel integer ``bias``; returns float32
    channels-last currents."""

    def __init__(self, mant: torch.Tensor, scale: float, stride, padding, groups: int = 1,
                 bias: torch.Tensor | None = None):
        self.stride, self.padding, self.groups = [int(v) for v in stride], [int(v) for v in padding], int(groups)
        self.bias = None if bias is None else bias.to(torch.float32).contiguous()
        co = mant.shape[0]
        self.scales = torch.full((co,), float(scale), dtype=torch.float32)
        self.zero_points = torch.zeros(co, dtype=torch.int64)
        self.packed = torch.ops.onednn.qconv_prepack(mant.to(torch.int8).contiguous(), self.scales, 1.0, 0,
                                                     self.stride, self.padding, [1, 1], self.groups, None)

    def __call__(self, spikes: torch.Tensor) -> torch.Tensor:
        """``spikes``: (N, C, H, W) uint8 0/1 (channels-last is fastest)."""
        x = spikes.contiguous(memory_format=torch.channels_last)
        return torch.ops.onednn.qconv2d_pointwise(x, 1.0, 0, self.packed, self.scales, self.zero_points, self.bias,
                                                  self.stride, self.padding, [1, 1], self.groups, 1.0, 0,
                                                  torch.float32, "none", [], "")


@lru_cache(maxsize=1)
def int8_conv_exact() -> bool:
    """Whether this torch build and CPU give bit-exact int8 spike convolutions (probed once)."""
    if os.environ.get("PRIVSNN_CHIP_INT8", "1").strip() in ("0", "false", "no", "off"):
        return False
    try:
        gen = torch.Generator().manual_seed(0)
        mant = torch.randint(-128, 128, (32, 24, 3, 3), generator=gen)
        mant[0] = 127
        mant[1] = -128  # the extremes: a 16-bit-saturating kernel would get these wrong
        s = (torch.rand(8, 24, 9, 9, generator=gen) < 0.7).to(torch.uint8)
        s[0] = 1
        bias = torch.randint(-(1 << 19), 1 << 19, (32,), generator=gen).double()
        got = Int8Conv(mant, 4.0, (1, 1), (1, 1), bias=bias)(s)
        want = F.conv2d(s.double(), mant.double() * 4.0, bias, 1, 1)
        return got.dtype == torch.float32 and torch.equal(got.double(), want)
    except Exception:  # noqa: BLE001 -- any failure of the probe (op missing, other signature, CPU) means: float32
        return False
