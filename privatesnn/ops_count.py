"""Synaptic-operation counts measured during simulation (NeuroBench-style SynOps), per layer and per sample.

Forward hooks on a :class:`~privatesnn.snn.SpikingNetwork`'s synaptic modules (``nn.Conv2d``,
``nn.Linear``, ``nn.AvgPool2d``) and neuron modules see every tensor that flows, so nothing is
estimated from average rates. Definitions (NeuroBench ``SynapticOperations``, Yik et al. 2025; see
docs/energy.md), all per sample, averaged over the samples counted, summed over all T timesteps:

* **Dense**: every input position times every synapse it has, at every step, whatever the
  activity: ``sum_x fanout_all(x) * T``. Padding is not a synapse, so this is exact at borders
  (NeuroBench computes it with all-ones weights and inputs).
* **Effective ops**: each nonzero input element times the number of *nonzero* weights it actually
  reaches (its exact fan-out, border, stride, padding and groups included). An input tensor whose
  values are all in {-1, 0, 1} is binary: its ops are accumulates (**ACs**); otherwise they are
  multiply-accumulates (**MACs**): a direct-coded (analog) first layer, or a layer fed by an average
  pooling of spikes. Biases are not synaptic operations (NeuroBench); they are counted apart.
* A direct-coded input is simulated once as a constant current (time dim 1), but it stands for T
  identical steps: its ops are counted T times.
* **Average pooling** is not a synaptic layer in NeuroBench; its additions are counted apart
  (``pool_adds``: each nonzero input times the windows it falls in). Max pooling, flatten and the
  residual ``Add`` (two synaptic paths accumulating into the same membrane) cost no counted op.
* **Neuron updates**: neurons x T per sample; an update is *active* when the neuron receives a
  nonzero current that step or spikes (its state changes), else inactive. The non-spiking readout
  layer counts K x T active updates. **Spikes** per layer; rate-coded input spikes apart.

The fan-out of every input position is computed once per layer from the nonzero-weight mask, as
the gradient of ``sum(conv(x, mask))`` with respect to ``x`` at ``x = 1`` (equivalently a transposed
convolution of an all-ones output with the mask, which is what sinabs does); the effective count of a
batch is then ``sum_x count_nonzero(x) * fanout(x)``, exact and cheap.

For the ANN, :func:`count_ann` runs the same graph as a ReLU network: dense MACs (every input with
every synapse) and effective MACs (zero activations skipped), per layer.

Example::

    counts = count_snn(graph, images, timesteps=[8, 16])[16]
    counts.totals()["eff_acs"]          # accumulates per sample over 16 steps
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import PrivsnnError
from .graph import AvgPool, Conv, Flatten, Graph, Linear, MaxPool, Neuron
from .layers import module_key
from .neurons import SpikingNeuron
from .snn import GraphANN, SpikingNetwork

SPIKES, ANALOG, MIXED = "spikes", "analog", "mixed"


def synop_weights(graph: Graph) -> dict[str, float]:
    """Each neuron layer's share of the dense synaptic connections that spikes travel: the number of
    (input, nonzero weight, output) triples of every synaptic layer it feeds (through flatten and
    pooling), so that ``sum(w[l] * rate[l])`` is the share of the dense synaptic operations a step
    performs (the energy that a spike-rate penalty weighted this way targets; on ResNet-20 a spike into
    the classifier head costs about a fiftieth of one into a 3x3 convolution). Normalised to sum 1
    (all zero: equal shares)."""
    def connections(name: str) -> float:
        total = 0.0
        for c in graph.consumers(name):
            if isinstance(c, Conv):  # exact at borders (padding is no synapse), zero weights left out
                mask = (c.weight != 0).to(torch.float64)
                ones = torch.ones((1, *graph[name].shape), dtype=torch.float64)
                total += float(F.conv2d(ones, mask, None, c.stride, c.padding, 1, c.groups).sum())
            elif isinstance(c, Linear):
                total += float((c.weight != 0).sum())
            elif isinstance(c, AvgPool) and not isinstance(c, MaxPool):
                total += float(math.prod(c.shape)) * c.kernel[0] * c.kernel[1] + connections(c.name)
            elif isinstance(c, (Flatten, MaxPool)):
                total += connections(c.name)
        return total

    raw = {n.name: connections(n.name) for n in graph.neurons()}
    norm = sum(raw.values())
    return {k: (v / norm if norm > 0 else 1.0 / len(raw)) for k, v in raw.items()}


RATE_WEIGHTINGS = ("layers", "synops")


def weighted_rate(rates: dict[str, torch.Tensor], weights: dict[str, float] | None = None) -> torch.Tensor:
    """The spike-rate penalty's value: the mean of the layers' rates (``weights`` None: every layer
    alike), or their sum weighted by :func:`synop_weights` (the share of dense synaptic ops fired)."""
    if weights is None:
        return torch.stack(list(rates.values())).mean()
    return torch.stack([weights[k] * r for k, r in rates.items()]).sum()


def is_binary(x: torch.Tensor) -> bool:
    """NeuroBench's rule: an input is spiking (its ops are ACs) iff every value is in {-1, 0, 1}."""
    return bool(((x == 0) | (x == 1) | (x == -1)).all())


