"""Quantisation-aware training (QAT) for Loihi-style 8-bit weights.

The deployment quantiser (``hw_targets.loihi.quantize_plan``) puts a layer's weights on a uniform
grid of step ``max|W| / 127`` (8-bit mantissa, shared exponent), except for layers the host
computes (no neuron upstream: the direct-coded input layer). Training with that grid in the
forward pass (straight-through gradient) makes the exported integer weights equal the trained
ones, so what Lava runs is what was trained. Uses ``torch.nn.utils.parametrize``; the grid is per
weight tensor (a residual layer with several incoming tensors shares one exponent on the chip:
there the grid is approximate).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from .graph import Conv, Graph, Linear, Neuron
from .layers import module_key

W_MANT_MAX = 127


class FakeQuant8(nn.Module):
    """``W -> round(W / s) * s`` with ``s = max|W| / 127``; identity gradient (straight-through)."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        step = w.detach().abs().max().clamp_min(1e-12) / W_MANT_MAX
        return w + (torch.round(w / step) * step - w).detach()


def chip_side_layers(graph: Graph) -> list[str]:
    """Conv/Linear nodes that run on the chip: those with a spiking neuron upstream."""
    spiking_upstream: dict[str, bool] = {}
    for node in graph:
        spiking_upstream[node.name] = any(isinstance(graph[s], Neuron) or spiking_upstream[s] for s in node.inputs)
    return [n.name for n in graph if isinstance(n, (Conv, Linear)) and spiking_upstream[n.name] and n.trainable]


def enable_qat(synapses: nn.ModuleDict, graph: Graph) -> list[str]:
    """Put the 8-bit weight grid into the forward pass of the chip-side layers; returns their names."""
    names = chip_side_layers(graph)
    for name in names:
        parametrize.register_parametrization(synapses[module_key(name)], "weight", FakeQuant8())
    return names


def finalize_qat(synapses: nn.ModuleDict) -> None:
    """Bake the quantised weights in and drop the parametrisations."""
    for m in synapses.values():
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
