"""The float SNN's neuron update over a chunk of timesteps as one fused C pass (``neuron_kernel.c``).

``streaming._neuron_chunk`` spends three or four element-wise torch passes per layer and step (leak,
add the current, compare, reset); the kernel does the same float32 operations in the same order in
one pass per step, over tiles of neurons that stay in the L1 cache across the chunk's steps, so the
spikes are identical (probed once per process against the torch passes; tests compare every spike).
Building and loading: :mod:`privatesnn.native` (``PRIVSNN_FUSED=0`` turns it off); where it is not
available, or a tensor is not a dense float32 CPU tensor in the membrane's layout, the torch passes
run.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache
from pathlib import Path

import torch

from .native import dense, load_kernel, same_order

SOURCE = Path(__file__).with_name("neuron_kernel.c")


@lru_cache(maxsize=1)
def _library():
    lib = load_kernel(SOURCE)
    if lib is None:
        return None
    p, i64, i32, f32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_float
    lib.if_chunk_f32.restype = i32
    lib.if_chunk_f32.argtypes = [p, p, i64, i64, i64, f32, i32, f32, i32, p]
    return lib


def _step_blocks(t: torch.Tensor, v: torch.Tensor) -> bool:
    """``t`` (steps, *v.shape): every step laid out like ``v``, the steps one after the other."""
    return t.dtype == torch.float32 and t.device.type == "cpu" and same_order(t[0], v) \
        and (t.shape[0] == 1 or t.stride(0) == v.numel())


def neuron_chunk(cell, currents: torch.Tensor, v: torch.Tensor, tc: int, out: torch.Tensor) -> bool:
    """``tc`` steps of ``cell``'s IF/LIF dynamics on ``v`` (in place), spikes into ``out`` (tc, *v.shape),
    by the kernel. Returns False, touching nothing, where the kernel cannot run these tensors."""
    if not fused_neurons_available() or v.dtype != torch.float32 or v.device.type != "cpu" or not dense(v) \
            or v.requires_grad or currents.requires_grad or cell.reset not in ("subtract", "zero") or cell.signed or cell.windowed \
            or not _step_blocks(currents, v) or not _step_blocks(out, v) or out.shape[0] < tc \
            or currents.shape[0] != 1 and currents.shape[0] < tc:
        return False
    _run(cell, currents, v, tc, out)
    return True


def _run(cell, currents: torch.Tensor, v: torch.Tensor, tc: int, out: torch.Tensor) -> None:
    rc = _library().if_chunk_f32(v.data_ptr(), currents.data_ptr(), currents.shape[0], v.numel(), tc,
                                 float(cell.leak), int(cell.leak != 1.0), float(cell.threshold),
                                 int(cell.reset == "subtract"), out.data_ptr())
    if rc != 0:
        raise ValueError(f"fused neuron kernel: bad arguments ({v.numel()} neurons, {tc} steps)")


@lru_cache(maxsize=1)
def fused_neurons_available() -> bool:
    """Whether the kernel builds here and gives the torch passes' spikes and membranes bit for bit."""
    if _library() is None:
        return False
    from .neurons import SpikingNeuron
    from .streaming import _empty_steps, _neuron_chunk_torch

    gen = torch.Generator().manual_seed(0)
    try:
        for leak, reset, steps in ((1.0, "subtract", 3), (0.9, "subtract", 1), (1.0, "zero", 3), (0.95, "zero", 3)):
            cell = SpikingNeuron(0.7318, leak, reset)  # a threshold that float32 cannot hold exactly
            shape = (3, 16, 20, 20)  # more neurons than one tile
            v0 = (torch.rand(shape, generator=gen) * 1.5).contiguous(memory_format=torch.channels_last)
            cur = (torch.randn((steps, *shape), generator=gen) * 0.5)
            cur = torch.stack([c.contiguous(memory_format=torch.channels_last) for c in cur])
            cur = _empty_steps(v0, steps).copy_(cur)
            a, b = v0.clone(), v0.clone()
            want = _neuron_chunk_torch(cell, cur, a, 3)
            got = _empty_steps(b, 3)
            _run(cell, cur, b, 3, got)
            if not (torch.equal(a, b) and torch.equal(want, got)):
                return False
        return True
    except Exception:  # noqa: BLE001 -- a kernel that fails its probe in any way is not used
        return False

