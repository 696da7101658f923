"""Attack scenario 1: take an SNN's weights into the ANN (ReLU) form it came from.

The attacker knows the architecture (the layer graph) and reads the SNN's weights and thresholds.
Conversion only rescales each layer (``W' = W*lambda_in/lambda_out``, ``b' = b/lambda_out``,
thresholds 1), and a ReLU network computes the same function up to a positive per-layer scale, so a
plainly converted SNN *is* its ANN. The attacker tries the obvious readings of the weights and the
auditor keeps the strongest (an upper bound on what the attacker gets):

* ``relu``: the graph as a plain ReLU network (thresholds ignored);
* ``relu/threshold``: each neuron layer outputs ``relu(I) / threshold`` (undoes a non-unit
  threshold, e.g. after SNN balancing);
* ``rate``: each neuron layer outputs ``clamp(relu(I) / threshold, 0, 1)``: the firing-rate ANN the
  SNN approximates at large T (clipped ReLU, rate-coded input clamped to [-1, 1]);
* ``rate-sim``: each neuron layer outputs the spike count / T of one neuron with the layer's own
  dynamics (threshold, leak, reset, initial membrane) driven by the constant current I for the
  SNN's T steps: the rate ANN with the SNN's quantisation and leak (an attacker reads them from the
  artifact). Gradients (for inversion) pass straight through as in ``rate``.

``relu`` is the paper's scenario 1 taken literally; the others are what an attacker who also reads
the thresholds and neuron settings would try. The audit keeps the best and reports them all.

Weight similarity: per weighted layer, the cosine between the SNN's and the ANN's weights. Cosine
is invariant to any positive per-layer rescaling, so it is already "after the best rescaling"
(the best scalar ``c`` gives a relative error ``sqrt(1 - cos^2)``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from ..data import ImageSet
from ..errors import PrivsnnError
from ..evaluation import accuracy
from ..graph import Graph, Neuron
from ..layers import build_synapses
from ..snn import static_forward

MODES = ("relu", "relu/threshold", "rate", "rate-sim")


class ArchitectureMismatchError(PrivsnnError):
    """An SNN's layer graph does not match the ANN architecture it is compared with."""


class RebuiltANN(nn.Module):
    """An SNN graph read as an ANN on pixels in [0, 1] (see the module docstring for ``mode``)."""

    def __init__(self, graph: Graph, mode: str = "relu", timesteps: int | None = None):
        super().__init__()
        if mode not in MODES:
            raise PrivsnnError(f"unknown weights-as-ANN mode {mode!r}; supported: {', '.join(MODES)}")
        self.graph, self.mode = graph, mode
        self.timesteps = int(timesteps or graph.meta.get("timesteps", 32))
        self.synapses = build_synapses(graph)
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return static_forward(self.graph, x, self.synapses, self._activation,
                              clamp_rate_input=self.mode in ("rate", "rate-sim"))

    def _activation(self, node: Neuron, i: torch.Tensor) -> torch.Tensor:
        y = torch.relu(i)
        if self.mode != "relu":
            y = y / node.threshold
        if self.mode in ("rate", "rate-sim"):
            y = y.clamp(max=1.0)
        if self.mode == "rate-sim":
            y = y + (constant_current_rate(i.detach(), node, self.timesteps) - y).detach()
        return y


def constant_current_rate(current: torch.Tensor, node: Neuron, timesteps: int) -> torch.Tensor:
    """Spike count / T of ``node``'s neurons (threshold, leak, reset, v_init) under a constant current."""
    th = node.threshold
    v = torch.full_like(current, node.v_init * th)
    count = torch.zeros_like(current)
    for _ in range(timesteps):
        v = node.leak * v + current
        z = (v > th).to(current.dtype)
        count = count + z
        v = v - z * th if node.reset == "subtract" else v * (1 - z)
    return count / timesteps


def weights_as_ann(graph: Graph, data: ImageSet, num_classes: int, device: torch.device | str = "cpu",
                   batch_size: int = 256, timesteps: int | None = None) -> dict[str, Any]:
    """Real-data accuracy of every reading of ``graph``'s weights as an ANN; the best is the attack.

    ``timesteps``: T for the ``rate-sim`` reading (default: the graph's). Returns
    ``{"accuracy", "mode", "modes": {mode: accuracy}}`` (ties go to the simplest mode).
    """
    modes = {m: accuracy(RebuiltANN(graph, m, timesteps).eval(), data, num_classes, batch_size, device,
                         desc=f"weights-as-ANN ({m})") for m in MODES}
    best = max(MODES, key=lambda m: (modes[m], -MODES.index(m)))
    return {"accuracy": modes[best], "mode": best, "modes": modes}


def _weighted_by_name(graph: Graph) -> dict[str, torch.Tensor]:
    return {n.name: n.weight for n in graph.weighted() if getattr(n, "trainable", True)}


def check_architecture(snn: Graph, ann: Graph, what: str = "the SNN") -> None:
    """Raise ArchitectureMismatchError unless ``snn`` has the ANN's weighted layers (names, shapes)."""
    a, s = _weighted_by_name(ann), _weighted_by_name(snn)
    if list(a) != list(s):
        missing = [k for k in a if k not in s][:3]
        extra = [k for k in s if k not in a][:3]
        raise ArchitectureMismatchError(
            f"{what} does not have the ANN's architecture: weighted layers differ "
            f"(missing {missing or 'none'}, unexpected {extra or 'none'})")
    bad = [f"{k} {tuple(s[k].shape)} vs {tuple(a[k].shape)}" for k in a if tuple(a[k].shape) != tuple(s[k].shape)]
    if bad:
        raise ArchitectureMismatchError(f"{what} does not have the ANN's architecture: shapes differ at "
                                        f"{', '.join(bad[:3])}")


def reference_graph(ann: Graph, snn: Graph) -> Graph:
    """The ANN graph in the SNN's layout: conversion may fold average pools into the next layer
    (exact; recorded in ``meta["folded_pools"]``), which changes those layers' weight shapes. The
    same fold is applied to the ANN here, so weights compare layer by layer."""
    folded = snn.meta.get("folded_pools")
    if folded is None and not _same_layout(snn, ann):  # older artifact without the record: try it
        folded = True
    if not folded:
        return ann
    from ..transforms import fold_average_pooling

    ref, _ = fold_average_pooling(ann)
    return ref


def _same_layout(a: Graph, b: Graph) -> bool:
    wa, wb = _weighted_by_name(a), _weighted_by_name(b)
    return list(wa) == list(wb) and all(tuple(wa[k].shape) == tuple(wb[k].shape) for k in wa)


def weight_cosine(snn: Graph, ann: Graph) -> dict[str, float]:
    """Per weighted layer (in graph order), cosine similarity of the flattened weights."""
    check_architecture(snn, ann)
    a, s = _weighted_by_name(ann), _weighted_by_name(snn)
    out = {}
    for name in a:
        wa, ws = a[name].flatten().double(), s[name].flatten().double()
        den = float(wa.norm() * ws.norm())
        out[name] = float(wa @ ws) / den if den > 0 else 0.0
    return out
