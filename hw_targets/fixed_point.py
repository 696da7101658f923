"""Loihi-style fixed point of a deployment plan (:func:`quantize_plan`), following Lava's
``fixed_pt`` models and lava-dl netx.

* weights: 8-bit signed mantissa ``m`` in [-128, 127] with a per-term exponent ``e >= 0``;
  Lava's Dense stores ``2m`` (even integers in [-256, 254], its mixed-sign 8-bit format) with
  ``weight_exp = e``. (Lava 0.10's CPU Conv model ignores ``weight_exp``, so the Conv gets
  ``2m << e``: the same numbers.)
* per layer a scale ``A`` (integer units per float unit of current): the dominant term uses
  the full mantissa range, and ``A`` is raised by powers of two until the threshold
  mantissa ``vth = round(th * A)`` (17 bits; compared as ``vth << 6``) has >= 12 bits, unless
  the worst-case input current (every input spiking) would overflow the 24-bit current
  register (``|a_in| << 6 < 2^23``). The membrane then spans about +-2^17 / vth thresholds.
* bias: ``bias_mant = round(b * A)`` (13-bit signed) with ``bias_exp = 6`` (netx's choice), or, where
  a bias does not fit 13 bits at that scale, ``bias_exp = 6 + k`` and ``bias_mant = round(b * A / 2^k)``;
  host-fed layers receive their image current this way (the scale is chosen so the
  worst-case current fits); so do mixed layers (image part + biases per image; spikes through
  synapses): their scale is the weights' (so QAT's grid holds), and ``bias_exp`` grows instead
  until the worst-case host current fits the 13-bit mantissa.
* decays: ``du = 4095`` (the current decays fully each step: ``u = a_in``),
  ``dv = round((1 - leak) * 4096)`` clipped to 12 bits (IF: ``dv = 0``).
* the membrane starts at ``v0 = round(v_init * th * A) << 6`` (IF neurons that subtract:
  ``(floor(v_init * th * A) << 6) + 32``, half way between multiples of 64, which every increment is:
  the membrane never ties with a threshold) and resets to zero on a spike
  (Lava's LIF), or, for layers trained with reset by subtraction and ``reset="match"``, loses
  ``vth << 6`` (a programmable neuron; with ``reset="zero"`` the difference is measured).

The output layer's currents are read by a sink and summed over the T steps on the host
(plus ``T * round(b * A)``); argmax gives the prediction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from privatesnn.graph import Graph

from .plan import DeployPlan, Layer, Term, host_currents


W_MANT_MAX = 127  # 8-bit signed mantissa; Lava stores 2*m in [-256, 254]
VTH_MAX = (1 << 17) - 1
VTH_TARGET = 1 << 12
BIAS_MANT_MAX = (1 << 12) - 1  # 13-bit signed
BIAS_EXP = 6
UV_MAX = (1 << 23) - 1  # 24-bit u, v
A_IN_MAX = 1 << 17  # |a_in| << 6 must fit 24 bits
DECAY_MAX = 4095


@dataclass
class QTerm:
    term: Term
    mant: np.ndarray  # int, in [-128, 127]
    exp: int  # >= 0
    rel_error: float  # ||W_q - W|| / ||W||

    @property
    def int_weight(self) -> np.ndarray:
        """Effective integer weight in a_in units: ``2 m << e``."""
        return (2 * self.mant.astype(np.int64)) << self.exp

    @property
    def lava_weight(self) -> np.ndarray:
        """What Lava's Dense stores (with ``weight_exp = e``)."""
        return (2 * self.mant).astype(np.int32)


@dataclass
class QLayer:
    name: str
    scale: float  # A: integer a_in units per float unit of current
    vth: int
    dv: int
    du: int
    v0: int  # initial membrane, v units (already << 6)
    bias_mant: np.ndarray | None  # int, torch order; None for host-fed (per image) layers
    terms: list[QTerm]
    threshold_rel_error: float
    bias_rel_error: float
    bias_clipped: int
    leak_error: float
    input_bound: float  # worst-case |current| (float units) used to pick the scale
    bias_exp: int = BIAS_EXP  # larger for mixed layers whose host current needs the range


