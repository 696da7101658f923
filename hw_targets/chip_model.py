"""The integer chip model: Lava's ``fixed_pt`` LIF / Dense / Conv arithmetic on whole test sets.

Two implementations of one semantics:

* :func:`reference_fixed_simple`: the readable specification, step by step in int64/float64,
  written from Lava 0.10's bit-accurate models (``PyLifModelBitAcc``, ``PyDenseModelBitAcc``,
  the Conv model's ``signed_clamp``). Slow; the oracle of the tests.
* :func:`reference_fixed`: the same integers, fast. Why it is still exact: spikes are 0/1 and
  weights integers, so a convolution of spikes in float32 is exact whenever every partial sum is
  below 2^24 in magnitude, which holds when a term's largest per-neuron sum of |integer weights|
  is (checked once per term; float64 otherwise). Lava's 24-bit wrap-arounds are applied only where
  the same static bounds say they can trigger; the membrane is int32 where its bound fits, int64
  otherwise; 1x1 diagonal terms (relays, residual shortcuts) are per-channel products; the output
  readout, a linear map, is applied once to the summed spikes. Convolutions run channels-last,
  on the CPU's int8 units where that is exact (:mod:`.int8_conv`: the 8-bit weight mantissas times
  uint8 spikes, int32 sums), with the ``<< 6`` and a per-channel bias folded into them.

``tests/test_lava.py`` checks ``reference_fixed`` bit-exact against real Lava runs and against
``reference_fixed_simple``; ``privsnn simulate --engine reference`` runs it on whole test sets and
cross-checks a sample against Lava.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .fixed_point import DECAY_MAX, UV_MAX, FixedPlan, QTerm
from ..native import same_order
from .fused_lif import FusedLayerStep, fused_lif_available, per_neuron
from .int8_conv import Int8Conv, int8_conv_exact

F32_EXACT = 1 << 24  # integers below this add exactly in float32


# --------------------------------------------------------------------------------------------
# The specification (slow, int64/float64)
# --------------------------------------------------------------------------------------------

def _wrap24(x: torch.Tensor) -> torch.Tensor:
    """Lava's u wrap-around (``PyLifModelBitAcc``: > 2^23 wraps by 2^24)."""
    m = 1 << 23
    y = torch.where(x > m, x - 2 * m, x)
    return torch.where(y <= -m, x + 2 * m, y)


