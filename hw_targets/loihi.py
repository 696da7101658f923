"""Loihi-style deployment of a privsnn layer graph: targets, the deployment plan, fixed point,
a bit-accurate reference of Lava's fixed-point models, and the resource mapping.

Nothing here imports Lava; :mod:`privatesnn.hw_targets.lava_sim` builds Lava processes from a
:class:`DeployPlan` and its :class:`FixedPlan`.

Deployment plan (:func:`build_plan`)
    Every neuron layer (and the output readout) receives a list of synaptic *terms*
    (``Term``: one Conv or Dense connection from one source layer). Average pooling and flatten
    between a source and a weighted layer are folded into that layer exactly:
    ``conv(avgpool_k(x))`` is one convolution with a ``k*K`` kernel, stride ``k*S`` and padding
    ``k*P`` whose taps are ``W/k^2`` (exact for non-overlapping pools, kernel = stride, and inputs
    that the pool tiles exactly); ``linear(flatten(avgpool_k(x)))`` is one dense layer over the
    unpooled map. An ``Add`` becomes several terms into one neuron layer (several connections
    into one Lava port). Max pooling has no Lava equivalent and is refused.

    The layers fed only by the image (the direct-coded first layer) are *host-fed*: their input
    current is computed on the host exactly as the SNN computes it and injected as the neuron
    bias (the way Loihi takes analog values); it is constant over the T steps of an image.

    Time: each Lava Dense/Conv delays by one step. A layer's *lag* is the number of synaptic
    hops from the host-fed layers; a layer of lag L computes SNN step ``k - L + 1`` at local step k
    of an image period ``P = T + lag(output)``, and resets its state at local step L (as netx's
    staggered ``reset_offset`` does). Residual paths with fewer hops get identity *relay*
    layers (an identity connection into neurons that spike iff they received a spike), so all
    terms into a neuron arrive in step.

Fixed point (:func:`quantize_plan`, following Lava's ``fixed_pt`` models and lava-dl netx)
    * weights: 8-bit signed mantissa ``m`` in [-128, 127] with a per-term exponent ``e >= 0``;
      Lava's Dense stores ``2m`` (even integers in [-256, 254], its mixed-sign 8-bit format) with
      ``weight_exp = e``. (Lava 0.10's CPU Conv model ignores ``weight_exp``, so the Conv gets
      ``2m << e``: the same numbers.)
    * per layer a scale ``A`` (integer units per float unit of current): the dominant term uses
      the full mantissa range, and ``A`` is raised by powers of two until the threshold
      mantissa ``vth = round(th * A)`` (17 bits; compared as ``vth << 6``) has >= 12 bits, unless
      the worst-case input current (every input spiking) would overflow the 24-bit current
      register (``|a_in| << 6 < 2^23``). The membrane then spans about +-2^17 / vth thresholds.
    * bias: ``bias_mant = round(b * A)`` (13-bit signed) with ``bias_exp = 6`` (netx's choice);
      host-fed layers receive their image current this way (the scale is chosen so the
      worst-case current fits).
    * decays: ``du = 4095`` (the current decays fully each step: ``u = a_in``),
      ``dv = round((1 - leak) * 4096)`` clipped to 12 bits (IF: ``dv = 0``).
    * the membrane starts at ``v0 = round(v_init * th * A) << 6`` and resets to zero on a spike
      (Lava's LIF), or, for layers trained with reset by subtraction and ``reset="match"``, loses
      ``vth << 6`` (a programmable neuron; with ``reset="zero"`` the difference is measured).

    The output layer's currents are read by a sink and summed over the T steps on the host
    (plus ``T * round(b * A)``); argmax gives the prediction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from privatesnn.errors import PrivsnnError, UnsupportedLayerError
from privatesnn.graph import Add, AvgPool, Conv, Flatten, Graph, Input, Linear, MaxPool, Neuron

# --------------------------------------------------------------------------------------------
# Targets (constants with citations)
# --------------------------------------------------------------------------------------------

DAVIES_2018 = ("M. Davies et al., 'Loihi: A Neuromorphic Manycore Processor with On-Chip Learning', "
               "IEEE Micro 38(1):82-99, 2018, doi:10.1109/MM.2018.112130359")
LOIHI2_BRIEF = ("Intel Labs, 'Taking Neuromorphic Computing to the Next Level with Loihi 2', technology "
                "brief, 2021 (summarised at open-neuromorphic.org/neuromorphic-computing/hardware/loihi-2-intel)")
LAVA_FIXED = "lava-nc 0.10.0 src/lava/proc/{lif,dense}/models.py (fixed_pt / bit_accurate_loihi models)"


class TargetLimitError(PrivsnnError):
    """A network does not fit the requested hardware (names the layer and by how much)."""


@dataclass(frozen=True)
class Target:
    name: str
    label: str
    cores_per_chip: int
    neurons_per_core: int
    synapse_memory_kib_per_core: int
    weight_bits: int  # signed synaptic weight bits used by the deployment
    neurons_per_chip: int
    synapses_per_chip: int
    citations: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def synapses_per_core(self) -> int:
        """Synapses one core can store at ``weight_bits`` per synapse (memory bound, no index
        overhead: an optimistic capacity)."""
        return self.synapse_memory_kib_per_core * 1024 * 8 // self.weight_bits

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "cores_per_chip": self.cores_per_chip,
                "neurons_per_core": self.neurons_per_core,
                "synapse_memory_kib_per_core": self.synapse_memory_kib_per_core,
                "weight_bits": self.weight_bits, "synapses_per_core": self.synapses_per_core,
                "neurons_per_chip": self.neurons_per_chip, "synapses_per_chip": self.synapses_per_chip,
                "citations": dict(self.citations)}


TARGETS: dict[str, Target] = {
    "loihi1": Target(
        "loihi1", "Intel Loihi (first generation, 14 nm)", cores_per_chip=128, neurons_per_core=1024,
        synapse_memory_kib_per_core=128, weight_bits=8, neurons_per_chip=131_072, synapses_per_chip=130_000_000,
        citations={
            "cores_per_chip": f"128 neuromorphic cores [{DAVIES_2018}]",
            "neurons_per_core": f"1,024 compartments per core; 131,072 per chip [{DAVIES_2018}]",
            "synapse_memory_kib_per_core": "16 MB synaptic memory per chip / 128 cores "
                                           "[Davies 2018, as summarised in IEEE CAS Magazine Q2 2022, p. 21]",
            "weight_bits": f"1-9 bit weights on chip; 8-bit signed as in Lava's fixed_pt Dense [{LAVA_FIXED}]",
            "synapses_per_chip": f"130 million synapses per chip [{DAVIES_2018}]",
        }),
    "loihi2": Target(
        "loihi2", "Intel Loihi 2 (Intel 4)", cores_per_chip=128, neurons_per_core=8192,
        synapse_memory_kib_per_core=128, weight_bits=8, neurons_per_chip=1_048_576, synapses_per_chip=120_000_000,
        citations={
            "cores_per_chip": f"128 neuron cores (+6 Lakemont x86 cores) [{LOIHI2_BRIEF}]",
            "neurons_per_core": f"up to 1 million neurons per chip = 8,192 per core [{LOIHI2_BRIEF}]",
            "synapse_memory_kib_per_core": "128 KB local SRAM per core, flexibly partitioned between "
                                           "synapses and state [S: press summaries of the Loihi 2 brief; "
                                           "treated here as synaptic memory, an optimistic bound]",
            "weight_bits": f"8-bit signed weights as in Lava's fixed_pt Dense [{LAVA_FIXED}]",
            "synapses_per_chip": f"up to 120 million synapses per chip [{LOIHI2_BRIEF}]",
        }),
}


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise PrivsnnError(f"unknown hardware target {name!r}; choose one of {', '.join(TARGETS)}")
    return TARGETS[name]


# --------------------------------------------------------------------------------------------
# Deployment plan
# --------------------------------------------------------------------------------------------

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
    lag: int = 0

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
        return [layer for layer in self.layers.values() if layer.host_fed]

    @torch.no_grad()
    def host_currents(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Input current of each host-fed layer for pixels ``x`` (N, C, H, W) in [0, 1], computed
        with the SNN's own modules (bit-identical to :class:`SpikingNetwork`'s direct coding)."""
        return host_currents(self.graph, x)

    def summary(self) -> list[dict[str, Any]]:
        out = []
        for layer in list(self.layers.values()) + [self.output]:
            out.append({"name": layer.name, "kind": layer.kind, "shape": list(layer.shape), "lag": layer.lag,
                        "host_fed": layer.host_fed,
                        "terms": [{"name": t.name, "src": t.src, "kind": t.kind, "weight_shape": list(t.weight.shape),
                                   "stride": list(t.stride), "padding": list(t.padding), "folded": t.folded}
                                  for t in layer.terms]})
        return out


