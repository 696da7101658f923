"""The one layer graph that every stage reads: conversion, the Norse SNN, the op counter, the NIR
exporter and the Lava builder all walk this structure; there is no second description of a network.

A graph is an ordered dict of nodes (topological order) from an ``Input`` to one output node. Each
node names its inputs; a node with several inputs sums them only if it is an ``Add``. Shapes are
per sample, without batch or time: (C, H, W) or (F,).

Neuron semantics (discrete time, one step per timestep, ``dt`` explicit for NIR):

    v[t] = leak * v[t-1] + I[t]
    s[t] = 1 if v[t] > threshold else 0
    v[t] = v[t] - threshold * s[t]      (reset="subtract")   or   v[t] * (1 - s[t])   (reset="zero")

``v[0] = v_init * threshold``. A ``signed`` neuron (reset by subtraction) also fires ``s[t] = -1``
(and ``v[t] += threshold``) when ``v[t] < 0`` while its spikes so far sum to more than zero
(:func:`privatesnn.neurons.signed_neuron_step`). A ``windowed`` IF neuron (reset by subtraction, no leak)
integrates its whole T-step input window first and then fires: ``v = v_init * threshold + sum_t I[t]``,
``s[t] = 1 if v - t * threshold > threshold`` for t < T, i.e. its first ``clamp(ceil(v / threshold) - 1, 0, T)``
steps spike (:func:`privatesnn.neurons.windowed_spikes`; on a chip: each layer fires in its own window
of T steps after its inputs' windows, binary spikes). The output node (the last Linear) does not spike: its currents are
averaged over time and read as logits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Iterator

import torch

from .errors import ArtifactError, PrivsnnError

GRAPH_FORMAT = "privsnn-graph/1"
RESETS = ("subtract", "zero")
ENCODINGS = ("direct", "rate")


class GraphError(PrivsnnError):
    """A graph is malformed: unknown node type, dangling input, or shapes that do not chain."""


@dataclass(eq=False)
class Node:
    """Base node: a name, the names of its inputs, and its per-sample output shape."""

    name: str
    inputs: list[str]
    shape: tuple[int, ...] = ()
    TYPE: ClassVar[str] = "node"
    TENSORS: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.TYPE}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                v = v.detach().cpu().clone()
            elif isinstance(v, tuple):
                v = list(v)
            d[f.name] = v
        return d

    def infer_shape(self, in_shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        if len(in_shapes) != 1:
            raise GraphError(f"node {self.name!r} ({self.TYPE}) takes one input, got {len(in_shapes)}")
        return in_shapes[0]


@dataclass(eq=False)
class Input(Node):
    """The image input. ``encoding``: "direct" (the normalised image is an analog current every
    step) or "rate" (signed Bernoulli spikes with P = |x| / input_scale; ``input_scale`` is folded
    into the first layer's weights)."""

    encoding: str = "direct"
    input_scale: float = 1.0
    TYPE: ClassVar[str] = "input"

    def infer_shape(self, in_shapes):
        return self.shape


@dataclass(eq=False)
class Conv(Node):
    weight: torch.Tensor = None  # (C_out, C_in/groups, kH, kW)
    bias: torch.Tensor | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    trainable: bool = True  # False for fixed routing (residual shortcuts)
    TYPE: ClassVar[str] = "conv"
    TENSORS: ClassVar[tuple[str, ...]] = ("weight", "bias")

    def infer_shape(self, in_shapes):
        (c, h, w), = _one(self, in_shapes, 3)
        co, ci, kh, kw = self.weight.shape
        if ci * self.groups != c:
            raise GraphError(f"conv {self.name!r}: weight expects {ci * self.groups} input channels, input has {c} "
                             f"(input shape {(c, h, w)})")
        ho = (h + 2 * self.padding[0] - kh) // self.stride[0] + 1
        wo = (w + 2 * self.padding[1] - kw) // self.stride[1] + 1
        if ho <= 0 or wo <= 0:
            raise GraphError(f"conv {self.name!r}: input {(c, h, w)} too small for kernel {(kh, kw)}")
        return (co, ho, wo)


@dataclass(eq=False)
class Linear(Node):
    weight: torch.Tensor = None  # (out, in)
    bias: torch.Tensor | None = None
    trainable: bool = True
    TYPE: ClassVar[str] = "linear"
    TENSORS: ClassVar[tuple[str, ...]] = ("weight", "bias")

    def infer_shape(self, in_shapes):
        (f,), = _one(self, in_shapes, 1)
        if self.weight.shape[1] != f:
            raise GraphError(f"linear {self.name!r}: weight expects {self.weight.shape[1]} inputs, got {f}")
        return (int(self.weight.shape[0]),)


@dataclass(eq=False)
class AvgPool(Node):
    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    padding: tuple[int, int] = (0, 0)
    TYPE: ClassVar[str] = "avgpool"

    def infer_shape(self, in_shapes):
        (c, h, w), = _one(self, in_shapes, 3)
        return (c, (h + 2 * self.padding[0] - self.kernel[0]) // self.stride[0] + 1,
                (w + 2 * self.padding[1] - self.kernel[1]) // self.stride[1] + 1)


@dataclass(eq=False)
class MaxPool(AvgPool):
    TYPE: ClassVar[str] = "maxpool"


@dataclass(eq=False)
class Flatten(Node):
    TYPE: ClassVar[str] = "flatten"

    def infer_shape(self, in_shapes):
        (s,) = in_shapes if len(in_shapes) == 1 else (None,)
        if s is None:
            raise GraphError(f"flatten {self.name!r} takes one input")
        return (int(math.prod(s)),)


@dataclass(eq=False)
class Add(Node):
    """Sum of its inputs (residual connections)."""

    TYPE: ClassVar[str] = "add"

    def infer_shape(self, in_shapes):
        if len(in_shapes) < 2 or any(s != in_shapes[0] for s in in_shapes):
            raise GraphError(f"add {self.name!r}: inputs must be >= 2 tensors of one shape, got {in_shapes}")
        return in_shapes[0]


@dataclass(eq=False)
class Neuron(Node):
    """A layer of IF/LIF neurons (replaces a ReLU). See the module docstring for the dynamics."""

    threshold: float = 1.0
    leak: float = 1.0  # 1.0 = IF (no leak); < 1 = LIF, v decays by this factor per step
    reset: str = "subtract"
    v_init: float = 0.5  # initial membrane as a fraction of the threshold
    dt: float = 1e-3  # seconds per step, for NIR's continuous-time parameters
    clip: float | None = None  # the ANN activation's ceiling (ReLU6: 6; in the graph's units); None = ReLU
    signed: bool = False  # also fires -1 spikes to take back early ones (see the module docstring)
    windowed: bool = False  # integrates its whole input window, then fires (see the module docstring)
    TYPE: ClassVar[str] = "neuron"


NODE_TYPES: dict[str, type[Node]] = {c.TYPE: c for c in (Input, Conv, Linear, AvgPool, MaxPool, Flatten, Add, Neuron)}
WEIGHTED = (Conv, Linear)


def _one(node: Node, in_shapes, ndim: int):
    if len(in_shapes) != 1:
        raise GraphError(f"node {node.name!r} ({node.TYPE}) takes one input, got {len(in_shapes)}")
    if len(in_shapes[0]) != ndim:
        raise GraphError(f"node {node.name!r} ({node.TYPE}) expects a {ndim}-D input per sample, got {in_shapes[0]}")
    return in_shapes


@dataclass
class Graph:
    """Nodes in topological order; ``meta`` carries the model's preprocessing and provenance."""

    nodes: dict[str, Node]
    output: str
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes.values())

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    @property
    def input(self) -> Input:
        first = next(iter(self.nodes.values()))
        if not isinstance(first, Input):
            raise GraphError("the first node of a graph must be an Input")
        return first

    def consumers(self, name: str) -> list[Node]:
        return [n for n in self.nodes.values() if name in n.inputs]

    def neurons(self) -> list[Neuron]:
        return [n for n in self.nodes.values() if isinstance(n, Neuron)]

    def refuse_neurons(self, flag: str, why: str) -> None:
        """Raise :class:`~privatesnn.errors.UnsupportedLayerError` naming the first neuron layer whose
        ``flag`` (``signed``, ``windowed``) is set: ``neuron layer 'x' (and N more) <why>``."""
        from .errors import UnsupportedLayerError

        names = [n.name for n in self.neurons() if getattr(n, flag)]
        if names:
            raise UnsupportedLayerError(f"neuron layer {names[0]!r} (and {len(names) - 1} more) {why}")

    def weighted(self) -> list[Node]:
        return [n for n in self.nodes.values() if isinstance(n, WEIGHTED)]

    def is_readout(self, name: str) -> bool:
        """A Linear layer, or a sum of Linear layers (a Linear over a concatenation, split by lowering)."""
        node = self.nodes[name]
        return isinstance(node, Linear) or (isinstance(node, Add) and all(isinstance(self.nodes[s], Linear)
                                                                           for s in node.inputs))

    def is_sequential(self) -> bool:
        """True when every node has one input and feeds at most one node (no residual paths)."""
        return all(len(n.inputs) <= 1 and len(self.consumers(n.name)) <= 1 for n in self)

    def validate(self) -> None:
        """Check names, order, types and that shapes chain; fill in each node's ``shape``."""
        seen: dict[str, tuple[int, ...]] = {}
        if not self.nodes:
            raise GraphError("empty graph")
        for i, (name, node) in enumerate(self.nodes.items()):
            if name != node.name:
                raise GraphError(f"node key {name!r} differs from its name {node.name!r}")
            if type(node).TYPE not in NODE_TYPES:
                raise GraphError(f"node {name!r}: unsupported type {type(node).__name__}; supported: {', '.join(NODE_TYPES)}")
            if i == 0:
                if not isinstance(node, Input):
                    raise GraphError("the first node must be an Input")
                seen[name] = tuple(node.shape)
                continue
            missing = [s for s in node.inputs if s not in seen]
            if missing or not node.inputs:
                raise GraphError(f"node {name!r}: inputs {missing or node.inputs} are not defined before it")
            if isinstance(node, WEIGHTED):
                w = node.weight
                if not isinstance(w, torch.Tensor) or not torch.isfinite(w).all():
                    raise GraphError(f"node {name!r}: weight missing or not finite")
                if node.bias is not None and not torch.isfinite(node.bias).all():
                    raise GraphError(f"node {name!r}: bias not finite")
            if isinstance(node, Neuron):
                if node.reset not in RESETS:
                    raise GraphError(f"neuron {name!r}: reset must be one of {RESETS}, got {node.reset!r}")
                if not (math.isfinite(node.threshold) and node.threshold > 0):
                    raise GraphError(f"neuron {name!r}: threshold must be > 0, got {node.threshold}")
                if not 0.0 <= node.leak <= 1.0:
                    raise GraphError(f"neuron {name!r}: leak must be in [0, 1], got {node.leak}")
                if node.signed not in (True, False) or (node.signed and node.reset != "subtract"):
                    raise GraphError(f"neuron {name!r}: signed must be true or false, and signed neurons reset by "
                                     f"subtraction; got signed={node.signed!r}, reset={node.reset!r}")
                if node.windowed not in (True, False) or (node.windowed and (
                        node.reset != "subtract" or node.leak != 1.0 or node.signed)):
                    raise GraphError(f"neuron {name!r}: windowed must be true or false, and windowed neurons are IF "
                                     f"neurons (reset by subtraction, leak 1, not signed); got windowed="
                                     f"{node.windowed!r}, reset={node.reset!r}, leak={node.leak}, signed={node.signed}")
            node.shape = tuple(int(s) for s in node.infer_shape([seen[s] for s in node.inputs]))
            seen[name] = node.shape
        if self.output not in self.nodes:
            raise GraphError(f"output node {self.output!r} is not in the graph")
        if self.input.encoding not in ENCODINGS:
            raise GraphError(f"input encoding must be one of {ENCODINGS}, got {self.input.encoding!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"format": GRAPH_FORMAT, "output": self.output, "meta": self.meta,
                "nodes": [n.to_dict() for n in self.nodes.values()]}

    @classmethod
    def from_dict(cls, d: Any, source: str = "<graph>") -> "Graph":
        if not isinstance(d, dict) or d.get("format") != GRAPH_FORMAT:
            raise ArtifactError(f"{source}: not a privsnn layer graph (expected format {GRAPH_FORMAT!r})")
        nodes: dict[str, Node] = {}
        for nd in d.get("nodes", []):
            t = nd.get("type") if isinstance(nd, dict) else None
            if t not in NODE_TYPES:
                raise ArtifactError(f"{source}: unknown node type {t!r}; supported: {', '.join(NODE_TYPES)}")
            kls = NODE_TYPES[t]
            known = {f.name for f in fields(kls)}
            kwargs = {k: v for k, v in nd.items() if k in known}
            for k in ("shape", "stride", "padding", "kernel"):
                if k in kwargs and isinstance(kwargs[k], list):
                    kwargs[k] = tuple(kwargs[k])
            kwargs["inputs"] = list(kwargs.get("inputs", []))
            node = kls(**kwargs)
            nodes[node.name] = node
        return cls(nodes=nodes, output=d.get("output", ""), meta=dict(d.get("meta", {})))

    def copy(self) -> "Graph":
        return Graph.from_dict(self.to_dict())
