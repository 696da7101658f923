"""The chip model's neuron update as one fused, vectorised pass (a small C kernel, built on first use).

Why hand-written: after its convolutions moved to the int8 units (:mod:`.int8_conv`), the chip
model spent about 60% of its time in the neuron update's element-wise torch passes (decay, add the
current, add the bias, clamp, compare, reset, cast the spikes to uint8): 6-8 passes over every
membrane per layer and timestep. ``fused_lif.c`` does the same arithmetic, in the same order and
float type, in one pass that the compiler vectorises (tiles of 2048 neurons). How it is built and
loaded, and why not ``torch.compile`` or numba: :mod:`privatesnn.native`. Where it cannot be built,
or with ``PRIVSNN_FUSED=0``, the chip model keeps its torch passes (:func:`lif_step_torch`, same
results, about half the speed). A probe compares the two bit for bit once per process.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache
from pathlib import Path

import torch

from ..native import dense, load_kernel, same_order

SOURCE = Path(__file__).with_name("fused_lif.c")
_P, _I64, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int


@lru_cache(maxsize=1)
def _library():
    """The loaded kernel with its signatures set, or None."""
    lib = load_kernel(SOURCE)
    if lib is None:
        return None
    for fn, real in ((lib.lif_step_f32, ctypes.c_float), (lib.lif_step_f64, ctypes.c_double)):
        fn.restype = _INT
        fn.argtypes = [_P, _I64, _I64, _INT, real, _P, _P, _P, real, _P, _INT, real, real, _INT, _P, _P, _P]
    return lib


def _ptr(t: torch.Tensor | None):
    return None if t is None else t.data_ptr()


def per_neuron(w: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-channel vector ``w`` laid out as one image of ``like`` (1, *neurons), in its memory order
    (the diagonal weights :func:`lif_step` reads)."""
    shape = (1, *like.shape[1:])
    view = w.view(1, -1, 1, 1) if like.dim() == 4 else w.view(1, -1)
    fmt = torch.channels_last if like.dim() == 4 and not like.is_contiguous() else torch.contiguous_format
    return view.expand(shape).contiguous(memory_format=fmt)


def _check_layout(name: str, t: torch.Tensor, v: torch.Tensor, dtype: torch.dtype, images: tuple) -> None:
    if t.dtype != dtype or t.shape[0] not in images or not same_order(t[0], v[0]) or not dense(t):
        raise ValueError(f"fused LIF step: {name} is {t.dtype} {tuple(t.shape)} with strides {t.stride()}; expected "
                         f"{dtype} ({'/'.join(map(str, images))}, *{tuple(v.shape[1:])}) in the membrane's layout")


class FusedLayerStep:
    """The fused neuron update of one layer with its persistent arrays bound (and checked) once; call
    it each timestep with that step's current ``y`` and diagonal-term spikes ``ds`` (cheap checks
    only), so the per-call cost stays small at small batches.

    ``decay``: Lava's ``dv`` (0 none, 4095 full). ``v``: membranes (N, *neurons), updated in place;
    ``dw``: the diagonal term's weights laid out per neuron (:func:`per_neuron`); ``bias``: (1 or N,
    *neurons) in ``v``'s float type; ``s_f32``/``s_u8``: spike outputs like ``v``; ``counts``: int64
    (N,) spikes per image, added to. Every per-neuron array must share ``v``'s memory layout."""

    def __init__(self, v: torch.Tensor, decay: int, dw: torch.Tensor | None, alpha: float,
                 bias: torch.Tensor | None, vmax: float, th: float, subtract: bool,
                 s_f32: torch.Tensor | None = None, s_u8: torch.Tensor | None = None,
                 counts: torch.Tensor | None = None, lib=None):
        lib = lib or _library()
        if lib is None:
            raise RuntimeError("the fused LIF kernel is not available here (see fused_lif_available())")
        real = v.dtype
        n = v.shape[0]
        if real not in (torch.float32, torch.float64) or not dense(v):
            raise ValueError(f"fused LIF step: the membrane must be a dense float32/float64 tensor, not {real} "
                             f"with strides {v.stride()}")
        for name, t, dtype in (("s_f32", s_f32, torch.float32), ("s_u8", s_u8, torch.uint8)):
            if t is not None:
                _check_layout(name, t, v, dtype, (n,))
        if counts is not None and (counts.dtype != torch.int64 or counts.shape != (n,) or not counts.is_contiguous()):
            raise ValueError(f"fused LIF step: counts must be int64 ({n},) (spikes per image), not {counts.dtype} "
                             f"{tuple(counts.shape)}")
        if dw is not None:
            _check_layout("dw", dw, v, torch.float32, (1,))
        if bias is not None:
            _check_layout("bias", bias, v, real, (1, n))
        self.v, self.has_diagonal = v, dw is not None
        self._keep = (v, dw, bias, s_f32, s_u8, counts)  # the bound arrays stay alive with this object
        self._fn = lib.lif_step_f32 if real == torch.float32 else lib.lif_step_f64
        mode = 0 if decay == 0 else 1 if decay == 4095 else 2
        per_image = v[0].numel() if n else 1
        self._args = [v.data_ptr(), v.numel(), per_image, mode, float(4096 - decay), None, None, _ptr(dw),
                      float(alpha), _ptr(bias), int(bias is not None and bias.shape[0] == n and n > 1), float(vmax),
                      float(th), int(subtract), _ptr(s_f32), _ptr(s_u8), _ptr(counts)]
        self._shape, self._stride = v.shape, v.stride()
        self._describe = f"{v.numel()} neurons, {per_image} per image, decay {decay}"

    def _arg(self, name: str, t: torch.Tensor | None):
        if t is None:
            return None
        if t.dtype != torch.float32 or t.shape != self._shape or t.stride() != self._stride:
            if t.dtype != torch.float32 or not dense(t):
                raise ValueError(f"fused LIF step: {name} is {t.dtype} {tuple(t.shape)} with strides {t.stride()}; "
                                 f"expected float32 {tuple(self._shape)} in the membrane's layout")
            _check_layout(name, t, self.v, torch.float32, (self._shape[0],))
        return t.data_ptr()

    def __call__(self, y: torch.Tensor | None = None, ds: torch.Tensor | None = None) -> None:
        if (ds is None) == self.has_diagonal:
            raise ValueError("fused LIF step: a diagonal term needs both its spikes (ds) and its weights (dw)")
        args = self._args
        args[5], args[6] = self._arg("y", y), self._arg("ds", ds)
        if self._fn(*args) != 0:
            raise ValueError(f"fused LIF step: bad arguments ({self._describe})")