# --- fan-out maps --------------------------------------------------------------------------------

def _conv_like(module: nn.Module, in_shape: tuple[int, ...], weight: torch.Tensor | None) -> torch.Tensor:
    """Per-input-position fan-out of a conv / avg-pool with the given 0/1 weight mask."""
    x = torch.ones((1,) + tuple(in_shape), dtype=torch.float64, requires_grad=True)
    with torch.enable_grad():
        if isinstance(module, nn.Conv2d):
            if module.padding_mode != "zeros":
                raise PrivsnnError(f"op counter: conv padding_mode {module.padding_mode!r} is not supported "
                                   f"(only zero padding)")
            if isinstance(module.padding, str):
                raise PrivsnnError("op counter: string conv padding is not supported")
            y = F.conv2d(x, weight.to(torch.float64), None, module.stride, module.padding, module.dilation,
                         module.groups)
        else:  # AvgPool2d as a depthwise all-ones conv (each window is one addition per input it holds)
            if module.ceil_mode:
                raise PrivsnnError("op counter: AvgPool2d with ceil_mode=True is not supported")
            k = _pair(module.kernel_size)
            c = in_shape[0]
            y = F.conv2d(x, torch.ones(c, 1, *k, dtype=torch.float64), None, _pair(module.stride),
                         _pair(module.padding), 1, c)
        y.sum().backward()
    return x.grad[0].detach()


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def fanout_maps(module: nn.Module, in_shape: tuple[int, ...], routing: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(effective, dense) fan-out of every input position (shape ``in_shape``, float64):
    effective counts only nonzero weights; dense counts every synapse. For a fixed ``routing``
    layer (a residual shortcut stored as a 0/1-pattern conv) the zero entries are not synapses, so
    its dense fan-out is the nonzero-weight fan-out too."""
    if isinstance(module, nn.Linear):
        w = module.weight.detach()
        eff = (w != 0).sum(0).to(torch.float64)
        dense = eff.clone() if routing else torch.full((w.shape[1],), float(w.shape[0]), dtype=torch.float64)
        return eff.view(in_shape), dense.view(in_shape)
    if isinstance(module, nn.Conv2d):
        w = module.weight.detach()
        eff = _conv_like(module, in_shape, (w != 0).to(torch.float64))
        return eff, (eff.clone() if routing else _conv_like(module, in_shape, torch.ones_like(w, dtype=torch.float64)))
    if isinstance(module, nn.AvgPool2d):
        f = _conv_like(module, in_shape, None)
        return f, f.clone()
    raise PrivsnnError(f"op counter: no fan-out rule for {type(module).__name__}")


# --- results -------------------------------------------------------------------------------------

@dataclass
class SynapseLayerCount:
    """One conv / linear / avg-pool layer, per sample, all steps. For ``avgpool`` the op fields are
    pooling additions, not synaptic operations."""

    name: str
    type: str  # conv | linear | avgpool
    input: str  # spikes | analog | mixed (NeuroBench's binary test on the layer's input)
    dense: float
    eff_acs: float
    eff_macs: float
    input_events: float  # nonzero input elements (spikes, or nonzero analog values)
    input_positions: float  # input elements x steps
    bias_adds: float  # one per output element per step when the layer has a bias
    outputs: float  # output elements x steps
    constant_input: bool  # direct-coded input simulated once, counted for every step
    weights: int = 0
    nonzero_weights: int = 0
    routing: bool = False  # a fixed residual shortcut (identity / option-A), not a learned layer

    @property
    def eff_ops(self) -> float:
        return self.eff_acs + self.eff_macs


@dataclass
class NeuronLayerCount:
    """One layer of spiking neurons (or the non-spiking readout), per sample, all steps."""

    name: str
    neurons: int
    updates: float
    active_updates: float
    spikes: float
    leak: float = 1.0
    reset: str = "subtract"
    readout: bool = False
    bias: bool = False  # its input currents include a bias (counted on the synaptic layer)

    @property
    def spike_rate(self) -> float:
        """Spikes per neuron per timestep."""
        return self.spikes / self.updates if self.updates else 0.0


def _totals(layers: list[SynapseLayerCount]) -> dict[str, float]:
    syn = [l for l in layers if l.type != "avgpool"]
    pools = [l for l in layers if l.type == "avgpool"]
    return {
        "dense": sum(l.dense for l in syn),
        "eff_acs": sum(l.eff_acs for l in syn),
        "eff_macs": sum(l.eff_macs for l in syn),
        "synops": sum(l.eff_ops for l in syn),
        "bias_adds": sum(l.bias_adds for l in syn),
        "pool_adds": sum(l.eff_ops for l in pools),
        "pool_adds_dense": sum(l.dense for l in pools),
    }


@dataclass
class SNNCounts:
    """Everything counted for one T, per sample (averaged over ``samples``)."""

    timesteps: int
    samples: int
    encoding: str
    layers: list[SynapseLayerCount]
    neurons: list[NeuronLayerCount]
    input_spikes: float = 0.0  # rate-coded input events (0 for a direct-coded input)
    accuracy: float | None = None

    def totals(self) -> dict[str, float]:
        t = _totals(self.layers)
        spiking = [n for n in self.neurons if not n.readout]
        t.update(
            neuron_updates=sum(n.updates for n in self.neurons),
            active_updates=sum(n.active_updates for n in self.neurons),
            inactive_updates=sum(n.updates - n.active_updates for n in self.neurons),
            spikes=sum(n.spikes for n in spiking),
            input_spikes=self.input_spikes,
            resets=sum(n.spikes for n in spiking),
            leak_updates=sum(n.updates for n in spiking if n.leak != 1.0),
            spiking_neurons=sum(n.neurons for n in spiking),
        )
        t["spike_rate"] = t["spikes"] / (t["spiking_neurons"] * self.timesteps) if t["spiking_neurons"] else 0.0
        return t

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "snn", "timesteps": self.timesteps, "samples": self.samples, "encoding": self.encoding,
                "accuracy": self.accuracy, "totals": self.totals(),
                "layers": [{**asdict(l), "eff_ops": l.eff_ops} for l in self.layers],
                "neurons": [{**asdict(n), "spike_rate": n.spike_rate} for n in self.neurons]}


@dataclass
class ANNCounts:
    """The graph run as a ReLU ANN, per sample: MACs (dense and zero-skipping) per layer."""

    samples: int
    layers: list[SynapseLayerCount]
    neurons: list[dict[str, Any]] = field(default_factory=list)  # name, neurons, nonzero
    readout: int = 0
    accuracy: float | None = None

    def totals(self) -> dict[str, float]:
        t = _totals(self.layers)
        routing = [l for l in self.layers if l.routing]
        t["residual_adds"] = sum(l.dense for l in routing)
        t["dense_macs"] = t["dense"] - t["residual_adds"]
        t["relu_neurons"] = float(sum(n["neurons"] for n in self.neurons))
        t["nonzero_activations"] = float(sum(n["nonzero"] for n in self.neurons))
        t["readout"] = float(self.readout)
        return t

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "ann", "samples": self.samples, "accuracy": self.accuracy, "totals": self.totals(),
                "layers": [{**asdict(l), "eff_ops": l.eff_ops} for l in self.layers],
                "neurons": list(self.neurons), "readout": self.readout}


# --- the hooks -----------------------------------------------------------------------------------

class _SynTally:
    """Per-step sums (float64, length T) for one synaptic module."""

    def __init__(self, name: str, kind: str, module: nn.Module, T: int, routing: bool = False,
                 reads_spikes: bool = False, signed_input: bool = False):
        self.name, self.kind, self.module, self.T, self.routing = name, kind, module, T, routing
        self.reads_spikes = reads_spikes  # fed by a neuron layer: its input is in {0, 1} by construction,
        self.signed_input = signed_input  # or in {-1, 0, 1} for a signed neuron layer
        self.fan_eff: torch.Tensor | None = None
        self.fan_dense: torch.Tensor | None = None
        z = lambda: torch.zeros(T, dtype=torch.float64)  # noqa: E731
        self.dense, self.acs, self.macs, self.events, self.positions, self.bias, self.outputs = (
            z(), z(), z(), z(), z(), z(), z())
        self.seen_binary = self.seen_analog = False
        self.constant = False

    def add(self, x: torch.Tensor, y: torch.Tensor, T: int, N: int, force_mac: bool) -> None:
        B = x.shape[0]
        if B == T * N:
            steps = T
        elif B == N:
            steps = 1  # a constant (direct-coded) input: one pass stands for all T steps
            self.constant = self.constant or T > 1
        else:
            raise PrivsnnError(f"op counter: layer {self.name!r} got a batch of {B}, expected {T}x{N} or {N}")
        in_shape = tuple(x.shape[1:])
        if self.fan_eff is None:
            self.fan_eff, self.fan_dense = fanout_maps(self.module, in_shape, self.routing)
        xs = x.reshape(steps, N, -1)
        # (steps, positions): nonzero count over the batch (float sums are exact below 2**24 samples)
        if self.reads_spikes:  # spikes from a neuron layer: summing them (|s| if signed) counts them (fast path)
            binary = True
            nz = (xs.abs() if self.signed_input else xs).sum(1, dtype=torch.float32)
        else:
            binary = is_binary(x)
            nz = xs.ne(0).sum(1, dtype=torch.float32)
        binary = binary and not force_mac
        nz = nz.to(torch.float64)
        eff = nz @ self.fan_eff.reshape(-1).to(nz.device, torch.float64)
        events = nz.sum(1)
        if steps == 1 and T > 1:
            eff, events = eff.expand(T), events.expand(T)
        if self.kind == "avgpool" or binary or (force_mac and self.routing):  # ANN shortcut: an add
            self.acs += eff.cpu()
        else:
            self.macs += eff.cpu()
        self.seen_binary |= binary
        self.seen_analog |= not binary
        self.events += events.cpu()
        per_step = float(N)
        self.dense += float(self.fan_dense.sum()) * per_step
        self.positions += math.prod(in_shape) * per_step
        n_out = math.prod(y.shape[1:]) * per_step
        self.outputs += n_out
        if getattr(self.module, "bias", None) is not None:
            self.bias += n_out

    def result(self, t: int, samples: int) -> SynapseLayerCount:
        s = lambda v: float(v[:t].sum()) / samples  # noqa: E731
        inp = MIXED if (self.seen_binary and self.seen_analog) else (SPIKES if self.seen_binary else ANALOG)
        if self.kind == "avgpool":
            inp = SPIKES if self.seen_binary and not self.seen_analog else inp
        w = getattr(self.module, "weight", None)
        return SynapseLayerCount(
            name=self.name, type=self.kind, input=inp, dense=s(self.dense), eff_acs=s(self.acs),
            eff_macs=s(self.macs), input_events=s(self.events), input_positions=s(self.positions),
            bias_adds=s(self.bias), outputs=s(self.outputs), constant_input=self.constant,
            weights=int(w.numel()) if w is not None else 0,
            nonzero_weights=int((w != 0).sum()) if w is not None else 0, routing=self.routing)


class _NeuronTally:
    def __init__(self, name: str, T: int):
        self.name, self.T = name, T
        z = lambda: torch.zeros(T, dtype=torch.float64)  # noqa: E731
        self.updates, self.active, self.spikes = z(), z(), z()
        self.neurons = 0

    def add(self, currents: torch.Tensor, spikes: torch.Tensor, windowed: bool = False) -> None:
        T = spikes.shape[0]
        self.neurons = math.prod(spikes.shape[2:])
        # active: nonzero current or a spike; |I| + |s| > 0 exactly then; float ops are fast. A signed
        # neuron's -1 spike is a spike (an event on the wire, a reset): counted by |s|
        mag = spikes.abs()
        # a windowed neuron updates 2T times: T steps integrating (active where a current comes in), then
        # T steps firing (active where it spikes); its idle steps outside its windows are not counted (as
        # the pipeline fill of a plain SNN is not)
        active = currents.abs().sign().expand_as(mag) + mag if windowed else torch.add(currents.abs(), mag).sign_()
        N = spikes.shape[1]
        # sum over the batch in float32 (exact: at most N), then over positions in float64
        self.spikes[:T] += mag.reshape(T, N, -1).sum(1).double().sum(1).cpu()
        self.active[:T] += active.reshape(active.shape[0], N, -1).sum(1).double().sum(1).cpu()
        self.updates[:T] += float(math.prod(spikes.shape[1:])) * (2 if windowed else 1)


def _spike_source(graph: Graph, node) -> Neuron | None:
    """The neuron layer whose output is ``node``'s input (through flatten / max pooling only), or None."""
    src = graph[node.inputs[0]]
    while isinstance(src, (Flatten, MaxPool)):
        src = graph[src.inputs[0]]
    return src if isinstance(src, Neuron) else None


class _Counter:
    """Attach hooks to ``net`` (a SpikingNetwork or GraphANN); use as a context manager."""

    def __init__(self, net: nn.Module, graph: Graph, T: int, ann: bool = False):
        self.graph, self.T, self.ann = graph, T, ann
        self.N = 0
        self.syn: dict[str, _SynTally] = {}
        self.neu: dict[str, _NeuronTally] = {}
        self.handles: list[Any] = []
        self.ann_nonzero: dict[str, float] = {}
        for node in graph:
            key = module_key(node.name)
            if key in net.synapses and not isinstance(net.synapses[key], nn.Flatten):
                mod = net.synapses[key]
                kind = "conv" if isinstance(mod, nn.Conv2d) else "linear" if isinstance(mod, nn.Linear) else "avgpool"
                src = None if ann else _spike_source(graph, node)
                tally = _SynTally(node.name, kind, mod, T, routing=not getattr(node, "trainable", True),
                                  reads_spikes=src is not None, signed_input=src is not None and src.signed)
                self.syn[node.name] = tally
                self.handles.append(mod.register_forward_hook(self._syn_hook(tally)))
            if isinstance(node, Neuron) and not ann:
                cell = net.neurons[key]
                tally = _NeuronTally(node.name, T)
                self.neu[node.name] = tally
                self.handles.append(cell.register_forward_hook(self._neuron_hook(tally)))

    def _syn_hook(self, tally: _SynTally):
        def hook(module, args, output):
            tally.add(args[0].detach(), output, self.T, self.N, self.ann)
        return hook

    @staticmethod
    def _neuron_hook(tally: _NeuronTally):
        def hook(module: SpikingNeuron, args, output):
            tally.add(args[0].detach(), output.detach(), module.windowed)
        return hook

    def __enter__(self) -> "_Counter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


def _batches(images: torch.Tensor, batch_size: int) -> Iterable[tuple[int, torch.Tensor]]:
    for i in range(0, len(images), batch_size):
        yield i, images[i:i + batch_size]


def _check_images(graph: Graph, images: torch.Tensor) -> None:
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(graph.input.shape):
        raise PrivsnnError(f"images have shape {tuple(images.shape[1:])}, the network takes "
                           f"{tuple(graph.input.shape)}")
    if len(images) == 0:
        raise PrivsnnError("no images to count on")


@torch.no_grad()
def count_snn(graph: Graph, images: torch.Tensor, timesteps: int | list[int], batch_size: int = 64,
              labels: torch.Tensor | None = None, seed: int = 0, device: torch.device | str = "cpu",
              progress: bool = False) -> dict[int, SNNCounts]:
    """Simulate ``graph`` as an SNN for max(timesteps) steps on ``images`` (pixels in [0, 1]) and
    count, per sample, for every T in ``timesteps`` (the first T steps of a longer run are exactly a
    T-step run; windowed neurons are not causal, so such a graph is simulated once per T). With ``labels``, each result also carries the accuracy at its T."""
    ts = sorted({int(t) for t in ([timesteps] if isinstance(timesteps, int) else timesteps)})
    if not ts or ts[0] <= 0:
        raise PrivsnnError(f"timesteps must be positive integers, got {timesteps}")
    _check_images(graph, images)
    if len(ts) > 1 and any(n.windowed for n in graph.neurons()):  # not causal: one simulation per T
        out: dict[int, SNNCounts] = {}
        for t in ts:
            out.update(count_snn(graph, images, t, batch_size, labels, seed, device, progress))
        return out
    T = ts[-1]
    torch.manual_seed(seed)  # rate coding draws random spikes
    net = SpikingNetwork(graph, T).to(device).eval()
    correct = {t: 0 for t in ts}
    from tqdm.auto import tqdm

    with _Counter(net, graph, T) as counter:
        n_batches = math.ceil(len(images) / batch_size)
        for i, xb in tqdm(_batches(images, batch_size), total=n_batches, desc=f"counting ops T={T}",
                          leave=False, disable=not progress):
            counter.N = len(xb)
            out, _ = net.run(xb.to(device), T)
            if labels is not None:
                yb = labels[i:i + len(xb)].to(device)
                csum = out.cumsum(0) if out.shape[0] > 1 else None
                for t in ts:
                    logits = out[0] if csum is None else csum[t - 1]
                    correct[t] += int((logits.argmax(1) == yb).sum())
    samples = len(images)
    inp_name = graph.input.name
    readout = graph[graph.output]
    result = {}
    for t in ts:
        layers = [tally.result(t, samples) for tally in counter.syn.values()]
        neurons = []
        for node in graph:
            if isinstance(node, Neuron):
                nt = counter.neu[node.name]
                neurons.append(NeuronLayerCount(
                    name=node.name, neurons=nt.neurons, updates=float(nt.updates[:t].sum()) / samples,
                    active_updates=float(nt.active[:t].sum()) / samples, spikes=float(nt.spikes[:t].sum()) / samples,
                    leak=float(node.leak), reset=node.reset,
                    bias=any(getattr(graph[s], "bias", None) is not None for s in node.inputs)))
        k = math.prod(readout.shape)
        neurons.append(NeuronLayerCount(name=readout.name, neurons=k, updates=float(k * t), active_updates=float(k * t),
                                        spikes=0.0, readout=True, bias=getattr(readout, "bias", None) is not None))
        input_spikes = 0.0
        if graph.input.encoding == "rate":
            first = next((l for l in layers if graph[l.name].inputs == [inp_name]), None)
            input_spikes = first.input_events if first is not None else 0.0
        acc = correct[t] / samples if labels is not None else None
        result[t] = SNNCounts(timesteps=t, samples=samples, encoding=graph.input.encoding, layers=layers,
                              neurons=neurons, input_spikes=input_spikes, accuracy=acc)
    return result


@torch.no_grad()
def count_ann(graph: Graph, images: torch.Tensor, batch_size: int = 256, labels: torch.Tensor | None = None,
              device: torch.device | str = "cpu") -> ANNCounts:
    """Run ``graph`` as a ReLU ANN and count MACs per layer (dense, and effective: zero inputs and
    zero weights skipped), pooling additions, ReLU neurons and their nonzero outputs, per sample.
    ANN inputs count as MACs whatever their values (fp/int MAC hardware); a fixed residual shortcut
    (``routing``) counts as additions (``eff_acs``, dense = its nonzero synapses), as the ANN adds it."""
    _check_images(graph, images)
    net = GraphANN(graph).to(device).eval()
    nonzero = {n.name: 0.0 for n in graph.neurons()}
    correct = 0
    with _Counter(net, graph, 1, ann=True) as counter:
        for i, xb in _batches(images, batch_size):
            counter.N = len(xb)
            out, acts = net(xb.to(device), record=True)
            for name, a in acts.items():
                nonzero[name] += float((a != 0).sum())
            if labels is not None:
                correct += int((out.argmax(1).cpu() == labels[i:i + len(xb)]).sum())
    samples = len(images)
    layers = [tally.result(1, samples) for tally in counter.syn.values()]
    neurons = [{"name": n.name, "neurons": math.prod(n.shape), "nonzero": nonzero[n.name] / samples}
               for n in graph.neurons()]
    return ANNCounts(samples=samples, layers=layers, neurons=neurons, readout=math.prod(graph[graph.output].shape),
                     accuracy=correct / samples if labels is not None else None)
