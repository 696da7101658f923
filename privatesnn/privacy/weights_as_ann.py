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
  SNN approximates at large T (clipped ReLU, rate-coded input clamped to [-1, 1]).

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
from ..graph import Add, Graph, Input, MaxPool, Neuron
from ..layers import build_synapses, module_key
from ..snn import _normalize

MODES = ("relu", "relu/threshold", "rate")


class ArchitectureMismatchError(PrivsnnError):
    """An SNN's layer graph does not match the ANN architecture it is compared with."""


class RebuiltANN(nn.Module):
    """An SNN graph read as an ANN on pixels in [0, 1] (see the module docstring for ``mode``)."""

    def __init__(self, graph: Graph, mode: str = "relu"):
        super().__init__()
        if mode not in MODES:
            raise PrivsnnError(f"unknown weights-as-ANN mode {mode!r}; supported: {', '.join(MODES)}")
        self.graph, self.mode = graph, mode
        self.synapses = build_synapses(graph)
        self.maxpools = nn.ModuleDict({module_key(n.name): nn.MaxPool2d(n.kernel, n.stride, n.padding)
                                       for n in graph if isinstance(n, MaxPool)})
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        vals: dict[str, torch.Tensor] = {}
        inp = self.graph.input
        for node in self.graph:
            if isinstance(node, Input):
                y = _normalize(self.graph, x)
                if inp.encoding == "rate":
                    y = y / inp.input_scale
                    if self.mode == "rate":
                        y = y.clamp(-1.0, 1.0)
            elif isinstance(node, Add):
                y = sum(vals[s] for s in node.inputs)
            elif isinstance(node, Neuron):
                y = torch.relu(vals[node.inputs[0]])
                if self.mode != "relu":
                    y = y / node.threshold
                if self.mode == "rate":
                    y = y.clamp(max=1.0)
            elif isinstance(node, MaxPool):
                y = self.maxpools[module_key(node.name)](vals[node.inputs[0]])
            else:
                y = self.synapses[module_key(node.name)](vals[node.inputs[0]])
            vals[node.name] = y
        return vals[self.graph.output]


def weights_as_ann(graph: Graph, data: ImageSet, num_classes: int, device: torch.device | str = "cpu",
                   batch_size: int = 256) -> dict[str, Any]:
    """Real-data accuracy of every reading of ``graph``'s weights as an ANN; the best is the attack.

    Returns ``{"accuracy", "mode", "modes": {mode: accuracy}}`` (ties go to the simplest mode).
    """
    modes = {m: accuracy(RebuiltANN(graph, m).eval(), data, num_classes, batch_size, device,
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
