"""The integer chip model of a *windowed* deployment plan (every layer integrates its whole window,
then fires; see :mod:`.plan`), with Lava's ``fixed_pt`` arithmetic.

A windowed layer's spikes depend only on the sum of what reached it before its firing window, so
the model runs layer by layer, not step by step: each synaptic term is applied once to its source's
T firing steps (batched as T x N images), the currents are added to the membrane at the steps they
reach it (with Lava's per-step 24-bit wrap of ``a_in << 6`` and clamp of ``v``), the bias over the
layer's integration window, and then the layer fires for T steps, reset by subtraction. The same
integers as Lava's run of the plan (``tests/test_lava.py`` checks it bit-exact against Lava).
"""

from __future__ import annotations

import torch

from .chip_model import _decay, _term_int, _wrap24
from .fixed_point import UV_MAX, FixedPlan


@torch.no_grad()
def reference_windowed(fixed: FixedPlan, x: torch.Tensor, return_spikes: bool = False):
    """Integer output sums (N, K) over the readout's T steps (bias included) of a windowed plan on
    pixels ``x``; with ``return_spikes`` also spike counts per layer (N,)."""
    plan = fixed.plan
    T, n = plan.timesteps, x.shape[0]
    host = plan.host_currents(x)
    fired: dict[str, torch.Tensor] = {}  # layer -> spikes of its T firing steps, (T, N, *shape) float64 0/1
    counts: dict[str, torch.Tensor] = {}
    for name, layer in plan.layers.items():
        if not layer.windowed:
            raise ValueError(f"layer {name!r} of this plan is not windowed")
        ql = fixed.layers[name]
        if layer.host_current:
            b = torch.from_numpy(fixed.quantize_host_current(name, host[name])).to(torch.int64)
        else:
            b = torch.from_numpy(ql.bias_mant).to(torch.int64).unsqueeze(0)
        bias = b << ql.bias_exp
        arriving: dict[int, torch.Tensor] = {}  # step of the image period -> a_in (N, *shape), int64
        for q in ql.terms:
            src = plan.layers[q.term.src]
            s = fired[q.term.src]
            y = _term_int(q, s.reshape(T * n, *src.shape)).view(T, n, *layer.shape)
            first = src.lag + T + 1  # a spike of step k reaches the next layer at step k + 1
            for j in range(T):
                arriving[first + j] = arriving[first + j] + y[j] if first + j in arriving else y[j]
        window = range(layer.lag, layer.lag + T)
        if arriving and max(arriving) >= layer.lag + T:
            raise ValueError(f"layer {name!r}: input arrives in its firing window (plan lags are inconsistent)")
        v = torch.full((n, *layer.shape), int(ql.v0), dtype=torch.int64)
        for k in sorted(set(arriving) | set(window)):  # other steps leave v as it is (IF: dv = 0)
            v = _decay(v, ql.dv)
            if k in arriving:
                v = v + _wrap24(arriving[k] << 6)
            if k in window:
                v = v + bias
            v = v.clamp(-UV_MAX, UV_MAX)
        th = int(ql.vth) << 6
        steps = []
        for _ in range(T):
            s = v > th
            v = torch.where(s, v - th, v)
            steps.append(s)
        fired[name] = torch.stack(steps).double()
        counts[name] = fired[name].reshape(T, n, -1).sum((0, 2)).to(torch.int64)
    acc = torch.zeros(n, plan.output.size, dtype=torch.int64)
    for q in fixed.output.terms:
        src = plan.layers[q.term.src]
        s = fired[q.term.src]
        acc += _term_int(q, s.reshape(T * n, *src.shape)).view(T, n, -1).sum(0)
    acc += torch.from_numpy(fixed.out_bias_int).view(1, -1) * T
    return (acc, counts) if return_spikes else acc
