"""Torch modules that run a layer graph: as the ANN it came from (ReLU) or as a spiking network.

Both read the same :class:`~privatesnn.graph.Graph`. Tensors inside the SNN are time-major,
``(T, N, ...)``; a direct-coded input is kept as ``(1, N, ...)`` until the first neurons, so the
first layer's constant current is computed once (it is still counted as T MAC passes by the
op counter).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
from norse.torch.functional.encode import signed_poisson_encode_step

from .graph import Add, Graph, Input, MaxPool, Neuron
from .layers import build_synapses, module_key, write_back
from .neurons import SpikingMaxPool, SpikingNeuron
from .streaming import SUB_BATCH, cpu_channels_last, run_streaming


def _normalize(graph: Graph, x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(graph.meta["mean"], dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(graph.meta["std"], dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


def static_forward(graph: Graph, x: torch.Tensor, synapses: nn.ModuleDict,
                   activation: Callable[[Neuron, torch.Tensor], torch.Tensor], clamp_rate_input: bool = False,
                   record: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """One pass through the graph with a static ``activation(neuron_node, current)`` per neuron
    layer (max pooling as ``F.max_pool2d``): the ANN readings of a spiking graph. A rate-coded input
    is divided by its ``input_scale`` (and clamped to [-1, 1] with ``clamp_rate_input``). With
    ``record``, each neuron layer's output is stored there."""
    vals: dict[str, torch.Tensor] = {}
    inp = graph.input
    for node in graph:
        if isinstance(node, Input):
            y = _normalize(graph, x)
            if inp.encoding == "rate":  # rate graphs carry input_scale in the first layer's weights
                y = y / inp.input_scale
                if clamp_rate_input:
                    y = y.clamp(-1.0, 1.0)
        elif isinstance(node, Add):
            y = sum(vals[s] for s in node.inputs)
        elif isinstance(node, Neuron):
            y = activation(node, vals[node.inputs[0]])
            if record is not None:
                record[node.name] = y
        elif isinstance(node, MaxPool):
            y = torch.nn.functional.max_pool2d(vals[node.inputs[0]], node.kernel, node.stride, node.padding)
        else:
            y = synapses[module_key(node.name)](vals[node.inputs[0]])
        vals[node.name] = y
    return vals[graph.output]


def relu_with_clip(node: Neuron, current: torch.Tensor) -> torch.Tensor:
    """The ANN activation a neuron layer stands for: ReLU, or ReLU clipped at ``node.clip`` (ReLU6)."""
    y = torch.relu(current)
    return y if node.clip is None else y.clamp(max=node.clip)


class GraphANN(nn.Module):
    """The graph as a ReLU network on pixels in [0, 1] (neurons -> ReLU, thresholds ignored).

    With ``record=True`` the forward also returns each neuron node's activation.
    """

    def __init__(self, graph: Graph):
        super().__init__()
        self.graph = graph
        self.synapses = build_synapses(graph)

    def forward(self, x: torch.Tensor, record: bool = False):
        acts: dict[str, torch.Tensor] = {}
        out = static_forward(self.graph, x, self.synapses, relu_with_clip, record=acts if record else None)
        return (out, acts) if record else out