def _depends_on_neurons(graph: Graph) -> dict[str, bool]:
    dep: dict[str, bool] = {}
    for node in graph:
        dep[node.name] = isinstance(node, Neuron) or any(dep[s] for s in node.inputs)
    return dep


@torch.no_grad()
def host_currents(graph: Graph, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Currents into the host-fed neuron layers (see :class:`DeployPlan`)."""
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
            if not dep[node.inputs[0]]:
                out[node.name] = vals[node.inputs[0]]
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
    out_node = graph[graph.output]
    if not isinstance(out_node, Linear):
        raise UnsupportedLayerError(f"the output node {graph.output!r} is a {out_node.TYPE}; Lava deployment needs "
                                    f"a non-spiking linear readout as the last layer")
    dep = _depends_on_neurons(graph)
    layers: dict[str, Layer] = {}
    for node in graph:
        if not isinstance(node, Neuron):
            continue
        layer = Layer(node.name, tuple(node.shape), "neuron", node.threshold, node.leak,
                      node.reset if reset == "match" else "zero", node.v_init)
        if not dep[node.inputs[0]]:
            layer.host_fed, layer.lag = True, 0
        else:
            layer.terms = _terms_into(graph, node.inputs[0], node.name)
            if any(t.src == graph.input.name for t in layer.terms):
                raise UnsupportedLayerError(f"neuron {node.name!r} mixes the image and spikes as input; "
                                            f"not supported on Lava")
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


# --------------------------------------------------------------------------------------------
# Fixed point
# --------------------------------------------------------------------------------------------

W_MANT_MAX = 127  # 8-bit signed mantissa; Lava stores 2*m in [-256, 254]
VTH_MAX = (1 << 17) - 1
VTH_TARGET = 1 << 12
BIAS_MANT_MAX = (1 << 12) - 1  # 13-bit signed
BIAS_EXP = 6
UV_MAX = (1 << 23) - 1  # 24-bit u, v
A_IN_MAX = 1 << 17  # |a_in| << 6 must fit 24 bits
DECAY_MAX = 4095


@dataclass
class QTerm:
    term: Term
    mant: np.ndarray  # int, in [-128, 127]
    exp: int  # >= 0
    rel_error: float  # ||W_q - W|| / ||W||

    @property
    def int_weight(self) -> np.ndarray:
        """Effective integer weight in a_in units: ``2 m << e``."""
        return (2 * self.mant.astype(np.int64)) << self.exp

    @property
    def lava_weight(self) -> np.ndarray:
        """What Lava's Dense stores (with ``weight_exp = e``)."""
        return (2 * self.mant).astype(np.int32)


@dataclass
class QLayer:
    name: str
    scale: float  # A: integer a_in units per float unit of current
    vth: int
    dv: int
    du: int
    v0: int  # initial membrane, v units (already << 6)
    bias_mant: np.ndarray | None  # int, torch order; None for host-fed (per image) layers
    terms: list[QTerm]
    threshold_rel_error: float
    bias_rel_error: float
    bias_clipped: int
    leak_error: float
    input_bound: float  # worst-case |current| (float units) used to pick the scale


@dataclass
class FixedPlan:
    plan: DeployPlan
    layers: dict[str, QLayer]
    output: QLayer
    out_bias_int: np.ndarray  # added T times to the summed output currents

    def quantize_host_current(self, name: str, current: torch.Tensor) -> np.ndarray:
        """Per-image bias mantissas (N, *shape) for a host-fed layer, 13-bit clipped."""
        q = torch.round(current.double() * self.layers[name].scale).clamp(-BIAS_MANT_MAX - 1, BIAS_MANT_MAX)
        return q.to(torch.int64).numpy()

    def report(self) -> list[dict[str, Any]]:
        rows = []
        for ql in list(self.layers.values()) + [self.output]:
            layer = self.plan.layers.get(ql.name, self.plan.output)
            rows.append({
                "layer": ql.name, "kind": layer.kind, "scale": ql.scale, "vth_mant": ql.vth, "du": ql.du,
                "dv": ql.dv, "v_init_mant": ql.v0 >> 6 if ql.v0 >= 0 else -((-ql.v0) >> 6),
                "bias_exp": BIAS_EXP, "host_fed": layer.host_fed,
                "threshold_rel_error": ql.threshold_rel_error, "bias_rel_error": ql.bias_rel_error,
                "bias_clipped": ql.bias_clipped, "leak_abs_error": ql.leak_error,
                "weights": [{"term": q.term.name, "src": q.term.src, "weight_exp": q.exp,
                             "mant_min": int(q.mant.min()) if q.mant.size else 0,
                             "mant_max": int(q.mant.max()) if q.mant.size else 0,
                             "rel_l2_error": q.rel_error} for q in ql.terms],
            })
        return rows


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    n = float(b.norm())
    return float((a - b).norm()) / n if n > 0 else 0.0


def _fan_in_bound(layer: Layer) -> float:
    """max over neurons of sum |w| over its terms (all inputs spiking) + |bias|: a worst-case
    current in float units."""
    total = None
    for t in layer.terms:
        w = t.weight.abs()
        if t.kind == "conv":
            ones = torch.ones(1, t.src_shape[0], *t.src_shape[1:])
            s = F.conv2d(ones, w, None, t.stride, t.padding, 1, t.groups)[0]
        else:
            s = w.sum(1)
        total = s if total is None else total + s
    if total is None:
        total = torch.zeros(layer.shape)
    if layer.bias is not None:
        total = total + layer.bias.abs().view(total.shape)
    return float(total.max()) if total.numel() else 0.0


def _host_bound(graph: Graph, layer: Layer) -> float:
    """Worst-case |input current| of a host-fed layer over all pixel values in [0, 1]: the host
    path is affine in the normalised image, so |I| <= |W| applied to max|x_norm| plus |b|."""
    g_abs = graph.copy()
    for node in g_abs.weighted():
        node.weight = node.weight.abs()
        if node.bias is not None:
            node.bias = node.bias.abs()
    mean = torch.tensor(graph.meta["mean"], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(graph.meta["std"], dtype=torch.float32).view(1, -1, 1, 1)
    amax = torch.maximum(mean.abs(), (1 - mean).abs()) / std  # max |normalised pixel| per channel
    x = (amax * std + mean).expand(1, *graph.input.shape)  # "pixels" whose normalised value is amax
    cur = host_currents(g_abs, x)[layer.name]
    return float(cur.abs().max()) * 1.0001


def _choose_scale(threshold: float, wmax: float, fan_bound: float) -> float:
    """The layer scale A (see module docstring)."""
    a_cap = min(VTH_MAX / threshold, (A_IN_MAX - 1) / fan_bound if fan_bound > 0 else math.inf)
    if wmax <= 0:
        return min(VTH_TARGET / threshold, a_cap)
    a0 = 2 * W_MANT_MAX / wmax
    e = 0
    while threshold * a0 * 2 ** e < VTH_TARGET and a0 * 2 ** (e + 1) <= a_cap and e < 16:
        e += 1
    a = a0 * 2 ** e
    return min(a, a_cap)


def _quantize_term(t: Term, scale: float) -> QTerm:
    w = t.weight.double()
    wmax = float(w.abs().max()) if w.numel() else 0.0
    e = 0
    while wmax * scale / 2 ** (e + 1) > W_MANT_MAX + 0.5 and e < 24:
        e += 1
    mant = torch.round(w * scale / 2 ** (e + 1)).clamp(-W_MANT_MAX - 1, W_MANT_MAX)
    wq = mant * 2 ** (e + 1) / scale
    return QTerm(t, mant.to(torch.int64).numpy(), e, _rel(wq, w))


def quantize_plan(plan: DeployPlan) -> FixedPlan:
    """Loihi-style fixed point for every layer of ``plan`` (see module docstring)."""
    graph = plan.graph
    qlayers: dict[str, QLayer] = {}
    for layer in plan.layers.values():
        th = float(layer.threshold)
        if layer.host_fed:
            bound = _host_bound(graph, layer)
            scale = min(VTH_TARGET / th, BIAS_MANT_MAX / bound if bound > 0 else math.inf, VTH_MAX / th)
            qterms: list[QTerm] = []
        else:
            bound = _fan_in_bound(layer)
            wmax = max((float(t.weight.abs().max()) for t in layer.terms if t.weight.numel()), default=0.0)
            scale = _choose_scale(th, wmax, bound)
            qterms = [_quantize_term(t, scale) for t in layer.terms]
        vth = int(round(th * scale))
        vth = max(1, min(VTH_MAX, vth))
        dv_f = (1.0 - float(layer.leak)) * 4096
        dv = int(min(DECAY_MAX, max(0, round(dv_f))))
        leak_err = abs((4096 - dv) / 4096 - float(layer.leak))
        v0 = int(round(float(layer.v_init) * th * scale)) << 6
        bias_mant, b_err, clipped = None, 0.0, 0
        if layer.bias is not None:
            bq = torch.round(layer.bias.double() * scale)
            clipped = int(((bq > BIAS_MANT_MAX) | (bq < -BIAS_MANT_MAX - 1)).sum())
            bq = bq.clamp(-BIAS_MANT_MAX - 1, BIAS_MANT_MAX)
            b_err = _rel(bq / scale, layer.bias.double())
            bias_mant = bq.to(torch.int64).numpy()
        qlayers[layer.name] = QLayer(layer.name, scale, vth, dv, DECAY_MAX, v0, bias_mant, qterms,
                                     abs(vth / scale - th) / th, b_err, clipped, leak_err, bound)
    out = plan.output
    wmax = max((float(t.weight.abs().max()) for t in out.terms if t.weight.numel()), default=0.0)
    bound = _fan_in_bound(out)
    # no threshold here: use the bias magnitude (or the weights) as the precision reference
    ref = float(out.bias.abs().max()) if out.bias is not None and float(out.bias.abs().max()) > 0 else wmax
    scale = 2 * W_MANT_MAX / wmax if wmax > 0 else 1.0
    while ref * scale < VTH_TARGET and bound * scale * 2 < UV_MAX:  # the sink reads a_out sums (int32)
        scale *= 2
    qterms = [_quantize_term(t, scale) for t in out.terms]
    ob = torch.round(out.bias.double() * scale)
    qout = QLayer(out.name, scale, 0, DECAY_MAX, DECAY_MAX, 0, ob.to(torch.int64).numpy(), qterms, 0.0,
                  _rel(ob / scale, out.bias.double()), 0, 0.0, bound)
    return FixedPlan(plan, qlayers, qout, ob.to(torch.int64).numpy())


# --------------------------------------------------------------------------------------------
# Bit-accurate reference of Lava's fixed_pt LIF / Dense / Conv (fast agreement checks only;
# the claims come from real Lava runs)
# --------------------------------------------------------------------------------------------

def _wrap24(x: torch.Tensor) -> torch.Tensor:
    """Lava's u wrap-around (``PyLifModelBitAcc``: > 2^23 wraps by 2^24)."""
    m = 1 << 23
    y = torch.where(x > m, x - 2 * m, x)
    return torch.where(y <= -m, x + 2 * m, y)


def _clamp24(x: torch.Tensor) -> torch.Tensor:
    """Lava Conv's ``signed_clamp(x, 24)`` (modular)."""
    base = 1 << 24
    return torch.remainder(x + base // 2, base) - base // 2


def _decay(x: torch.Tensor, d: int) -> torch.Tensor:
    """``sign(x) * ((|x| * (4096 - d)) >> 12)`` as in Lava's bit-accurate LIF."""
    return torch.sign(x) * torch.div(x.abs() * (4096 - d), 4096, rounding_mode="floor")


def _term_int(q: QTerm, s: torch.Tensor) -> torch.Tensor:
    """Integer a_out of one term for spikes ``s`` (N, *src_shape) as float64 0/1 (exact)."""
    t = q.term
    if t.kind == "conv":
        w = torch.from_numpy(q.int_weight).double()
        y = F.conv2d(s, w, None, t.stride, t.padding, 1, t.groups)
        return _clamp24(torch.round(y).to(torch.int64))
    w = torch.from_numpy(2 * q.mant).double()
    acc = torch.round(s.reshape(s.shape[0], -1) @ w.t()).to(torch.int64)
    return acc << q.exp


@torch.no_grad()
def reference_fixed(fixed: FixedPlan, x: torch.Tensor, return_spikes: bool = False):
    """Run the fixed-point network on pixels ``x`` with the integer semantics of Lava's
    ``fixed_pt`` models. Returns integer output sums (N, K) (T steps, bias included) and,
    optionally, spike counts per layer (N,)."""
    plan = fixed.plan
    T = plan.timesteps
    n = x.shape[0]
    host = plan.host_currents(x)
    state: dict[str, dict[str, torch.Tensor]] = {}
    for name, layer in plan.layers.items():
        ql = fixed.layers[name]
        if layer.host_fed:
            bias = torch.from_numpy(fixed.quantize_host_current(name, host[name]))
        else:
            bias = torch.from_numpy(ql.bias_mant).unsqueeze(0).expand(n, *layer.shape)
        state[name] = {"v": torch.full((n, *layer.shape), ql.v0, dtype=torch.int64),
                       "bias": bias.to(torch.int64) << BIAS_EXP,
                       "s": torch.zeros((n, *layer.shape), dtype=torch.float64)}
    counts = {name: torch.zeros(n, dtype=torch.int64) for name in plan.layers}
    acc = torch.zeros(n, plan.output.size, dtype=torch.int64)
    for _ in range(T):
        for name, layer in plan.layers.items():
            ql = fixed.layers[name]
            st = state[name]
            a_in = torch.zeros((n, *layer.shape), dtype=torch.int64)
            for q in ql.terms:
                a_in = a_in + _term_int(q, state[q.term.src]["s"]).view(n, *layer.shape)
            u = _wrap24(a_in << 6)  # du = 4095: the current decays fully each step
            v = _decay(st["v"], ql.dv) + u + st["bias"]
            v = v.clamp(-UV_MAX, UV_MAX)
            s = v > (ql.vth << 6)
            if layer.reset == "subtract":
                v = torch.where(s, v - (ql.vth << 6), v)
            else:
                v = torch.where(s, torch.zeros_like(v), v)
            st["v"], st["s"] = v, s.double()
            counts[name] += s.view(n, -1).sum(1)
        for q in fixed.output.terms:
            acc += _term_int(q, state[q.term.src]["s"]).view(n, -1)
    acc += torch.from_numpy(fixed.out_bias_int).view(1, -1) * T
    return (acc, counts) if return_spikes else acc


# --------------------------------------------------------------------------------------------
# Resource mapping
# --------------------------------------------------------------------------------------------

def resource_map(plan: DeployPlan, target: Target, chips: int = 1) -> dict[str, Any]:
    """Cores per layer (neuron and synapse-memory bound), total, and whether it fits."""
    rows = []
    for layer in list(plan.layers.values()) + [plan.output]:
        neurons = layer.size
        synapses = 0 if layer.host_fed else sum(t.synapse_count() for t in layer.terms)
        c_neur = math.ceil(neurons / target.neurons_per_core)
        c_syn = math.ceil(synapses / target.synapses_per_core)
        rows.append({"layer": layer.name, "kind": layer.kind, "neurons": neurons, "synapses": synapses,
                     "cores_for_neurons": c_neur, "cores_for_synapses": c_syn, "cores": max(c_neur, c_syn, 1),
                     "bound_by": "synapses" if c_syn > c_neur else "neurons",
                     "host_fed": layer.host_fed})
    total = sum(r["cores"] for r in rows)
    available = chips * target.cores_per_chip
    chips_needed = math.ceil(total / target.cores_per_chip)
    biggest = sorted(rows, key=lambda r: -r["cores"])[:3]
    advice = []
    if total > target.cores_per_chip:
        advice.append(f"needs {chips_needed} {target.name} chips ({total} cores); pass --chips {chips_needed} "
                      f"for a multi-chip system")
        advice.append("largest layers: " + ", ".join(f"{r['layer']} ({r['cores']} cores, bound by {r['bound_by']})"
                                                      for r in biggest))
        advice.append("to fit one chip: reduce the channel width of the largest layers, prune weights "
                      "(synapse memory dominates convolutions stored per synapse), or lower weight precision")
    return {
        "target": target.to_dict(), "chips": chips, "layers": rows,
        "total_neurons": sum(r["neurons"] for r in rows), "total_synapses": sum(r["synapses"] for r in rows),
        "cores_needed": total, "cores_available": available, "chips_needed": chips_needed,
        "fits_one_chip": total <= target.cores_per_chip, "fits": total <= available, "advice": advice,
        "notes": ["convolution synapses are counted one per in-bounds tap (no weight sharing): an upper bound; "
                  "synapse memory is taken as weight_bits per synapse without index overhead: optimistic",
                  "host-fed layers receive their input current from the host (their synapses are off chip)",
                  "relay layers equalise residual-path delays (one step per synaptic hop on Loihi)"],
    }


def check_fits(mapping: dict[str, Any]) -> None:
    """Raise :class:`TargetLimitError` when the mapping exceeds the requested chips."""
    if mapping["fits"]:
        return
    t = mapping["target"]
    over = mapping["cores_needed"] - mapping["cores_available"]
    worst = max(mapping["layers"], key=lambda r: r["cores"])
    detail = (f"layer {worst['layer']!r} alone needs {worst['cores']} cores "
              f"({worst['synapses']:,} synapses at {t['synapses_per_core']:,} per core; "
              f"{worst['neurons']:,} neurons at {t['neurons_per_core']:,} per core)")
    raise TargetLimitError(
        f"the network needs {mapping['cores_needed']} cores but {mapping['chips']} {t['name']} chip(s) have "
        f"{mapping['cores_available']} (exceeds by {over} cores); {detail}. "
        f"Use --chips {mapping['chips_needed']}, or narrow/prune the largest layers")