def _clamp24(x: torch.Tensor) -> torch.Tensor:
    """Lava Conv's ``signed_clamp(x, 24)`` (modular)."""
    base = 1 << 24
    return torch.remainder(x + base // 2, base) - base // 2


def _windowed(plan) -> bool:
    return any(layer.windowed for layer in plan.layers.values())


def _decay(x: torch.Tensor, d: int) -> torch.Tensor:
    """``sign(x) * ((|x| * (4096 - d)) >> 12)`` as in Lava's bit-accurate LIF."""
    return torch.sign(x) * torch.div(x.abs() * (4096 - d), 4096, rounding_mode="floor")


def _term_int(q: QTerm, s: torch.Tensor) -> torch.Tensor:
    """Integer a_out of one term for spikes ``s`` (N, *src_shape) as float64 0/1 (exact)."""
    t = q.term
    if t.kind == "conv":
        w = torch.from_numpy(q.int_weight).double()
        y = F.conv2d(s, w, None, t.stride, t.padding, 1, t.groups)
        return _clamp24(torch.round(y).to(torch.int64))
    w = torch.from_numpy(2 * q.mant).double()
    acc = torch.round(s.reshape(s.shape[0], -1) @ w.t()).to(torch.int64)
    return acc << q.exp


@torch.no_grad()
def reference_fixed_simple(fixed: FixedPlan, x: torch.Tensor, return_spikes: bool = False):
    """The integer semantics of Lava's ``fixed_pt`` models, written for reading: integer output
    sums (N, K) over T steps (bias included) and, optionally, spike counts per layer (N,)."""
    plan = fixed.plan
    if _windowed(plan):
        from .windowed_chip import reference_windowed

        return reference_windowed(fixed, x, return_spikes)
    T = plan.timesteps
    n = x.shape[0]
    host = plan.host_currents(x)
    state: dict[str, dict[str, torch.Tensor]] = {}
    for name, layer in plan.layers.items():
        ql = fixed.layers[name]
        if layer.host_current:
            bias = torch.from_numpy(fixed.quantize_host_current(name, host[name]))
        else:
            bias = torch.from_numpy(ql.bias_mant).unsqueeze(0).expand(n, *layer.shape)
        state[name] = {"v": torch.full((n, *layer.shape), ql.v0, dtype=torch.int64),
                       "bias": bias.to(torch.int64) << ql.bias_exp,
                       "s": torch.zeros((n, *layer.shape), dtype=torch.float64)}
    counts = {name: torch.zeros(n, dtype=torch.int64) for name in plan.layers}
    acc = torch.zeros(n, plan.output.size, dtype=torch.int64)
    for _ in range(T):
        for name, layer in plan.layers.items():
            ql = fixed.layers[name]
            st = state[name]
            a_in = torch.zeros((n, *layer.shape), dtype=torch.int64)
            for q in ql.terms:
                a_in = a_in + _term_int(q, state[q.term.src]["s"]).view(n, *layer.shape)
            u = _wrap24(a_in << 6)  # du = 4095: the current decays fully each step
            v = _decay(st["v"], ql.dv) + u + st["bias"]
            v = v.clamp(-UV_MAX, UV_MAX)
            s = v > (ql.vth << 6)
            if layer.reset == "subtract":
                v = torch.where(s, v - (ql.vth << 6), v)
            else:
                v = torch.where(s, torch.zeros_like(v), v)
            st["v"], st["s"] = v, s.double()
            counts[name] += s.view(n, -1).sum(1)
        for q in fixed.output.terms:
            acc += _term_int(q, state[q.term.src]["s"]).view(n, -1)
    acc += torch.from_numpy(fixed.out_bias_int).view(1, -1) * T
    return (acc, counts) if return_spikes else acc


# --------------------------------------------------------------------------------------------
# The fast model
# --------------------------------------------------------------------------------------------

@dataclass
class _FastTerm:
    src: str
    kind: str  # "conv" | "diag" | "dense"
    weight: torch.Tensor  # conv: (Co, Ci/g, kh, kw); diag: (C,); dense: (out, in) -- integers, float dtype
    stride: tuple
    padding: tuple
    groups: int
    bound: int  # max over output neurons of sum |integer weight| (a bound on |a_out| for 0/1 spikes)
    clamp: bool  # Lava Conv's 24-bit signed clamp can change the value
    int8: Int8Conv | None = None  # the same convolution on the CPU's int8 units (exact; see int8_conv)


def _fast_term(q: QTerm, int8: bool = False) -> _FastTerm:
    t = q.term
    w = torch.from_numpy(q.int_weight if t.kind == "conv" else (2 * q.mant.astype(np.int64)) << q.exp)
    bound = int(w.abs().flatten(1).sum(1).max()) if w.numel() else 0
    dtype = torch.float32 if bound < F32_EXACT else torch.float64
    if t.kind == "conv":
        co, ci, kh, kw = w.shape
        diagonal = (kh, kw) == (1, 1) and co == ci and t.groups == 1 and tuple(t.stride) == (1, 1) \
            and tuple(t.padding) == (0, 0) and torch.equal(w[:, :, 0, 0], torch.diag(torch.diagonal(w[:, :, 0, 0])))
        if diagonal:
            return _FastTerm(t.src, "diag", torch.diagonal(w[:, :, 0, 0]).to(dtype), (1, 1), (0, 0), 1, bound,
                             bound >= (1 << 23))
        # |a_out| <= bound < 2^24 (float32 chosen): the int8 units' result is exact
        fast = Int8Conv(torch.from_numpy(q.mant), 2.0 ** (q.exp + 1), t.stride, t.padding, t.groups) \
            if int8 and dtype == torch.float32 else None
        return _FastTerm(t.src, "conv", w.to(dtype).contiguous(memory_format=torch.channels_last), tuple(t.stride),
                         tuple(t.padding), t.groups, bound, bound >= (1 << 23), fast)
    return _FastTerm(t.src, "dense", w.to(dtype), (1, 1), (0, 0), 1, bound, False)


def _apply(term: _FastTerm, s: torch.Tensor, s_u8: torch.Tensor | None = None) -> torch.Tensor:
    """Exact a_out of one term (float32/float64 holding integers) for 0/1 spikes ``s`` (``s_u8``: the
    same spikes as uint8, for a term with an int8 convolution)."""
    if term.int8 is not None:
        return term.int8(s_u8 if s_u8 is not None else s.to(torch.uint8))
    s = s.to(term.weight.dtype)
    if term.kind == "conv":
        return F.conv2d(s, term.weight, None, term.stride, term.padding, 1, term.groups)
    if term.kind == "diag":
        if s.is_contiguous(memory_format=torch.channels_last):  # per-channel product on the (N, H, W, C) view
            return (s.permute(0, 2, 3, 1) * term.weight).permute(0, 3, 1, 2)
        return s * term.weight.view(1, -1, 1, 1)
    return s.reshape(s.shape[0], -1) @ term.weight.t()


def _memory_order_numpy(t: torch.Tensor) -> np.ndarray:
    """A numpy view of a contiguous or channels-last tensor, in its memory order (NHWC for the latter)."""
    if t.dim() == 4 and not t.is_contiguous():
        t = t.permute(0, 2, 3, 1)
    return t.numpy()


class ChipModel:
    """The fast integer model of one :class:`FixedPlan`; call :meth:`run` on batches of pixels.

    Membranes and currents are floats holding integers, which keeps each neuron update to a few
    in-place passes. float32 where exact: currents below 2^23 (no wrap-around), membranes clamped to
    24 bits (|v + u| < 2^24 is exact; a larger sum rounds but still clamps to the same bound), a
    decay of 0 or 4095 (a power-of-two division); float64 otherwise (far below 2^53), and int64 with
    Lava's wrap-arounds where the bounds say a wrap can happen. Convolutions of spikes run on the
    CPU's int8 units where that is exact (``int8``: None = where :func:`int8_conv_exact` says so);
    the neuron update of the layers without wrap-arounds runs as one fused pass (:mod:`.fused_lif`;
    ``fused``: None = where that kernel builds and passes its probe)."""

    def __init__(self, fixed: FixedPlan, int8: bool | None = None, fused: bool | None = None):
        self.fixed = fixed
        self.plan = fixed.plan
        # a windowed plan runs layer by layer (windowed_chip): none of the step-by-step machinery below
        self.windowed = _windowed(self.plan)
        if self.windowed:
            return
        int8 = int8_conv_exact() if int8 is None else bool(int8)
        self.terms = {name: [_fast_term(q, int8) for q in ql.terms] for name, ql in fixed.layers.items()}
        self.out_terms = [_fast_term(q) for q in fixed.output.terms]
        # layers whose spikes an int8 convolution reads (kept as uint8 too, converted once per step)
        self.int8_sources = {t.src for terms in self.terms.values() for t in terms if t.int8 is not None}
        if any(t.kind != "dense" for t in self.out_terms):
            raise NotImplementedError("the chip model reads out dense layers only (the plan's readout is dense)")
        self.exact_f32 = {}  # a_in summed in float32 is exact and needs no wrap-around
        for name, terms in self.terms.items():
            a_bound = sum(t.bound for t in terms)
            self.exact_f32[name] = (a_bound << 6) < (1 << 23) and a_bound < F32_EXACT and \
                all(t.weight.dtype == torch.float32 and not t.clamp for t in terms)
        # the membrane's float type (see the class docstring for why float32 is exact where chosen)
        self.v_dtype = {name: torch.float32 if self.exact_f32[name] and fixed.layers[name].dv in (0, DECAY_MAX)
                        else torch.float64 for name in self.terms}
        self.folded = {name: f for name in self.terms if (f := self._fold(name)) is not None}
        fused = fused_lif_available() if fused is None else bool(fused) and fused_lif_available()
        # the layers updated by the fused kernel: their first diagonal term (a relay's input or a
        # residual shortcut) is read by the kernel itself, the other terms summed into one current
        self.fused = {name: next((i for i, t in enumerate(terms) if t.kind == "diag"), None)
                      for name, terms in self.terms.items() if fused and self.exact_f32[name]}
        # the layers whose spikes something reads as float32 (a term not on the int8 units, the readout)
        self.float_sources = {t.src for terms in self.terms.values() for t in terms if t.int8 is None} \
            | {t.src for t in self.out_terms}

    def kernels(self) -> dict:
        """Which implementations run (for reports): the convolutions and the neuron update."""
        if self.windowed:
            return {"convolutions": "float64 (exact), once per layer on its T firing steps (windowed plan)",
                    "neuron_update": "torch passes, layer by layer (windowed plan)"}
        int8 = any(t.int8 is not None for terms in self.terms.values() for t in terms)
        return {"convolutions": "int8 (exact)" if int8 else "float32 (exact)",
                "neuron_update": f"fused C kernel ({len(self.fused)} of {len(self.terms)} layers)" if self.fused
                else "torch passes"}

    def _fold(self, name: str):
        """For a layer whose first term is an int8 convolution and whose bias is one value per channel:
        that convolution with the << 6 and the bias folded in (one pass gives u + bias), and the other
        terms with their weights times 64. Exact: |u| + |bias| < 2^23 + 2^20 < 2^24 (exact_f32)."""
        terms, layer, ql = self.terms[name], self.plan.layers[name], self.fixed.layers[name]
        if not (self.exact_f32[name] and terms and terms[0].int8 is not None and not layer.host_current
                and len(layer.shape) == 3 and ql.bias_mant is not None):
            return None
        b = (torch.from_numpy(ql.bias_mant).to(torch.int64) << ql.bias_exp).reshape(layer.shape[0], -1)
        if not torch.equal(b, b[:, :1].expand_as(b)):
            return None
        q, t = ql.terms[0], terms[0]
        conv = Int8Conv(torch.from_numpy(q.mant), 2.0 ** (q.exp + 1) * 64, t.stride, t.padding, t.groups,
                        bias=b[:, 0].to(torch.float32))
        return conv, [(u, u.weight * 64) for u in terms[1:]]

    @torch.no_grad()
    def run(self, x: torch.Tensor, return_spikes: bool = False):
        """Integer output sums (N, K) over T steps (bias included), as :func:`reference_fixed_simple`;
        with ``return_spikes`` also spike counts per layer (N,). A windowed plan runs
        :func:`~.windowed_chip.reference_windowed` (layer by layer)."""
        fixed, plan = self.fixed, self.plan
        if self.windowed:
            from .windowed_chip import reference_windowed

            return reference_windowed(fixed, x, return_spikes)
        T, n = plan.timesteps, x.shape[0]
        host = plan.host_currents(x)
        v, bias, spikes, th = {}, {}, {}, {}
        for name, layer in plan.layers.items():
            ql = fixed.layers[name]
            if layer.host_current:
                b = torch.from_numpy(fixed.quantize_host_current(name, host[name]))
            else:
                b = torch.from_numpy(ql.bias_mant).unsqueeze(0)
            shape = (n, *layer.shape)
            fmt = torch.channels_last if len(shape) == 4 else torch.contiguous_format
            vdt = self.v_dtype[name]
            if name not in self.folded:  # a folded layer's bias is added by its first convolution
                bias[name] = (b.to(torch.int64) << ql.bias_exp).to(vdt).contiguous(memory_format=fmt)
            v[name] = torch.full(shape, float(ql.v0), dtype=vdt).contiguous(memory_format=fmt)
            spikes[name] = torch.zeros(shape, dtype=torch.float32).contiguous(memory_format=fmt)
            th[name] = float(ql.vth << 6)
        # the torch passes' spike buffers (the fused kernel writes its layers' spikes itself)
        fired = {name: torch.empty_like(v[name]) for name in plan.layers if name not in self.fused}
        spikes_u8 = {name: spikes[name].to(torch.uint8) for name in self.int8_sources}
        # numpy views (memory order) for the float -> uint8 cast: numpy's is ~3x faster than torch 2.3's
        cast = {name: (_memory_order_numpy(fired[name]), _memory_order_numpy(spikes_u8[name]))
                for name in self.int8_sources if name not in self.fused}
        # spike counts: per image (int64) where the fused kernel counts them; per neuron elsewhere (exact
        # in float32 below 2^24 steps; a per-step sum over a channels-last tensor would copy it), reduced
        # per image at the end
        counts = {name: torch.zeros(n, dtype=torch.int64) if name in self.fused else torch.zeros_like(spikes[name])
                  for name in plan.layers} if return_spikes else None
        spike_sums = {t.src: torch.zeros_like(spikes[t.src], dtype=torch.float64) for t in self.out_terms}
        steps = self._fused_steps(v, bias, th, spikes, spikes_u8, counts)
        for _ in range(T):
            for name, layer in plan.layers.items():
                if name in steps:
                    self._fused_update(name, steps[name], spikes, spikes_u8, n)
                    continue
                vv, dv = v[name], fixed.layers[name].dv
                if dv:  # sign(v) * ((|v| * (4096 - dv)) >> 12), exact in float64 (a no-op product skipped)
                    if dv != DECAY_MAX:
                        vv.mul_(4096 - dv)
                    vv.div_(4096, rounding_mode="trunc")
                if name in self.folded:
                    vv.add_(self._input_folded(name, spikes, spikes_u8, n))  # u + bias
                else:
                    if self.exact_f32[name]:
                        vv.add_(self._current_f32(name, spikes, spikes_u8, n), alpha=64)
                    else:
                        vv.add_(_wrap24(self._current_int(name, spikes, spikes_u8, n) << 6))
                    vv.add_(bias[name])
                vv.clamp_(-UV_MAX, UV_MAX)
                s = torch.gt(vv, th[name], out=fired[name])  # float64 out: a fast same-dtype kernel
                if layer.reset == "subtract":
                    vv.sub_(s, alpha=th[name])
                else:
                    vv.sub_(vv * s)  # v * (1 - s), exactly
                spikes[name] = s if s.dtype == torch.float32 else s.to(torch.float32)
                if name in cast:
                    np.copyto(cast[name][1], cast[name][0], casting="unsafe")
                if counts is not None:
                    counts[name].add_(spikes[name])
            for src, total in spike_sums.items():
                total.add_(spikes[src])
        acc = torch.zeros(n, plan.output.size, dtype=torch.int64)
        for term in self.out_terms:  # a linear readout: W applied once to the summed spikes is exact
            acc += torch.round(spike_sums[term.src].reshape(n, -1) @ term.weight.double().t()).to(torch.int64)
        acc += torch.from_numpy(fixed.out_bias_int).view(1, -1) * T
        if not return_spikes:
            return acc
        return acc, {name: c if c.dim() == 1 else c.double().sum(dim=tuple(range(1, c.dim()))).to(torch.int64)
                     for name, c in counts.items()}

    def _fused_steps(self, v: dict, bias: dict, th: dict, spikes: dict, spikes_u8: dict, counts: dict | None) -> dict:
        """The fused kernel bound to each fused layer's membranes, bias and outputs for one run. A diagonal
        term's weights are laid out per neuron (times 64 in a folded layer, whose current is unscaled)."""
        steps = {}
        for name, diag in self.fused.items():
            folded = name in self.folded
            dw = None
            if diag is not None:
                w = self.terms[name][diag].weight
                dw = per_neuron((w * 64 if folded else w).to(torch.float32), v[name])
            steps[name] = FusedLayerStep(
                v[name], self.fixed.layers[name].dv, dw, 1.0 if folded else 64.0, None if folded else bias[name],
                UV_MAX, th[name], self.plan.layers[name].reset == "subtract",
                s_f32=spikes[name] if name in self.float_sources else None, s_u8=spikes_u8.get(name),
                counts=counts[name] if counts is not None else None)
        return steps

    def _fused_update(self, name: str, step: FusedLayerStep, spikes: dict, spikes_u8: dict, n: int) -> None:
        """One layer's timestep with the fused kernel: the input current without the diagonal term (which
        the kernel adds), then decay, input, bias, clamp, threshold, reset and spike outputs in one pass."""
        layer, diag = self.plan.layers[name], self.fused[name]
        terms = self.terms[name]
        if name in self.folded:
            conv, rest = self.folded[name]
            y = conv(spikes_u8[terms[0].src]).reshape(n, *layer.shape)
            for i, (t, _) in enumerate(rest, start=1):
                if i != diag:
                    y.add_(_apply(t, spikes[t.src], spikes_u8.get(t.src)).reshape(y.shape), alpha=64)
        else:
            y = None
            for i, t in enumerate(terms):
                if i != diag:
                    a = _apply(t, spikes[t.src], spikes_u8.get(t.src)).reshape(n, *layer.shape)
                    y = a if y is None else y.add_(a)
        if y is not None and not same_order(y, step.v):
            y = y.contiguous(memory_format=torch.contiguous_format if step.v.is_contiguous() else torch.channels_last)
        step(y, spikes[terms[diag].src] if diag is not None else None)

    def _current_f32(self, name: str, spikes: dict, spikes_u8: dict, n: int) -> torch.Tensor:
        """a_in of one layer, float32 holding exact integers."""
        total = None
        for t in self.terms[name]:
            y = _apply(t, spikes[t.src], spikes_u8.get(t.src)).reshape(n, *self.plan.layers[name].shape)
            total = y if total is None else total.add_(y)
        return total if total is not None else torch.zeros((n, *self.plan.layers[name].shape))

    def _input_folded(self, name: str, spikes: dict, spikes_u8: dict, n: int) -> torch.Tensor:
        """(a_in << 6) + bias of a folded layer (see :meth:`_fold`), float32 holding exact integers."""
        conv, rest = self.folded[name]
        first = self.terms[name][0]
        y = conv(spikes_u8[first.src]).reshape(n, *self.plan.layers[name].shape)
        for t, w64 in rest:
            s = spikes[t.src]
            if t.kind == "diag":  # y += s * w64 per channel, in one pass on the channels-last view
                if y.is_contiguous(memory_format=torch.channels_last) and s.is_contiguous(memory_format=torch.channels_last):
                    y.permute(0, 2, 3, 1).addcmul_(s.permute(0, 2, 3, 1), w64)
                else:
                    y.addcmul_(s, w64.view(1, -1, 1, 1))
            else:
                y.add_(_apply(t, s, spikes_u8.get(t.src)).reshape(y.shape), alpha=64)
        return y

    def _current_int(self, name: str, spikes: dict, spikes_u8: dict, n: int) -> torch.Tensor:
        """a_in of one layer in int64, with Lava Conv's 24-bit clamp per term where it can act."""
        total = torch.zeros((n, *self.plan.layers[name].shape), dtype=torch.int64)
        for t in self.terms[name]:
            y = torch.round(_apply(t, spikes[t.src], spikes_u8.get(t.src))).to(torch.int64).reshape(total.shape)
            total = total + (_clamp24(y) if t.clamp else y)
        return total


@torch.no_grad()
def reference_fixed(fixed: FixedPlan, x: torch.Tensor, return_spikes: bool = False):
    """Integer output sums (N, K) of Lava's ``fixed_pt`` run of ``fixed`` on pixels ``x`` (and spike
    counts per layer with ``return_spikes``): the fast :class:`ChipModel`, bit-exact with
    :func:`reference_fixed_simple` and with Lava."""
    return ChipModel(fixed).run(x, return_spikes)