def lif_step(v: torch.Tensor, decay: int, y: torch.Tensor | None, ds: torch.Tensor | None,
             dw: torch.Tensor | None, alpha: float, bias: torch.Tensor | None, vmax: float, th: float,
             subtract: bool, s_f32: torch.Tensor | None = None, s_u8: torch.Tensor | None = None,
             counts: torch.Tensor | None = None) -> None:
    """One fused neuron update of membranes ``v`` (N, *neurons) in place (``fused_lif.c`` has the
    arithmetic; :class:`FusedLayerStep` the arguments). ``y``: float32 current; ``ds``: a diagonal
    term's float32 spikes."""
    FusedLayerStep(v, decay, dw, alpha, bias, vmax, th, subtract, s_f32, s_u8, counts)(y, ds)


def lif_step_torch(v: torch.Tensor, decay: int, y, ds, dw, alpha: float, bias, vmax: float, th: float,
                   subtract: bool, s_f32=None, s_u8=None, counts=None) -> None:
    """The same update as :func:`lif_step` in torch passes (the chip model's fallback, and the probe's
    reference)."""
    if decay:
        if decay != 4095:
            v.mul_(4096 - decay)
        v.div_(4096, rounding_mode="trunc")
    if y is not None or ds is not None:
        if ds is not None:
            d = ds * dw
            cur = d if y is None else y + d
        else:
            cur = y
        v.add_(cur, alpha=alpha)
    if bias is not None:
        v.add_(bias)
    v.clamp_(-vmax, vmax)
    s = v > th
    if subtract:
        v.sub_(s.to(v.dtype), alpha=th)
    else:
        v.sub_(v * s)
    if s_f32 is not None:
        s_f32.copy_(s)
    if s_u8 is not None:
        s_u8.copy_(s)
    if counts is not None:
        counts.add_(s.reshape(s.shape[0], -1).sum(1))


@lru_cache(maxsize=1)
def fused_lif_available() -> bool:
    """Whether the fused kernel builds here and equals the torch passes bit for bit (probed once)."""
    lib = _library()
    if lib is None:
        return False
    gen = torch.Generator().manual_seed(0)
    vmax, th = float((1 << 23) - 1), float(100 << 6)
    try:
        for real in (torch.float32, torch.float64):
            for decay, subtract, with_y, with_d, host in ((0, True, True, False, False), (0, True, True, True, False),
                                                          (4095, False, False, True, False), (0, True, False, False, True),
                                                          (1000, True, True, True, False), (0, False, True, True, True)):
                if real == torch.float32 and decay not in (0, 4095):
                    continue
                shape = (3, 5, 30, 30)  # 4500 neurons per image: more than one tile
                v0 = torch.randint(-(1 << 23), 1 << 23, shape, generator=gen).to(real)
                y = (torch.randint(-(1 << 22), 1 << 22, shape, generator=gen).float() if with_y else None)
                ds = (torch.rand(shape, generator=gen) < 0.5).float() if with_d else None
                dw = torch.randint(-(1 << 12), 1 << 12, (5,), generator=gen).float() if with_d else None
                dw = None if dw is None else per_neuron(dw, v0.contiguous(memory_format=torch.channels_last))
                bias = torch.randint(-(1 << 20), 1 << 20, (3 if host else 1, *shape[1:]), generator=gen).to(real)
                cl = torch.channels_last
                args = [None if t is None else t.contiguous(memory_format=cl) for t in (y, ds)]
                outs = []
                for step in (lif_step_torch, lif_step):
                    v = v0.clone().contiguous(memory_format=cl)
                    sf, su, cnt = (torch.zeros(shape).contiguous(memory_format=cl),
                                   torch.zeros(shape, dtype=torch.uint8).contiguous(memory_format=cl),
                                   torch.ones(shape[0], dtype=torch.int64))
                    step(v, decay, args[0], args[1], dw, 64.0, bias.contiguous(memory_format=cl), vmax, th, subtract,
                         sf, su, cnt)
                    outs.append((v, sf, su, cnt))
                if not all(torch.equal(a, b) for a, b in zip(*outs)):
                    return False
        return True
    except Exception:  # noqa: BLE001 -- a kernel that fails the probe in any way is not used
        return False