@dataclass
class FixedPlan:
    plan: DeployPlan
    layers: dict[str, QLayer]
    output: QLayer
    out_bias_int: np.ndarray  # added T times to the summed output currents

    def quantize_host_current(self, name: str, current: torch.Tensor) -> np.ndarray:
        """Per-image bias mantissas (N, *shape) for a host-fed or mixed layer, 13-bit clipped."""
        ql = self.layers[name]
        step = ql.scale / 2 ** (ql.bias_exp - BIAS_EXP)
        q = torch.round(current.double() * step).clamp(-BIAS_MANT_MAX - 1, BIAS_MANT_MAX)
        return q.to(torch.int64).numpy()

    def report(self) -> list[dict[str, Any]]:
        rows = []
        for ql in list(self.layers.values()) + [self.output]:
            layer = self.plan.layers.get(ql.name, self.plan.output)
            rows.append({
                "layer": ql.name, "kind": layer.kind, "scale": ql.scale, "vth_mant": ql.vth, "du": ql.du,
                "dv": ql.dv, "v_init_mant": ql.v0 >> 6 if ql.v0 >= 0 else -((-ql.v0) >> 6),
                "bias_exp": ql.bias_exp, "host_fed": layer.host_fed, "host_mixed": layer.host_mixed,
                "threshold_rel_error": ql.threshold_rel_error, "bias_rel_error": ql.bias_rel_error,
                "bias_clipped": ql.bias_clipped, "leak_abs_error": ql.leak_error,
                "weights": [{"term": q.term.name, "src": q.term.src, "weight_exp": q.exp,
                             "mant_min": int(q.mant.min()) if q.mant.size else 0,
                             "mant_max": int(q.mant.max()) if q.mant.size else 0,
                             "rel_l2_error": q.rel_error} for q in ql.terms],
            })
        return rows


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    n = float(b.norm())
    return float((a - b).norm()) / n if n > 0 else 0.0


def _fan_in_bound(layer: Layer) -> float:
    """max over neurons of sum |w| over its terms (all inputs spiking) + |bias|: a worst-case
    current in float units."""
    total = None
    for t in layer.terms:
        w = t.weight.abs()
        if t.kind == "conv":
            ones = torch.ones(1, t.src_shape[0], *t.src_shape[1:])
            s = F.conv2d(ones, w, None, t.stride, t.padding, 1, t.groups)[0]
        else:
            s = w.sum(1)
        total = s if total is None else total + s
    if total is None:
        total = torch.zeros(layer.shape)
    if layer.bias is not None:
        total = total + layer.bias.abs().view(total.shape)
    return float(total.max()) if total.numel() else 0.0


