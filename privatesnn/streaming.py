"""Fast inference of a :class:`~privatesnn.snn.SpikingNetwork`: time in chunks, every layer per chunk.

The training path (``SpikingNetwork.run``) goes layer by layer over all T steps: simple, and what
BPTT needs, but at batch 100 and T = 32 each layer's (T x N x C x H x W) activations are hundreds
of MB and fall out of the caches. Here the network is run over chunks of ``tc`` timesteps, all
layers per chunk, with each layer's membrane (and each spiking max pool's counts) carried from one
chunk to the next, so only (tc x N) activations are alive at a time. Convolutions use the
channels-last layout (oneDNN's fast path on CPUs; about 2x faster than NCHW for ResNet-20 sized
layers on one core). A direct-coded input and every synaptic layer that only depends on it are
computed once per batch, not once per chunk.

The arithmetic per neuron is that of ``SpikingNeuron`` (same operations, same order; one fused C
pass per layer and chunk where :mod:`.neuron_kernel` builds, the torch passes otherwise), and
``SpikingNetwork.run`` runs its convolutions channels-last on the CPU too (per-sample results do
not depend on the batch size, the layout does), so the spikes are identical:
``tests/test_fast_simulation.py`` checks every spike of every layer.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .graph import Add, Conv, Input, Linear, MaxPool, Neuron
from .layers import module_key
from .neuron_kernel import neuron_chunk
from .neurons import signed_steps

# Nodes whose output in a chunk is a newly allocated tensor (not a view of another node's output).
_FRESH = (Add, Conv, Linear, Neuron)

# Image-timesteps per convolution call: small enough that a ResNet-20 layer's chunk stays in the
# caches, large enough for oneDNN to run at full speed (`bench/chunk_size.py`, one core, ResNet-20,
# T = 32: on an AVX-512 EPYC 40-50 were among the fastest in two sweeps, 1680-1780 image-timesteps/s,
# while 250 ran 1410-1710; on an earlier AVX2 machine 128-384 were within noise and the whole T x N
# at batch 100 ran 2x slower).
DEFAULT_CHUNK_BATCH = 50


# Images per simulation on a CPU: `logits_over_time` splits larger direct-coded batches (one core,
# ResNet-20, T = 32, bench/speed.py: 626 image-timesteps/s at batch 25, 546 at batch 100).
SUB_BATCH = 25


def choose_chunk(batch: int, timesteps: int, chunk_batch: int = DEFAULT_CHUNK_BATCH) -> int:
    """Timesteps per chunk: about ``chunk_batch`` image-timesteps per convolution call."""
    return max(1, min(timesteps, chunk_batch // max(batch, 1)))


def cpu_channels_last(x: torch.Tensor) -> bool:
    """Whether convolutions run channels-last: on the CPU (oneDNN's fast path), not on GPUs."""
    return x.device.type == "cpu"


def _to_layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


def diagonal_scale(conv: torch.nn.Conv2d, node: Conv) -> torch.Tensor | None:
    """The per-channel factors (1, C, 1, 1) of a 1x1, stride-1, bias-free convolution whose weight is
    diagonal (the converter's residual shortcuts), else None. Multiplying by them gives the
    convolution's result exactly (the other terms are exact zeros)."""
    w = conv.weight
    if (w.shape[2:] != (1, 1) or w.shape[0] != w.shape[1] or conv.bias is not None or node.groups != 1
            or tuple(node.stride) != (1, 1) or tuple(node.padding) != (0, 0)):
        return None
    m = w.detach()[:, :, 0, 0]
    d = torch.diagonal(m)
    if not torch.equal(m, torch.diag(d)):
        return None
    return d.view(1, -1, 1, 1)


def _empty_steps(like: torch.Tensor, tc: int) -> torch.Tensor:
    """An uninitialised (tc, *like.shape) tensor whose every step has ``like``'s memory layout (mixed
    layouts make element-wise kernels fall back to slow strided loops)."""
    if like.dim() == 4 and not like.is_contiguous() and like.is_contiguous(memory_format=torch.channels_last):
        flat = torch.empty((tc * like.shape[0],) + tuple(like.shape[1:]), dtype=like.dtype, device=like.device,
                           memory_format=torch.channels_last)
        return flat.view((tc,) + tuple(like.shape))
    return torch.empty((tc,) + tuple(like.shape), dtype=like.dtype, device=like.device)


def _neuron_chunk(cell, currents: torch.Tensor, v: torch.Tensor, tc: int,
                  count: torch.Tensor | None = None) -> torch.Tensor:
    """``tc`` steps of the IF/LIF dynamics of ``cell`` in place on ``v`` (as SpikingNeuron's inference
    loop); ``currents`` is (tc or 1, N, ...). Returns spikes (tc, N, ...). One fused C pass where the
    kernel runs (:mod:`.neuron_kernel`, identical results), else the torch passes. Signed cells also
    carry their net spike ``count`` (in place)."""
    out = _empty_steps(v, tc)
    if cell.signed:
        return signed_steps(currents, v, count, cell.threshold, cell.leak, out)
    if neuron_chunk(cell, currents, v, tc, out):
        return out
    return _neuron_chunk_torch(cell, currents, v, tc, out)


def _neuron_chunk_torch(cell, currents: torch.Tensor, v: torch.Tensor, tc: int,
                        out: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`_neuron_chunk` in torch passes (the fallback, and the kernel's reference)."""
    th = cell.threshold
    out = _empty_steps(v, tc) if out is None else out
    for t in range(tc):
        if cell.leak != 1.0:
            v.mul_(cell.leak)
        v.add_(currents[t] if currents.shape[0] > 1 else currents[0])
        z = out[t]
        torch.gt(v, th, out=z)
        if cell.reset == "subtract":
            v.sub_(z, alpha=th)
        else:
            v.mul_(1.0 - z)
    return out


def _maxpool_chunk(pool, spikes: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """SpikingMaxPool over a chunk, with the accumulated counts carried in ``counts`` (in place)."""
    out = []
    for t in range(spikes.shape[0]):
        counts.add_(spikes[t])
        _, idx = pool.pool(counts + 0.5 * spikes[t])
        flat = spikes[t].flatten(2)
        out.append(flat.gather(2, idx.flatten(2)).view(idx.shape))
    return torch.stack(out)


class _Scaled:
    """A residual shortcut's output ``spikes * scale`` (per channel), not yet materialised: the Add
    that reads it adds it in one pass (``binary``: the source is spikes, so ``spikes * scale`` is
    exact and a fused multiply-add rounds as a multiply then an add would)."""

    def __init__(self, src: torch.Tensor, scale: torch.Tensor, binary: bool):
        self.src, self.scale, self.binary = src, scale, binary
        self.shape = src.shape

    def materialise(self) -> torch.Tensor:
        return _channels_view(self.src, lambda v, s: v * s, self.scale)


def _channels_view(x: torch.Tensor, op, scale: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``op(x, scale)`` with a per-channel ``scale`` (1, C, 1, 1) broadcast over (..., C, H, W); on
    channels-last data it runs on the (..., H, W, C) view, where the broadcast is contiguous (a
    (1, C, 1, 1) broadcast over channels-last tensors takes a slow strided loop, about 5x slower)."""
    if x.dim() >= 4:
        perm = tuple(range(x.dim() - 3)) + (x.dim() - 2, x.dim() - 1, x.dim() - 3)
        xv = x.permute(perm)
        if xv.is_contiguous() and (out is None or out.permute(perm).is_contiguous()):
            if out is not None:
                op(out.permute(perm), xv, scale.reshape(-1))
                return out
            return op(xv, scale.reshape(-1)).permute(tuple(perm.index(i) for i in range(x.dim())))
    if out is not None:
        op(out, x, scale)
        return out
    return op(x, scale)


def _add(node: Add, ins: list, free: list[bool]) -> torch.Tensor:
    """The sum of an Add's inputs, in the order the ``run`` path adds them (``a + b == b + a``
    exactly). With two inputs, one of them a fresh tensor nothing else reads (``free``), the sum is
    made in place in it; a ``_Scaled`` shortcut is added with one fused pass when it is exact."""
    if len(ins) == 2:
        for k in (0, 1):
            a, b = ins[k], ins[1 - k]
            if free[k] and not isinstance(a, _Scaled):
                if isinstance(b, _Scaled) and b.binary:
                    return _channels_view(b.src, lambda o, s, c: o.addcmul_(s, c), b.scale, out=a)
                return a.add_(b.materialise() if isinstance(b, _Scaled) else b)
    ins = [v.materialise() if isinstance(v, _Scaled) else v for v in ins]
    y = ins[0]
    for other in ins[1:]:
        y = y + other
    return y


def _value(v) -> torch.Tensor:
    return v.materialise() if isinstance(v, _Scaled) else v


def _release(node, vals: dict, remaining: dict, output: str) -> None:
    """Free activations that no later node reads."""
    for s in node.inputs:
        remaining[s] -= 1
        if remaining[s] == 0 and s != output:
            del vals[s]


@torch.no_grad()
@torch.no_grad()
def _run_layer_by_layer(net, x: torch.Tensor, T: int, observer) -> torch.Tensor:
    """A windowed neuron fires only once its whole window's input is in, so a network with windowed
    layers cannot be cut into chunks of time: run it layer by layer (``net.run``), one chunk of T steps."""
    saved = net.spike_observer
    if observer is not None:
        net.spike_observer = lambda name, spikes: observer(name, 0, spikes)
    try:
        out, _ = net.run(x, T)
    finally:
        net.spike_observer = saved
    return out


def run_streaming(net, x: torch.Tensor, timesteps: int, chunk: int | None = None, channels_last: bool | None = None,
                  observer: Callable[[str, int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Simulate ``net`` (a SpikingNetwork) for ``timesteps`` steps; returns the output layer's currents
    (T, N, K), or (1, N, K) when the output is constant over time.

    ``chunk``: timesteps per chunk (default :func:`choose_chunk`). ``channels_last`` (default: on the
    CPU) must match what ``net.run`` uses for its spikes to be identical. ``observer(name, t0, spikes)`` sees
    each neuron layer's spikes of the chunk starting at step ``t0``. A network with windowed neurons
    runs layer by layer in one chunk (their spikes depend on the whole window).
    """
    T = int(timesteps)
    if channels_last is None:
        channels_last = cpu_channels_last(x)
    if T <= 0:
        raise ValueError(f"timesteps must be > 0, got {T}")
    graph = net.graph
    if any(node.windowed for node in graph.neurons()):
        return _run_layer_by_layer(net, x, T, observer)
    n = x.shape[0]
    tc_default = int(chunk) if chunk else choose_chunk(n, T)
    if tc_default <= 0:
        raise ValueError(f"chunk must be > 0, got {chunk}")
    consumers = {node.name: len(graph.consumers(node.name)) for node in graph}
    weights = {node.name: _to_layout(net.synapses[module_key(node.name)].weight, channels_last)
               for node in graph if isinstance(node, Conv)}
    scales = {node.name: s for node in graph if isinstance(node, Conv)
              and (s := diagonal_scale(net.synapses[module_key(node.name)], node)) is not None}
    constant: dict[str, torch.Tensor] = {}  # nodes whose output does not change over time (direct input)
    state: dict[str, torch.Tensor] = {}  # membranes and max-pool counts, carried across chunks
    counts_of: dict[str, torch.Tensor] = {}  # signed neurons' net spike counts, carried across chunks
    outputs = []
    for t0 in range(0, T, tc_default):
        tc = min(tc_default, T - t0)
        remaining = dict(consumers)
        vals: dict[str, torch.Tensor] = {}
        for node in graph:
            if node.name in constant:
                y = constant[node.name]
            elif isinstance(node, Input):
                if node.encoding == "direct":
                    y = constant.setdefault(node.name, _to_layout(net.encode(x, 1)[0], channels_last).unsqueeze(0))
                else:
                    y = net.encode(x, tc)  # draws the same random numbers, step by step, as one T-step draw
            elif isinstance(node, Add):
                y = _add(node, [vals[s] for s in node.inputs], [remaining[s] == 1 and s not in constant
                                                                 and isinstance(graph[s], _FRESH) for s in node.inputs])
            elif isinstance(node, Neuron):
                cur = net.host_input(node.name, _value(vals[node.inputs[0]]))
                cell = net.neurons[module_key(node.name)]
                if node.name not in state:
                    state[node.name] = torch.full_like(cur[0], cell.v_init * cell.threshold)
                    if cell.signed:
                        counts_of[node.name] = torch.zeros_like(cur[0])
                y = _neuron_chunk(cell, cur, state[node.name], tc, counts_of.get(node.name))
                if observer is not None:
                    observer(node.name, t0, y)
            elif isinstance(node, MaxPool):
                src = _value(vals[node.inputs[0]])
                src = src.expand(tc, *src.shape[1:])
                counts = state.setdefault(node.name, torch.zeros_like(src[0]))
                y = _maxpool_chunk(net.maxpools[module_key(node.name)], src, counts)
            else:
                src = _value(vals[node.inputs[0]])
                if node.name in scales and src.shape[0] == tc:  # a shortcut that only rescales: no convolution;
                    y = _Scaled(src, scales[node.name], isinstance(graph[node.inputs[0]], Neuron))  # done by the Add
                    vals[node.name] = y
                    _release(node, vals, remaining, graph.output)
                    continue
                t, b = src.shape[:2]
                flat = _to_layout(src.reshape(t * b, *src.shape[2:]), channels_last)
                if isinstance(node, Conv):
                    out = F.conv2d(flat, weights[node.name], net.synapses[module_key(node.name)].bias,
                                   node.stride, node.padding, 1, node.groups)
                else:
                    out = net.synapses[module_key(node.name)](flat)
                y = out.reshape(t, b, *out.shape[1:])
                if all(s in constant for s in node.inputs):
                    constant[node.name] = y
            vals[node.name] = y
            _release(node, vals, remaining, graph.output)
        outputs.append(_value(vals[graph.output]))
        if graph.output in constant:
            return constant[graph.output]
    return torch.cat(outputs) if len(outputs) > 1 else outputs[0]