class SpikingNetwork(nn.Module):
    """The graph as a spiking network (IF/LIF neurons with per-layer thresholds).

    ``forward(x, timesteps)`` takes pixels in [0, 1] of shape (N, C, H, W) and returns logits (N, K):
    the output layer's currents averaged over the ``timesteps`` steps. Synaptic layers are plain
    ``nn.Conv2d``/``nn.Linear`` modules called on time-merged batches ``(T*N, ...)`` (or ``(N, ...)``
    for a constant direct-coded input), so forward hooks on them see every synaptic event.

    Example: ``SpikingNetwork(graph)(torch.rand(5, 1, 8, 8), timesteps=10).shape == (5, 10)``.
    """

    def __init__(self, graph: Graph, timesteps: int = 16, surrogate: str = "triangle", alpha: float = 0.3):
        super().__init__()
        self.graph = graph
        self.timesteps = int(timesteps)
        self.synapses = build_synapses(graph)
        self.neurons = nn.ModuleDict({
            module_key(n.name): SpikingNeuron(n.threshold, n.leak, n.reset, n.v_init, surrogate, alpha, n.signed,
                                                n.windowed)
            for n in graph if isinstance(n, Neuron)})
        self.maxpools = nn.ModuleDict({module_key(n.name): SpikingMaxPool(n.kernel, n.stride, n.padding)
                                       for n in graph if isinstance(n, MaxPool)})
        self.spike_observer: Callable[[str, torch.Tensor], None] | None = None
        # the chip's grid for the input currents of host-fed layers (set by QAT's snapping; see
        # privatesnn/qat.py): {layer: [step, lowest, highest]} in mantissa units
        self.host_grid = {k: tuple(float(u) for u in v) for k, v in graph.meta.get("host_current_grid", {}).items()}

    def host_input(self, name: str, current: torch.Tensor) -> torch.Tensor:
        """``current`` into neuron layer ``name``, rounded to the chip's grid where the graph has one
        (a host-fed layer after `train --qat`: what the host writes into the chip's bias mantissa)."""
        grid = self.host_grid.get(name)
        if grid is None:
            return current
        step, lo, hi = grid
        rounded = torch.round(current.detach() * step).clamp_(lo, hi) / step
        # straight-through: the chip's values forward (exactly: x - x is 0), the current's gradient backward
        # (rounding has none, which would blind an inversion through the SNN to the image: masked
        # gradients, not privacy)
        return rounded + (current - current.detach())

    def encode(self, x: torch.Tensor, timesteps: int) -> torch.Tensor:
        """Input currents: direct (1, N, ...) analog, or rate-coded signed spikes (T, N, ...)."""
        inp = self.graph.input
        xn = _normalize(self.graph, x)
        if inp.encoding == "direct":
            return xn.unsqueeze(0)
        p = (xn / inp.input_scale).clamp(-1.0, 1.0)
        # Norse's signed Poisson step with f_max*dt = 1 gives sign(x) * [u < |x|] (the paper's coding).
        return torch.stack([signed_poisson_encode_step(p, f_max=1000.0, dt=1e-3) for _ in range(timesteps)])

    def forward(self, x: torch.Tensor, timesteps: int | None = None, return_spikes: bool = False,
                per_step: bool = False):
        """Logits: the output layer's currents averaged over T steps (``per_step``: each step's, (T, N, K),
        or (1, N, K) when they do not change over time)."""
        T = int(timesteps or self.timesteps)
        out, spikes = self.run(x, T, return_spikes)
        logits = out if per_step else out.mean(0) if out.shape[0] == T else out[0]
        return (logits, spikes) if return_spikes else logits

    @torch.no_grad()
    def logits_over_time(self, x: torch.Tensor, timesteps: list[int], chunk: int | None = None
                         ) -> dict[int, torch.Tensor]:
        """Logits at several T from one simulation of max(T) steps (the network is causal, so the
        first T steps of a longer run are exactly a T-step run; a graph with windowed neurons is not,
        and runs once per T layer by layer). Runs
        :func:`~privatesnn.streaming.run_streaming` (``chunk`` timesteps at a time; default chosen
        from the batch size); spikes are those of :meth:`run`. A direct-coded batch larger than
        :data:`~privatesnn.streaming.SUB_BATCH` runs in sub-batches of that size on a CPU (faster,
        same results: each image's arithmetic does not depend on the batch)."""
        if any(n.windowed for n in self.graph.neurons()):  # not causal: a T-step run is not the start of a longer one
            return {t: self.forward(x, t) for t in timesteps}
        T = max(timesteps)
        n = x.shape[0]
        sub = self.graph.input.encoding == "direct" and chunk is None and n > SUB_BATCH and cpu_channels_last(x)
        step = SUB_BATCH if sub else n
        out = torch.cat([run_streaming(self, x[i:i + step], T, chunk) for i in range(0, n, step)], dim=1)
        if out.shape[0] == 1:
            out = out.expand(T, *out.shape[1:])
        csum = out.cumsum(0)
        return {t: csum[t - 1] / t for t in timesteps}

    def rate_limit(self, x: torch.Tensor, levels: int | None = None) -> torch.Tensor:
        """Logits of the T -> infinity limit: every IF neuron (reset by subtraction) fires at rate
        ``clamp(I / threshold, 0, 1)`` for a constant current I. Differentiable, one pass; used to
        keep the long-T accuracy while training at low T. With ``levels`` L: the rate such a neuron
        reaches in L steps, ``clamp(floor(I L / threshold + v_init), 0, L) / L`` (the QCFS
        staircase; straight-through gradient)."""
        from .qcfs import qcfs

        def rate(node: Neuron, i: torch.Tensor) -> torch.Tensor:
            neuron = self.neurons[module_key(node.name)]
            if levels is None:
                return (i / neuron.threshold).clamp(0.0, 1.0)
            return qcfs(i, torch.as_tensor(neuron.threshold, dtype=i.dtype), levels, neuron.v_init)

        return static_forward(self.graph, x, self.synapses, rate, clamp_rate_input=True)

    def run(self, x: torch.Tensor, T: int, return_spikes: bool = False):
        """Simulate ``T`` steps; returns the output layer's currents (T or 1, N, K) and, if asked,
        every neuron layer's spikes."""
        if T <= 0:
            raise ValueError(f"timesteps must be > 0, got {T}")
        remaining = {n.name: len(self.graph.consumers(n.name)) for n in self.graph}
        vals: dict[str, torch.Tensor] = {}
        spikes: dict[str, torch.Tensor] = {}
        for node in self.graph:
            if isinstance(node, Input):
                y = self.encode(x, T)
            elif isinstance(node, Add):
                ins = [vals[s] for s in node.inputs]
                y = ins[0]
                for other in ins[1:]:
                    y = y + other  # (1, ...) broadcasts against (T, ...)
            elif isinstance(node, Neuron):
                y = self.neurons[module_key(node.name)](self.host_input(node.name, vals[node.inputs[0]]), T)
                if return_spikes:
                    spikes[node.name] = y
                if self.spike_observer is not None:
                    self.spike_observer(node.name, y)
            elif isinstance(node, MaxPool):
                src = vals[node.inputs[0]]
                y = self.maxpools[module_key(node.name)](src.expand(T, *src.shape[1:]))
            else:
                src = vals[node.inputs[0]]
                t, n = src.shape[:2]
                flat = src.reshape(t * n, *src.shape[2:])
                if flat.dim() == 4 and cpu_channels_last(flat):  # the layout of run_streaming: same spikes
                    flat = flat.contiguous(memory_format=torch.channels_last)
                out = self.synapses[module_key(node.name)](flat)
                y = out.reshape(t, n, *out.shape[1:])
            vals[node.name] = y
            for s in node.inputs:  # free activations nobody needs any more
                remaining[s] -= 1
                if remaining[s] == 0 and s != self.graph.output:
                    del vals[s]
        return vals[self.graph.output], spikes

    def set_neurons(self, **kwargs) -> None:
        """Change neuron settings (``reset``, ``leak``, ``v_init``, ``signed``, ``windowed``) on every layer and in
        the graph."""
        for node in self.graph.neurons():
            cell = self.neurons[module_key(node.name)]
            for k, v in kwargs.items():
                setattr(node, k, v)
                setattr(cell, k, v)

    def sync_graph(self) -> Graph:
        """Write the current weights, thresholds and initial membranes back into ``self.graph`` and
        return it."""
        write_back(self.graph, self.synapses)
        for node in self.graph.neurons():
            cell = self.neurons[module_key(node.name)]
            cell.refresh()
            node.threshold, node.v_init = float(cell.threshold), float(cell.v_init)
        return self.graph
