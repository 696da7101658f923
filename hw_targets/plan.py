"""The deployment plan (:func:`build_plan`): a layer graph as groups of neurons on chip.

Every neuron layer (and the output readout) receives a list of synaptic *terms* (``Term``: one
Conv or Dense connection from one source layer). Average pooling and flatten between a source and
a weighted layer are folded into that layer exactly: ``conv(avgpool_k(x))`` is one convolution
with a ``k*K`` kernel, stride ``k*S`` and padding ``k*P`` whose taps are ``W/k^2`` (exact for
non-overlapping pools, kernel = stride, and inputs that the pool tiles exactly);
``linear(flatten(avgpool_k(x)))`` is one dense layer over the unpooled map. An ``Add`` becomes
several terms into one neuron layer (several connections into one Lava port). Max pooling has no
Lava equivalent and is refused.

The layers fed only by the image (the direct-coded first layer) are *host-fed*: their input
current is computed on the host exactly as the SNN computes it and injected as the neuron bias
(the way Loihi takes analog values); it is constant over the T steps of an image. A neuron layer
fed by both the image and spikes (a pre-activation ResNet whose conv stem's output runs along the
residual path) gets its image part the same way, as a per-image bias (its other biases included),
and its spike terms as synapses (``host_mixed``).

Time: each Lava Dense/Conv delays by one step. A layer's *lag* is the number of synaptic hops
from the host-fed layers; a layer of lag L computes SNN step ``k - L + 1`` at local step k of an
image period ``P = T + lag(output)``, and resets its state at local step L (as netx's staggered
``reset_offset`` does). Residual paths with fewer hops get identity *relay* layers (an identity
connection into neurons that spike iff they received a spike), so all terms into a neuron arrive
in step.

Windowed neurons (``Neuron.windowed``; all layers or none): a layer of lag L resets at the image's
step 0, integrates whatever arrives (its bias only in [L, L + T)) and fires its count in
[L + T, L + 2T); its lag is ``max(lag of its sources) + T + 1``, so every source has fired before it
fires and no relays are needed; the period is ``T + lag(output)``, about (T + 1) per layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from privatesnn.errors import PrivsnnError, UnsupportedLayerError
from privatesnn.graph import Add, AvgPool, Conv, Flatten, Graph, Input, Linear, MaxPool, Neuron


@dataclass
class Term:
    """One synaptic connection ``src -> dst``: conv (torch layout) or dense (torch flatten order
    of the source's (C, H, W) shape)."""

    name: str  # the graph's synaptic node (or "identity"), plus what was folded into it
    src: str  # source layer (neuron layer or relay)
    dst: str
    kind: str  # "conv" | "dense"
    weight: torch.Tensor
    src_shape: tuple[int, ...]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    folded: list[str] = field(default_factory=list)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Float reference of this term on source activity ``x`` (N, *src_shape)."""
        if self.kind == "conv":
            return F.conv2d(x, self.weight.to(x.dtype), None, self.stride, self.padding, 1, self.groups)
        return x.reshape(x.shape[0], -1) @ self.weight.to(x.dtype).t()

    def synapse_count(self) -> int:
        """Synapses this term needs on chip (conv: in-bounds taps only)."""
        if self.kind == "dense":
            return int(self.weight.numel())
        co, cig, kh, kw = self.weight.shape
        ones = torch.ones(1, cig * self.groups, *self.src_shape[1:])
        k = torch.ones(co, cig, kh, kw)
        return int(F.conv2d(ones, k, None, self.stride, self.padding, 1, self.groups).sum())


@dataclass
class Layer:
    """A group of neurons on chip (a graph Neuron, a relay, or the output readout)."""

    name: str
    shape: tuple[int, ...]
    kind: str  # "neuron" | "relay" | "output"
    threshold: float = 1.0
    leak: float = 1.0
    reset: str = "zero"
    v_init: float = 0.0
    bias: torch.Tensor | None = None  # float, per neuron (layer shape); None for host-fed layers
    terms: list[Term] = field(default_factory=list)
    host_fed: bool = False
    host_mixed: bool = False  # image current as a per-image bias, plus spike terms
    lag: int = 0  # first step of the layer's T-step (integration) window within an image's period
    windowed: bool = False  # integrates (bias on) in [lag, lag + T), fires in [lag + T, lag + 2T); state reset at 0

    @property
    def host_current(self) -> bool:
        """The host sets this layer's bias for each image (host-fed or mixed)."""
        return self.host_fed or self.host_mixed

    @property
    def size(self) -> int:
        return int(math.prod(self.shape))


@dataclass
class DeployPlan:
    graph: Graph
    layers: dict[str, Layer]  # topological order; excludes the output readout
    output: Layer
    timesteps: int

    @property
    def period(self) -> int:
        """Lava steps per image: T plus the output's lag."""
        return self.timesteps + self.output.lag

    def host_layers(self) -> list[Layer]:
        return [layer for layer in self.layers.values() if layer.host_current]

    @torch.no_grad()
    def host_currents(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Input current of each host-fed layer for pixels ``x`` (N, C, H, W) in [0, 1], computed
        with the SNN's own modules (bit-identical to :class:`SpikingNetwork`'s direct coding)."""
        return host_currents(self.graph, x)

    def summary(self) -> list[dict[str, Any]]:
        out = []
        for layer in list(self.layers.values()) + [self.output]:
            out.append({"name": layer.name, "kind": layer.kind, "shape": list(layer.shape), "lag": layer.lag,
                        "host_fed": layer.host_fed, "host_mixed": layer.host_mixed,
                        "terms": [{"name": t.name, "src": t.src, "kind": t.kind, "weight_shape": list(t.weight.shape),
                                   "stride": list(t.stride), "padding": list(t.padding), "folded": t.folded}
                                  for t in layer.terms]})
        return out


def _depends_on_neurons(graph: Graph) -> dict[str, bool]:
    dep: dict[str, bool] = {}
    for node in graph:
        dep[node.name] = isinstance(node, Neuron) or any(dep[s] for s in node.inputs)
    return dep


def _mixed_add(graph: Graph, dep: dict[str, bool], neuron: Neuron) -> Add | None:
    """The Add feeding ``neuron`` when it sums image-only inputs with spike-driven ones (a mixed layer)."""
    src = graph[neuron.inputs[0]]
    if isinstance(src, Add) and dep[src.name] and not all(dep[s] for s in src.inputs):
        return src
    return None


@torch.no_grad()
def host_currents(graph: Graph, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Currents into the host-fed neuron layers, and the image part (plus the biases of the spike
    part) of the current into mixed layers (see :class:`DeployPlan`)."""
    from privatesnn.layers import build_synapses, module_key
    from privatesnn.snn import _normalize

    dep = _depends_on_neurons(graph)
    mods = build_synapses(graph)
    vals: dict[str, torch.Tensor] = {}
    out: dict[str, torch.Tensor] = {}
    for node in graph:
        if isinstance(node, Input):
            vals[node.name] = _normalize(graph, x)
        elif isinstance(node, Neuron):
            mixed = _mixed_add(graph, dep, node)
            if not dep[node.inputs[0]]:
                out[node.name] = vals[node.inputs[0]]
            elif mixed is not None:
                y = sum(vals[s] for s in mixed.inputs if not dep[s])
                for s in mixed.inputs:
                    if dep[s]:
                        y = y + _bias_into(graph, s, tuple(node.shape)).to(y.dtype)
                out[node.name] = y
        elif dep[node.name]:
            continue
        elif isinstance(node, Add):
            y = vals[node.inputs[0]]
            for s in node.inputs[1:]:
                y = y + vals[s]
            vals[node.name] = y
        elif isinstance(node, MaxPool):
            raise UnsupportedLayerError(f"maxpool {node.name!r} on the input is not supported on Lava")
        else:
            vals[node.name] = mods[module_key(node.name)](vals[node.inputs[0]])
    return out


def _identity_term(src: str, dst: str, shape: tuple[int, ...]) -> Term:
    if len(shape) == 3:
        c = shape[0]
        w = torch.eye(c).view(c, c, 1, 1)
        return Term("identity", src, dst, "conv", w, tuple(shape))
    n = shape[0]
    return Term("identity", src, dst, "dense", torch.eye(n), tuple(shape))


def _fold_pool_into(term: Term, pool: AvgPool, in_shape: tuple[int, ...]) -> Term:
    """``term(avgpool(x))`` as one term on x (exact; see module docstring)."""
    kh, kw = pool.kernel
    if tuple(pool.stride) != (kh, kw) or tuple(pool.padding) != (0, 0):
        raise UnsupportedLayerError(
            f"avgpool {pool.name!r}: only non-overlapping pooling (kernel = stride, no padding) can be folded "
            f"into the next layer for Lava; got kernel {pool.kernel}, stride {pool.stride}, padding {pool.padding}")
    c, h, w = in_shape
    if h % kh or w % kw:
        raise UnsupportedLayerError(f"avgpool {pool.name!r}: input {h}x{w} is not a multiple of the kernel "
                                    f"{kh}x{kw}; the pool cannot be folded exactly")
    if term.kind == "conv":
        wt = term.weight
        co, cig, KH, KW = wt.shape
        big = wt.repeat_interleave(kh, dim=2).repeat_interleave(kw, dim=3) / (kh * kw)
        return Term(term.name, term.src, term.dst, "conv", big, tuple(in_shape),
                    (term.stride[0] * kh, term.stride[1] * kw), (term.padding[0] * kh, term.padding[1] * kw),
                    term.groups, term.folded + [pool.name])
    # dense over the pooled (C, H/kh, W/kw) map -> dense over (C, H, W)
    wt = term.weight.view(term.weight.shape[0], c, h // kh, w // kw)
    big = wt.repeat_interleave(kh, dim=2).repeat_interleave(kw, dim=3) / (kh * kw)
    return Term(term.name, term.src, term.dst, "dense", big.reshape(term.weight.shape[0], -1), tuple(in_shape),
                folded=term.folded + [pool.name])


def _terms_into(graph: Graph, node_name: str, dst: str) -> list[Term]:
    """The synaptic terms feeding the value ``node_name`` (the input of neuron/output ``dst``)."""
    node = graph[node_name]
    if isinstance(node, Add):
        out: list[Term] = []
        for s in node.inputs:
            out.extend(_terms_into(graph, s, dst))
        return out
    if isinstance(node, MaxPool):
        raise UnsupportedLayerError(f"maxpool {node.name!r}: spiking max pooling has no Lava equivalent; "
                                    f"use average pooling (it folds into the next layer)")
    if isinstance(node, Conv):
        term = Term(node.name, "", dst, "conv", node.weight.detach().float(), tuple(graph[node.inputs[0]].shape),
                    tuple(node.stride), tuple(node.padding), node.groups)
        cur = graph[node.inputs[0]]
    elif isinstance(node, Linear):
        term = Term(node.name, "", dst, "dense", node.weight.detach().float(), tuple(graph[node.inputs[0]].shape))
        cur = graph[node.inputs[0]]
    elif isinstance(node, (Neuron, AvgPool, Flatten, Input)):
        # spikes added without weights (identity shortcut) or pooled spikes into a neuron
        term = _identity_term("", dst, tuple(node.shape))
        term.name = f"identity({node.name})"
        cur = node
    else:  # pragma: no cover - graph types are closed
        raise UnsupportedLayerError(f"node {node.name!r} of type {node.TYPE} is not supported on Lava")
    while True:
        if isinstance(cur, Neuron):
            term.src = cur.name
            return [term]
        if isinstance(cur, Input):
            term.src = cur.name
            return [term]
        if isinstance(cur, Flatten):
            src_shape = tuple(graph[cur.inputs[0]].shape)
            if term.kind != "dense":
                raise UnsupportedLayerError(f"flatten {cur.name!r} feeds a convolution")
            term.src_shape = src_shape
            term.folded = term.folded + [cur.name]
            cur = graph[cur.inputs[0]]
            continue
        if isinstance(cur, MaxPool):
            raise UnsupportedLayerError(f"maxpool {cur.name!r}: spiking max pooling has no Lava equivalent; "
                                        f"use average pooling (it folds into the next layer)")
        if isinstance(cur, AvgPool):
            in_shape = tuple(graph[cur.inputs[0]].shape)
            if term.kind == "dense" and len(term.src_shape) == 1:
                raise UnsupportedLayerError(f"avgpool {cur.name!r} feeds a dense layer without a flatten")
            term = _fold_pool_into(term, cur, in_shape)
            cur = graph[cur.inputs[0]]
            continue
        raise UnsupportedLayerError(
            f"layer {term.name!r} reads a {cur.TYPE} ({cur.name!r}); on Lava a synaptic layer must read spikes "
            f"(through average pooling / flatten only)")


def _bias_into(graph: Graph, node_name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """Sum of the biases of the weighted layers feeding ``node_name``, per neuron."""
    node = graph[node_name]
    if isinstance(node, Add):
        total = torch.zeros(shape)
        for s in node.inputs:
            total = total + _bias_into(graph, s, shape)
        return total
    if isinstance(node, (Conv, Linear)) and node.bias is not None:
        b = node.bias.detach().float()
        if len(shape) == 3:
            return b.view(-1, 1, 1).expand(shape).clone()
        return b.clone()
    return torch.zeros(shape)


RESET_MODES = ("match", "zero")


def build_plan(graph: Graph, timesteps: int | None = None, reset: str = "match") -> DeployPlan:
    """The Lava deployment plan of ``graph`` (see module docstring). Raises
    :class:`UnsupportedLayerError` for what Lava cannot run.

    ``reset="match"`` keeps each layer's reset rule (a reset-by-subtraction layer becomes a LIF
    whose reset subtracts the threshold: a programmable-neuron model, as Loihi 2 allows);
    ``reset="zero"`` deploys Lava's stock LIF (reset to zero) everywhere, whatever was trained."""
    if reset not in RESET_MODES:
        raise PrivsnnError(f"reset mode must be one of {RESET_MODES}, got {reset!r}")
    T = int(timesteps or graph.meta.get("timesteps", 0) or 0)
    if T <= 0:
        raise PrivsnnError("timesteps unknown: the graph has no 'timesteps' and none was given")
    if graph.input.encoding != "direct":
        raise UnsupportedLayerError("rate-coded input is not supported on Lava (its random input spikes cannot be "
                                    "reproduced on chip); convert with --encoding direct for deployment")
    graph.refuse_neurons("signed", "is signed (fires -1 spikes): the Lava deployment runs +1 spikes only so far; "
                                   "simulate it with `privsnn evaluate`, or export it with --target nir / onnx")
    windowed = {n.name for n in graph.neurons() if n.windowed}
    plain = [n.name for n in graph.neurons() if not n.windowed]
    if windowed and plain:
        raise UnsupportedLayerError(f"neuron layer {plain[0]!r} is not windowed while {sorted(windowed)[0]!r} is: "
                                    f"a Lava plan is windowed in every layer or in none")
    if windowed and reset == "zero":
        raise UnsupportedLayerError("windowed neurons fire their window's count by subtracting the threshold; "
                                    "deploy them with reset 'match', not 'zero'")
    out_node = graph[graph.output]
    if not graph.is_readout(graph.output):
        raise UnsupportedLayerError(f"the output node {graph.output!r} is a {out_node.TYPE}; Lava deployment needs "
                                    f"a non-spiking linear readout as the last layer")
    dep = _depends_on_neurons(graph)
    layers: dict[str, Layer] = {}
    for node in graph:
        if not isinstance(node, Neuron):
            continue
        layer = Layer(node.name, tuple(node.shape), "neuron", node.threshold, node.leak,
                      node.reset if reset == "match" else "zero", node.v_init, windowed=node.windowed)
        mixed = _mixed_add(graph, dep, node)
        if not dep[node.inputs[0]]:
            layer.host_fed, layer.lag = True, 0
        elif mixed is not None:
            # image part -> per-image bias (host_currents); spike part -> synapses
            layer.host_mixed = True
            layer.terms = [t for s in mixed.inputs if dep[s] for t in _terms_into(graph, s, node.name)]
        else:
            layer.terms = _terms_into(graph, node.inputs[0], node.name)
            if any(t.src == graph.input.name for t in layer.terms):
                raise UnsupportedLayerError(f"neuron {node.name!r} mixes the image and spikes as input in a way "
                                            f"Lava cannot split (not through an add); not supported on Lava")
            layer.bias = _bias_into(graph, node.inputs[0], layer.shape)
        layers[node.name] = layer
    out = Layer(graph.output, tuple(out_node.shape), "output")
    out.terms = _terms_into(graph, graph.output, graph.output)
    if any(t.src == graph.input.name for t in out.terms):
        raise UnsupportedLayerError("the output layer reads the image directly; not supported on Lava")
    out.bias = _bias_into(graph, graph.output, out.shape)

    # lags, with relays where terms into one layer arrive at different steps
    final: dict[str, Layer] = {}
    relays: dict[tuple[str, int], str] = {}

    def relay_chain(src: str, depth: int) -> str:
        """Name of the layer that repeats ``src``'s spikes ``depth`` steps later."""
        if depth == 0:
            return src
        key = (src, depth)
        if key in relays:
            return relays[key]
        prev = relay_chain(src, depth - 1)
        p = final[prev]
        name = f"{src}__relay{depth}"
        r = Layer(name, p.shape, "relay", threshold=0.5, leak=0.0, reset="zero", v_init=0.0,
                  bias=torch.zeros(p.shape), lag=p.lag + 1)
        r.terms = [_identity_term(prev, name, p.shape)]
        r.terms[0].name = f"relay({src})"
        final[name] = r
        relays[key] = name
        return name

    def place(layer: Layer) -> None:
        if layer.host_fed:
            layer.lag = 0
            return
        if windowed:  # integrate whatever arrives before the window ends: no relays; fire after the last source
            lags = {final[t.src].lag for t in layer.terms}
            if layer.kind == "output" and len(lags) > 1:
                raise UnsupportedLayerError(f"the output {layer.name!r} reads windowed layers that fire in different "
                                            f"windows; not supported on Lava")
            layer.lag = max(lags) + T + 1
            return
        arrive = [final[t.src].lag + 1 for t in layer.terms]
        layer.lag = max(arrive)
        for t, a in zip(layer.terms, arrive):
            if a < layer.lag:
                t.src = relay_chain(t.src, layer.lag - a)

    for layer in layers.values():
        place(layer)
        final[layer.name] = layer
    place(out)
    return DeployPlan(graph, final, out, T)