def _host_bound(graph: Graph, layer: Layer) -> float:
    """Worst-case |input current| of a host-fed layer over all pixel values in [0, 1]: the host
    path is affine in the normalised image, so |I| <= |W| applied to max|x_norm| plus |b|."""
    g_abs = graph.copy()
    for node in g_abs.weighted():
        node.weight = node.weight.abs()
        if node.bias is not None:
            node.bias = node.bias.abs()
    mean = torch.tensor(graph.meta["mean"], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(graph.meta["std"], dtype=torch.float32).view(1, -1, 1, 1)
    amax = torch.maximum(mean.abs(), (1 - mean).abs()) / std  # max |normalised pixel| per channel
    x = (amax * std + mean).expand(1, *graph.input.shape)  # "pixels" whose normalised value is amax
    cur = host_currents(g_abs, x)[layer.name]
    return float(cur.abs().max()) * 1.0001


def _choose_scale(threshold: float, wmax: float, fan_bound: float) -> float:
    """The layer scale A (see module docstring)."""
    a_cap = min(VTH_MAX / threshold, (A_IN_MAX - 1) / fan_bound if fan_bound > 0 else math.inf)
    if wmax <= 0:
        return min(VTH_TARGET / threshold, a_cap)
    a0 = 2 * W_MANT_MAX / wmax
    e = 0
    while threshold * a0 * 2 ** e < VTH_TARGET and a0 * 2 ** (e + 1) <= a_cap and e < 16:
        e += 1
    a = a0 * 2 ** e
    return min(a, a_cap)


def _quantize_term(t: Term, scale: float) -> QTerm:
    w = t.weight.double()
    wmax = float(w.abs().max()) if w.numel() else 0.0
    e = 0
    while wmax * scale / 2 ** (e + 1) > W_MANT_MAX + 0.5 and e < 24:
        e += 1
    mant = torch.round(w * scale / 2 ** (e + 1)).clamp(-W_MANT_MAX - 1, W_MANT_MAX)
    wq = mant * 2 ** (e + 1) / scale
    return QTerm(t, mant.to(torch.int64).numpy(), e, _rel(wq, w))


def quantize_plan(plan: DeployPlan) -> FixedPlan:
    """Loihi-style fixed point for every layer of ``plan`` (see module docstring)."""
    graph = plan.graph
    qlayers: dict[str, QLayer] = {}
    for layer in plan.layers.values():
        th = float(layer.threshold)
        bias_exp = BIAS_EXP
        if layer.host_fed:
            bound = _host_bound(graph, layer)
            scale = min(VTH_TARGET / th, BIAS_MANT_MAX / bound if bound > 0 else math.inf, VTH_MAX / th)
            qterms: list[QTerm] = []
        else:
            bound = _fan_in_bound(layer)
            wmax = max((float(t.weight.abs().max()) for t in layer.terms if t.weight.numel()), default=0.0)
            if layer.host_mixed:  # the host part arrives as a 13-bit bias: raise its exponent until it fits
                host = _host_bound(graph, layer)
                bound += host
                scale = _choose_scale(th, wmax, bound)
                while host * scale / 2 ** (bias_exp - BIAS_EXP) > BIAS_MANT_MAX and bias_exp < 16:
                    bias_exp += 1
            else:
                scale = _choose_scale(th, wmax, bound)
            qterms = [_quantize_term(t, scale) for t in layer.terms]
        vth = int(round(th * scale))
        vth = max(1, min(VTH_MAX, vth))
        dv_f = (1.0 - float(layer.leak)) * 4096
        dv = int(min(DECAY_MAX, max(0, round(dv_f))))
        leak_err = abs((4096 - dv) / 4096 - float(layer.leak))
        if layer.reset == "subtract" and dv == 0:
            # every increment of v (a_in << 6, bias << bias_exp, the threshold vth << 6) is a multiple of
            # 64: starting half way between two multiples, v never equals a threshold, so no comparison
            # is a tie that float arithmetic could break the other way (QAT snaps v_init to this value)
            v0 = (math.floor(float(layer.v_init) * th * scale) << 6) + 32
        else:
            v0 = int(round(float(layer.v_init) * th * scale)) << 6
        bias_mant, b_err, clipped = None, 0.0, 0
        if layer.bias is not None:
            # a bias beyond the 13-bit mantissa at the weights' scale gets a larger exponent (coarser
            # steps) rather than being clipped
            bmax = float(layer.bias.abs().max()) * scale
            while bmax / 2 ** (bias_exp - BIAS_EXP) > BIAS_MANT_MAX + 0.5 and bias_exp < 16:
                bias_exp += 1
            step = scale / 2 ** (bias_exp - BIAS_EXP)
            bq = torch.round(layer.bias.double() * step)
            clipped = int(((bq > BIAS_MANT_MAX) | (bq < -BIAS_MANT_MAX - 1)).sum())
            bq = bq.clamp(-BIAS_MANT_MAX - 1, BIAS_MANT_MAX)
            b_err = _rel(bq / step, layer.bias.double())
            bias_mant = bq.to(torch.int64).numpy()
        qlayers[layer.name] = QLayer(layer.name, scale, vth, dv, DECAY_MAX, v0, bias_mant, qterms,
                                     abs(vth / scale - th) / th, b_err, clipped, leak_err, bound, bias_exp)
    out = plan.output
    wmax = max((float(t.weight.abs().max()) for t in out.terms if t.weight.numel()), default=0.0)
    bound = _fan_in_bound(out)
    # no threshold here: use the bias magnitude (or the weights) as the precision reference
    ref = float(out.bias.abs().max()) if out.bias is not None and float(out.bias.abs().max()) > 0 else wmax
    scale = 2 * W_MANT_MAX / wmax if wmax > 0 else 1.0
    while ref * scale < VTH_TARGET and bound * scale * 2 < UV_MAX:  # the sink reads a_out sums (int32)
        scale *= 2
    qterms = [_quantize_term(t, scale) for t in out.terms]
    ob = torch.round(out.bias.double() * scale)
    qout = QLayer(out.name, scale, 0, DECAY_MAX, DECAY_MAX, 0, ob.to(torch.int64).numpy(), qterms, 0.0,
                  _rel(ob / scale, out.bias.double()), 0, 0.0, bound)
    return FixedPlan(plan, qlayers, qout, ob.to(torch.int64).numpy())
