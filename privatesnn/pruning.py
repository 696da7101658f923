"""Gradual magnitude pruning of a graph's learned synapses (Zhu & Gupta, 2017, "To prune, or not to
prune"), used inside the QCFS fine-tuning (``convert --qcfs-prune``).

A zero weight is a synapse the chip does not store and never updates through: the op counter's
effective synaptic operations (NeuroBench's convention) already leave zero weights out, so fewer
weights mean fewer accumulates per spike (and, for the layer that reads the analog image, fewer
multiply-accumulates at every step). The sparsity rises along Zhu & Gupta's cubic schedule during the
first part of the fine-tuning and the distillation then recovers the accuracy with the masks fixed.

The masks are torch's own (``torch.nn.utils.prune``: L1 magnitude per layer; a second call prunes the
weights still left, so each step asks for the share of the remaining ones that reaches the schedule).
Fixed routing layers (residual shortcuts) and the readout layer are never pruned.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn.utils import prune

from .errors import PrivsnnError
from .graph import Conv, Graph, Input, Linear, Neuron
from .layers import module_key


def reads_analog_input(graph: Graph, node) -> bool:
    """True when ``node``'s input reaches the graph's input without passing a neuron layer (the
    direct-coded image: its synaptic ops are multiply-accumulates at every step)."""
    name = node.inputs[0]
    while True:
        src = graph[name]
        if isinstance(src, Input):
            return True
        if isinstance(src, Neuron) or len(src.inputs) != 1:
            return False
        name = src.inputs[0]


def prunable_layers(graph: Graph, sparsity: float, input_sparsity: float) -> dict[str, float]:
    """Target sparsity per learned synaptic layer (by node name): ``input_sparsity`` for layers that read
    the analog input, ``sparsity`` for the others; routing layers and the readout are left out, as are
    layers whose target is 0."""
    out = {}
    for node in graph:
        if not isinstance(node, (Conv, Linear)) or not node.trainable or node.name == graph.output:
            continue
        target = input_sparsity if reads_analog_input(graph, node) else sparsity
        if target > 0:
            out[node.name] = float(target)
    return out


def cubic_sparsity(final: float, step: int, steps: int) -> float:
    """Zhu & Gupta's schedule: ``final * (1 - (1 - step / steps) ** 3)`` for step in 0..steps."""
    frac = min(max(step / steps, 0.0), 1.0) if steps > 0 else 1.0
    return final * (1.0 - (1.0 - frac) ** 3)


@dataclass
class GradualPruner:
    """Prunes ``modules`` (name -> (module, final sparsity)) towards their targets in ``steps`` calls
    of :meth:`step`; :meth:`finish` makes the zeros permanent (plain ``weight`` parameters again)."""

    modules: dict[str, tuple[nn.Module, float]]
    steps: int
    done: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise PrivsnnError(f"pruning needs at least one step, got {self.steps}")
        for name, (_, final) in self.modules.items():
            if not 0.0 <= final < 1.0:
                raise PrivsnnError(f"layer {name!r}: sparsity must be in [0, 1), got {final}")

    def step(self) -> None:
        """One step of the schedule (no-op once it is complete)."""
        if self.done >= self.steps:
            return
        for module, final in self.modules.values():
            before = cubic_sparsity(final, self.done, self.steps)
            after = cubic_sparsity(final, self.done + 1, self.steps)
            amount = 1.0 - (1.0 - after) / (1.0 - before)  # a share of the weights still left
            prune.l1_unstructured(module, "weight", amount=amount)
        self.done += 1

    def finish(self) -> None:
        for module, _ in self.modules.values():
            if prune.is_pruned(module):
                prune.remove(module, "weight")

    def sparsity(self) -> float:
        """Zero weights / weights over the pruned layers (the weights as the forward pass sees them)."""
        zeros = total = 0
        for module, _ in self.modules.values():
            w = module.weight
            zeros, total = zeros + int((w == 0).sum()), total + w.numel()
        return zeros / max(total, 1)


def make_pruner(graph: Graph, synapses: nn.ModuleDict, sparsity: float, input_sparsity: float,
                steps: int) -> GradualPruner | None:
    """A pruner over ``synapses`` (built from ``graph``) or None when both targets are 0 (the option values
    are checked by ``QCFSSettings.validate``; :class:`GradualPruner` refuses a target outside [0, 1) too)."""
    targets = prunable_layers(graph, sparsity, input_sparsity)
    if not targets:
        return None
    return GradualPruner({n: (synapses[module_key(n)], s) for n, s in targets.items()}, steps)


def is_pruned(graph: Graph) -> bool:
    """Whether the graph's QCFS fine-tuning pruned it (``convert --qcfs-prune`` / ``--qcfs-prune-input``)."""
    qcfs = graph.meta.get("qcfs") or {}
    return bool(graph.meta.get("pruned")) or qcfs.get("prune", 0) > 0 or qcfs.get("prune_input", 0) > 0


def weight_sparsity(graph: Graph) -> dict[str, float]:
    """Share of exactly-zero weights per learned synaptic layer, and over all of them (``"all"``)."""
    out, zeros, total = {}, 0, 0
    for node in graph:
        if isinstance(node, (Conv, Linear)) and node.trainable:
            w = torch.as_tensor(node.weight)
            z = int((w == 0).sum())
            out[node.name] = z / w.numel()
            zeros, total = zeros + z, total + w.numel()
    out["all"] = zeros / max(total, 1)
    return out
