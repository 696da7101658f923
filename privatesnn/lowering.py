"""Lower channel concatenation and pre-activation BatchNorm into the standard layer graph.

A spiking neuron can only stand for ``ReLU(sum of weighted layers reading spikes)``. Two patterns
of modern CNNs do not have that form as written, but can be rewritten into it exactly:

* **Concatenation** (DenseNet, Inception): a layer reading ``cat(a, b)`` is the sum of two layers,
  one reading ``a`` and one reading ``b``, whose weights are the input-channel slices of the
  original; a neuron layer over ``cat(a, b)`` is one neuron layer per part. So concatenation never
  reaches the graph: every reader (SNN, op counter, NIR, Lava, ONNX export) sees only convolutions,
  adds and neurons, and the NIR file needs no concatenation node (which not every NIR reader has).
* **Pre-activation affines** (BatchNorm -> ReLU after an Add/Concat, as in pre-activation ResNets
  and DenseNets): the per-channel scale and shift are folded into the synaptic layers that feed the
  neuron (weights scaled per output channel, shift added to one bias). When one feature map feeds
  several different affines (a DenseNet feature map is read by every later layer of its block, each
  with its own BatchNorm), each consumer gets its own scaled copy of those synapses: the copies are
  real synaptic operations on a chip, and the op counter and energy report count them.

Also exact: average pooling of a convolution's output (DenseNet transitions: conv -> pool) is one
convolution with a larger, strided kernel.

Why hand-written: this is a rewrite of our own layer graph; no library does it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import torch

from .errors import UnsupportedLayerError
from .graph import Add, AvgPool, Conv, Flatten, Input, Linear, MaxPool, Neuron, Node


@dataclass(eq=False)
class Concat(Node):
    """Extraction-only node: channel concatenation (dim 1 of an NCHW or NF tensor)."""

    TYPE: ClassVar[str] = "concat"


@dataclass(eq=False)
class ChannelAffine(Node):
    """Extraction-only node: ``y = x * scale[c] + shift[c]`` (an un-foldable BatchNorm in eval mode)."""

    scale: torch.Tensor = None
    shift: torch.Tensor = None
    TYPE: ClassVar[str] = "affine"


PSEUDO = (Concat, ChannelAffine)


@dataclass
class _Part:
    """A spike source in the lowered graph and how many channels (or features, once flat) it holds."""

    name: str
    size: int


@dataclass
class _Group:
    """``size`` channels of a non-spiking value: the sum of the outputs of ``terms`` (template
    Conv/Linear nodes reading spike sources; materialised once per consumer)."""

    size: int
    terms: list[Node]


@dataclass
class _Spikes:
    """A spiking value: the concatenation of ``parts`` (emitted nodes) along channels."""

    parts: list[_Part]


@dataclass
class _Form:
    """A non-spiking value: the concatenation of ``groups`` along channels."""

    groups: list[_Group]


def needs_lowering(nodes: dict[str, Node]) -> bool:
    return any(isinstance(n, PSEUDO) for n in nodes.values())


def lower(nodes: dict[str, Node], output: str) -> tuple[dict[str, Node], str, dict[str, int]]:
    """Rewrite ``nodes`` (topological, may contain :class:`Concat`/:class:`ChannelAffine`) into
    standard graph nodes computing the same function. Returns ``(nodes, output_name, stats)``:
    how many concatenations and affines were lowered and the synaptic layers before and after."""
    lowered, out = _Lowering(nodes).run(output)
    weighted = lambda ns: sum(isinstance(n, (Conv, Linear)) for n in ns.values())  # noqa: E731
    stats = {"concatenations": sum(isinstance(n, Concat) for n in nodes.values()),
             "batchnorms_folded_per_reader": sum(isinstance(n, ChannelAffine) for n in nodes.values()),
             "synaptic_layers_before": weighted(nodes), "synaptic_layers_after": weighted(lowered)}
    return lowered, out, stats


class _Lowering:
    def __init__(self, nodes: dict[str, Node]):
        self.src = nodes
        self.out: dict[str, Node] = {}
        self.values: dict[str, _Spikes | _Form] = {}
        self.used_names: set[str] = set()

    # -- emitting ----------------------------------------------------------------------------

    def _fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self.used_names:
            name, i = f"{base}_{i}", i + 1
        self.used_names.add(name)
        return name

    def _emit(self, node: Node) -> str:
        node.name = self._fresh(node.name)
        node.shape = tuple(node.infer_shape([self.out[s].shape for s in node.inputs]))
        self.out[node.name] = node
        return node.name

    def _materialise(self, group: _Group) -> list[str]:
        """Emit a copy of each term of ``group`` (the first copy keeps the layer's own name)."""
        names = []
        for t in group.terms:
            node = replace(t, inputs=list(t.inputs), weight=t.weight.clone(),
                           bias=None if t.bias is None else t.bias.clone())
            names.append(self._emit(node))
        return names

    def _sum_into(self, group: _Group, base: str) -> str:
        names = self._materialise(group)
        return names[0] if len(names) == 1 else self._emit(Add(name=f"{base}_in", inputs=names))

    # -- value conversions -------------------------------------------------------------------

    def _as_form(self, v: _Spikes | _Form, where: str) -> _Form:
        if isinstance(v, _Form):
            return v
        groups = []
        for p in v.parts:
            if len(self.out[p.name].shape) == 3:
                w = torch.eye(p.size).view(p.size, p.size, 1, 1)
                t = Conv(name=f"{where}_shortcut_from_{p.name}", inputs=[p.name], weight=w, trainable=False)
            else:
                t = Linear(name=f"{where}_shortcut_from_{p.name}", inputs=[p.name], weight=torch.eye(p.size),
                           trainable=False)
            groups.append(_Group(p.size, [t]))
        return _Form(groups)

    @staticmethod
    def _split_terms(terms: list[Node], a: int, b: int) -> list[Node]:
        """The terms restricted to output channels [a, b)."""
        for t in terms:
            if isinstance(t, Conv) and t.groups != 1 and (a, b) != (0, t.weight.shape[0]):
                raise UnsupportedLayerError(f"grouped conv {t.name!r}: its output would be split between parts of "
                                            f"a concatenation; not supported")
        return [replace(t, inputs=list(t.inputs), weight=t.weight[a:b],
                        bias=None if t.bias is None else t.bias[a:b]) for t in terms]

    def _refine(self, form: _Form, cuts: list[int]) -> list[_Group]:
        """``form``'s groups split at the channel offsets ``cuts``."""
        out, start = [], 0
        for g in form.groups:
            inner = [c for c in cuts if start < c < start + g.size]
            edges = [start, *inner, start + g.size]
            for a, b in zip(edges[:-1], edges[1:]):
                out.append(_Group(b - a, self._split_terms(g.terms, a - start, b - start)))
            start += g.size
        return out

    # -- node handlers -----------------------------------------------------------------------

    def run(self, output: str) -> tuple[dict[str, Node], str]:
        for name, node in self.src.items():
            self.values[name] = self._lower(node)
        v = self.values[output]
        if not isinstance(v, _Form) or len(v.groups) != 1 or not all(isinstance(t, Linear) for t in v.groups[0].terms):
            raise UnsupportedLayerError(f"the network must end in a Linear layer (logits); {output!r} is not one")
        names = self._materialise(v.groups[0])
        if len(names) == 1:
            return self.out, names[0]
        return self.out, self._emit(Add(name=output, inputs=names))

    def _lower(self, node: Node) -> _Spikes | _Form:
        name = node.name
        if isinstance(node, Input):
            self.used_names.add(name)
            self.out[name] = replace(node, inputs=[])
            return _Spikes([_Part(name, node.shape[0])])
        ins = [self.values[s] for s in node.inputs]
        if isinstance(node, (Conv, Linear)):
            return self._weighted(node, ins[0])
        if isinstance(node, Neuron):
            return self._neuron(node, ins[0])
        if isinstance(node, Add):
            forms = [self._as_form(v, name) for v in ins]
            cuts = sorted({c for f in forms for c in _offsets(f)})
            refined = [self._refine(f, cuts) for f in forms]
            groups = [_Group(gs[0].size, [t for g in gs for t in g.terms]) for gs in zip(*refined)]
            return _Form(groups)
        if isinstance(node, Concat):
            if all(isinstance(v, _Spikes) for v in ins):
                return _Spikes([p for v in ins for p in v.parts])
            return _Form([g for v in ins for g in self._as_form(v, name).groups])
        if isinstance(node, ChannelAffine):
            return self._affine(node, ins[0])
        if isinstance(node, (AvgPool, MaxPool)):
            return self._pool(node, ins[0])
        if isinstance(node, Flatten):
            v = ins[0]
            if not isinstance(v, _Spikes):
                raise UnsupportedLayerError(f"flatten {name!r} of a non-spiking value (no ReLU before it) is not "
                                            f"supported in a graph with concatenation or pre-activation BatchNorm")
            parts = []
            for i, p in enumerate(v.parts):
                fname = self._emit(Flatten(name=name if len(v.parts) == 1 else f"{name}_{i}", inputs=[p.name]))
                parts.append(_Part(fname, int(self.out[fname].shape[0])))
            return _Spikes(parts)
        raise UnsupportedLayerError(f"node {name!r} of type {node.TYPE} cannot be lowered")

    def _weighted(self, node: Conv | Linear, v: _Spikes | _Form) -> _Form:
        if isinstance(v, _Form):
            raise UnsupportedLayerError(f"layer {node.name!r} reads a value with no ReLU before it (a sum, a "
                                        f"concatenation or a BatchNorm output); a spiking layer must read spikes")
        if len(v.parts) == 1:
            t = replace(node, inputs=[v.parts[0].name])
            return _Form([_Group(int(node.weight.shape[0]), [t])])
        if isinstance(node, Conv) and node.groups != 1:
            raise UnsupportedLayerError(f"grouped conv {node.name!r} reading a concatenation is not supported")
        terms, start = [], 0
        for i, p in enumerate(v.parts):
            terms.append(replace(node, name=node.name if i == 0 else f"{node.name}_part{i}", inputs=[p.name],
                                 weight=node.weight[:, start:start + p.size],
                                 bias=node.bias if i == 0 else None))
            start += p.size
        return _Form([_Group(int(node.weight.shape[0]), terms)])

    def _neuron(self, node: Neuron, v: _Spikes | _Form) -> _Spikes:
        if isinstance(v, _Spikes):
            if len(v.parts) != 1:
                raise UnsupportedLayerError(f"ReLU {node.name!r} of spikes (ReLU after ReLU) is not supported")
            n = self._emit(replace(node, inputs=[v.parts[0].name]))
            return _Spikes([_Part(n, v.parts[0].size)])
        parts = []
        for g, group in enumerate(v.groups):
            base = node.name if len(v.groups) == 1 else f"{node.name}_{g}"
            n = self._emit(replace(node, name=base, inputs=[self._sum_into(group, base)]))
            parts.append(_Part(n, group.size))
        return _Spikes(parts)

    def _affine(self, node: ChannelAffine, v: _Spikes | _Form) -> _Form:
        if isinstance(v, _Spikes):
            raise UnsupportedLayerError(f"BatchNorm {node.name!r} after a ReLU (or on the image) is not supported: "
                                        f"it cannot fold into the synapses that feed a neuron; put it before the ReLU")
        groups, start = [], 0
        for g in v.groups:
            scale, shift = node.scale[start:start + g.size].float(), node.shift[start:start + g.size].float()
            # the shift goes into the bias of a trainable layer where there is one (calibration moves it)
            gets_shift = next((i for i, t in enumerate(g.terms) if getattr(t, "trainable", True)), 0)
            terms = []
            for i, t in enumerate(g.terms):
                shape = (-1,) + (1,) * (t.weight.dim() - 1)
                bias = None if t.bias is None else t.bias * scale
                if i == gets_shift:
                    bias = shift.clone() if bias is None else bias + shift
                terms.append(replace(t, inputs=list(t.inputs), weight=t.weight * scale.view(shape), bias=bias))
            groups.append(_Group(g.size, terms))
            start += g.size
        return _Form(groups)

    def _pool(self, node: AvgPool, v: _Spikes | _Form) -> _Spikes | _Form:
        if isinstance(v, _Spikes):
            parts = []
            for i, p in enumerate(v.parts):
                n = self._emit(replace(node, name=node.name if len(v.parts) == 1 else f"{node.name}_{i}",
                                       inputs=[p.name]))
                parts.append(_Part(n, p.size))
            return _Spikes(parts)
        if isinstance(node, MaxPool) or tuple(node.padding) != (0, 0):
            raise UnsupportedLayerError(f"{node.TYPE} {node.name!r} of a non-spiking value is not supported "
                                        f"(only average pooling without padding folds into the conv before it)")
        groups = []
        for g in v.groups:
            if not all(isinstance(t, Conv) and t.groups == 1 for t in g.terms):
                raise UnsupportedLayerError(f"avgpool {node.name!r} after a linear/grouped layer is not supported")
            groups.append(_Group(g.size, [_conv_then_avgpool(t, node) for t in g.terms]))
        return _Form(groups)


def _conv_then_avgpool(conv: Conv, pool: AvgPool) -> Conv:
    """The one convolution equal to ``conv`` followed by ``pool`` (no pool padding): kernel
    ``k + (p - 1) * s``, stride ``s * pool_stride``, the conv's padding; exact at the borders too."""
    co, ci, kh, kw = conv.weight.shape
    (ph, pw), (sh, sw) = pool.kernel, conv.stride
    w = torch.zeros(co, ci, kh + (ph - 1) * sh, kw + (pw - 1) * sw, dtype=conv.weight.dtype)
    for a in range(ph):
        for b in range(pw):
            w[:, :, a * sh:a * sh + kh, b * sw:b * sw + kw] += conv.weight / (ph * pw)
    stride = (sh * pool.stride[0], sw * pool.stride[1])
    return replace(conv, inputs=list(conv.inputs), weight=w, stride=stride)


def _offsets(form: _Form) -> list[int]:
    out, s = [], 0
    for g in form.groups:
        s += g.size
        out.append(s)
    return out

