"""Quantisation-aware training (QAT) for Loihi-style 8-bit weights.

The deployment quantiser (``privatesnn.hw_targets.loihi.quantize_plan``) gives every on-chip neuron layer one
scale: all weight tensors feeding it (several for a residual layer, including identity shortcuts of
weight 1 and average pooling folded into a weight as ``W / k^2``) share the grid
``step = max over the layer's terms of max|W_term| / 127`` (8-bit mantissa, shared exponent).
Layers the host computes (no neuron upstream: the direct-coded input layer) are not quantised.
Training with exactly that grid in the forward pass (straight-through gradient) makes the exported
integer weights equal the trained ones, so what Lava runs is what was trained. Uses
``torch.nn.utils.parametrize``; the grid is recomputed from the current weights at every step.
(When a layer's worst-case current would overflow the chip's 24-bit current register, the
exporter coarsens the scale further; QAT does not model that rare case.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from .graph import Graph
from .layers import module_key

W_MANT_MAX = 127


@dataclass
class WeightGroup:
    """The weight tensors that share one on-chip scale (one deployment layer)."""

    layer: str
    members: dict[str, float] = field(default_factory=dict)  # graph node -> max|term| / max|node weight|
    constant_max: float = 0.0  # max|w| of fixed terms that are not graph nodes (identity shortcuts, relays)


def weight_groups(graph: Graph) -> list[WeightGroup]:
    """Deployment layers of ``graph`` (from the Lava plan) with the graph nodes feeding each."""
    from privatesnn.hw_targets.loihi import build_plan  # the exporter's own plan: one definition of "layer"

    plan = build_plan(graph, 1)
    groups = []
    for layer in [*plan.layers.values(), plan.output]:
        if layer.host_fed or not layer.terms:
            continue
        g = WeightGroup(layer.name)
        for t in layer.terms:
            tmax = float(t.weight.abs().max()) if t.weight.numel() else 0.0
            node = graph.nodes.get(t.name)
            nmax = float(node.weight.abs().max()) if node is not None and node.weight.numel() else 0.0
            if node is None or nmax == 0:
                g.constant_max = max(g.constant_max, tmax)
            else:
                g.members[t.name] = tmax / nmax
        if g.members:
            groups.append(g)
    return groups


class GroupFakeQuant(nn.Module):
    """``W -> round(W / s) * s`` on the layer's shared grid; identity gradient (straight-through).

    ``s = max(constant_max, max_i ratio_i * max|W_i|) / 127 / ratio_self`` in this tensor's units.
    """

    def __init__(self, group: WeightGroup, name: str, raw_weights: dict[str, callable]):
        super().__init__()
        self.group, self.name, self.raw_weights = group, name, raw_weights

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            top = torch.tensor(self.group.constant_max, dtype=w.dtype, device=w.device)
            for other, ratio in self.group.members.items():
                raw = w if other == self.name else self.raw_weights[other]()
                top = torch.maximum(top, raw.abs().max() * ratio)
            step = (top / W_MANT_MAX / self.group.members[self.name]).clamp_min(1e-12)
        return w + (torch.round(w / step) * step - w).detach()


def _raw_weight(m: nn.Module):
    if parametrize.is_parametrized(m, "weight"):
        return lambda: m.parametrizations.weight.original
    return lambda: m.weight


def enable_qat(synapses: nn.ModuleDict, graph: Graph) -> list[str]:
    """Put the deployment weight grid into the forward pass of every on-chip layer; returns the
    quantised graph nodes (fixed routing convs included: the chip quantises them too)."""
    groups = weight_groups(graph)
    names = [n for g in groups for n in g.members]
    raw: dict[str, callable] = {}
    for n in names:
        raw[n] = _raw_weight(synapses[module_key(n)])
    for g in groups:
        for n in g.members:
            m = synapses[module_key(n)]
            parametrize.register_parametrization(m, "weight", GroupFakeQuant(g, n, raw))
            raw[n] = _raw_weight(m)  # later lookups read the stored (unquantised) weight
    return names


def finalize_qat(synapses: nn.ModuleDict) -> None:
    """Bake the quantised weights in and drop the parametrisations (all grids are evaluated first:
    each one reads the other weights of its layer)."""
    mods = [m for m in synapses.values() if parametrize.is_parametrized(m, "weight")]
    with torch.no_grad():
        quantised = [m.weight.detach().clone() for m in mods]
        for m, w in zip(mods, quantised):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=False)
            m.weight.copy_(w)


def _bias_nodes(graph: Graph, name: str) -> list:
    """The Conv/Linear nodes whose biases add up to the input current of ``name`` (through Adds)."""
    from .graph import Add

    node = graph[name]
    if isinstance(node, Add):
        return [n for s in node.inputs for n in _bias_nodes(graph, s)]
    return [node] if getattr(node, "bias", None) is not None else []


def snap_to_deployment_grid(graph: Graph, timesteps: int) -> Graph:
    """Round thresholds, initial membranes and on-chip biases to the values the Loihi fixed-point
    export will use (after QAT the weights already are), and record the host-fed layers' 13-bit input
    current grid in ``graph.meta["host_current_grid"]`` (the SNN rounds those currents the same way),
    so the float SNN computes what the chip computes up to float rounding, which the chip's half-unit
    membrane offset keeps away from the thresholds (:mod:`privatesnn.hw_targets.fixed_point`).
    Returns a snapped copy."""
    from privatesnn.hw_targets.fixed_point import BIAS_EXP, BIAS_MANT_MAX
    from privatesnn.hw_targets.loihi import build_plan, quantize_plan

    from .graph import Neuron

    graph = graph.copy()
    fixed = quantize_plan(build_plan(graph, timesteps))
    grid: dict[str, list[float]] = {}
    for ql in [*fixed.layers.values(), fixed.output]:
        node = graph.nodes.get(ql.name)
        if isinstance(node, Neuron):
            node.threshold = ql.vth / ql.scale
            # the chip's v0 in threshold units (half a unit off the grid for IF neurons that subtract: no ties)
            node.v_init = (ql.v0 / 64) / ql.vth
            src = node.inputs[0]
            if fixed.plan.layers[ql.name].host_fed:  # the host writes the input current as a 13-bit bias
                grid[ql.name] = [ql.scale / 2 ** (ql.bias_exp - BIAS_EXP), -BIAS_MANT_MAX - 1, BIAS_MANT_MAX]
        elif ql is fixed.output:
            src = ql.name
        else:
            continue  # a relay: not a graph node
        if ql.bias_mant is None:
            continue  # host-fed: its input current is computed on the host in float
        targets = _bias_nodes(graph, src) if ql is not fixed.output else [graph[src]]
        if not targets:
            continue
        first = targets[0]
        step = ql.scale / 2 ** (ql.bias_exp - 6)  # the chip's bias is bias_mant << bias_exp, in units of the scale << 6
        snapped = torch.as_tensor(ql.bias_mant, dtype=first.bias.dtype).reshape(first.bias.shape[0], -1)[:, 0] / step
        first.bias = snapped
        for other in targets[1:]:  # the chip adds one bias per neuron: keep the sum in the first
            other.bias = torch.zeros_like(other.bias)
    graph.meta["host_current_grid"] = grid
    return graph
