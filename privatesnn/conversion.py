"""ANN -> SNN conversion with thresholds balanced on synthetic images only.

Data-based normalisation (Rueckauer et al. 2017), computed on images synthesized from the ANN
itself: each neuron layer l gets a scale lambda_l (the max or a robust percentile of its ReLU
activations); every synaptic layer is rescaled ``W' = W * lambda_in / lambda_out``,
``b' = b / lambda_out`` so that all thresholds are 1 and a spike of layer l stands for lambda_l.
Residual paths are scaled to the neuron they feed. Optional layer-by-layer balancing on the spiking
network then corrects each layer's threshold so its firing rate matches the ANN's normalised
activation, layer after layer (earlier layers already fixed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .errors import PrivsnnError
from .extract import extract_graph
from .graph import Add, AvgPool, Flatten, Graph, Input, MaxPool, Neuron
from .models.loading import LoadedModel
from .snn import GraphANN, SpikingNetwork

MAX_SAMPLES_PER_LAYER = 2_000_000


@dataclass
class ConversionSettings:
    timesteps: int = 32
    threshold: str = "percentile:99.9"  # or "max"
    encoding: str = "direct"  # or "rate"
    balance: str = "none"  # or "snn": layer-by-layer rate matching on the spiking network
    reset: str = "subtract"
    leak: float = 1.0
    v_init: float = 0.5
    signed: bool = False  # signed neurons (also fire -1 spikes; privatesnn/neurons.py): low-T accuracy
    windowed: bool = False  # windowed IF neurons (integrate the whole window, then fire; binary spikes)
    batch_size: int = 128
    fold_pooling: bool = True  # fold average pools into the next layer (exact; binary inputs everywhere)
    qcfs_levels: int = 0  # > 0: QCFS fine-tuning with L levels by distillation (privatesnn/qcfs.py)
    qcfs_epochs: int = 30
    qcfs_lr: float = 1e-4
    qcfs_feature_weight: float = 1.0
    qcfs_rate_reg: float = 0.0  # > 0: penalise the QCFS levels (the windowed SNN's spikes at T = L)
    qcfs_rate_weighting: str = "layers"  # or "synops": each layer by the synaptic ops its spikes cost
    qcfs_kd_loss: str = "kl"
    qcfs_ema: float = 0.0  # > 0: keep the weights' exponential moving average (decay per step)
    qcfs_anchor: float = 0.0  # > 0: L2-SP pull of the weights towards the converted ANN's
    qcfs_prune: float = 0.0  # > 0: gradual magnitude pruning of the spike-fed layers to this sparsity
    qcfs_prune_input: float = 0.0  # the same for the layers that read the analog image
    qcfs_optimizer: str = "adam"
    qcfs_trapdoor: float = 0.0  # > 0: learn secret class triggers during QCFS fine-tuning (Trap-MID; privatesnn/qcfs.py)
    qcfs_trapdoor_augment: bool = False  # stamp the triggers before the random shift/flip
    qcfs_trapdoor_alpha: float = 0.3
    qcfs_misalign: float = 0.0  # > 0: penalise input gradients aligned with the ANN's (privatesnn/qcfs.py)
    trapdoor_key: int | None = None  # never recorded in the artifact
    seed: int = 0  # the QCFS fine-tuning's batch order, augmentation and CutMix draws


def parse_threshold(spec: str) -> float | None:
    """``"max"`` -> None; ``"percentile:P"`` -> P in (0, 100]."""
    if spec == "max":
        return None
    if spec.startswith("percentile:"):
        try:
            p = float(spec.split(":", 1)[1])
        except ValueError:
            p = float("nan")
        if 0 < p <= 100:
            return p
    raise PrivsnnError(f"--threshold must be 'max' or 'percentile:P' with 0 < P <= 100, got {spec!r}")


def ann_graph(loaded: LoadedModel) -> Graph:
    """Extract ``loaded`` into a graph and check that the graph reproduces the ANN."""
    meta = {"mean": list(loaded.mean), "std": list(loaded.std), "num_classes": loaded.num_classes,
            "model": loaded.describe()}
    graph = extract_graph(loaded.net, loaded.input_shape, meta)
    x = torch.rand(4, *loaded.input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = loaded.module()(x)
        got = GraphANN(graph).eval()(x)
    err = float((ref - got).abs().max())
    if not err <= 1e-3 * max(1.0, float(ref.abs().max())):
        raise PrivsnnError(f"internal check failed: the extracted graph differs from the ANN by {err:.3g}")
    return graph


def input_scale(graph: Graph) -> float:
    """Largest |normalised pixel| over pixels in [0, 1]: the rate code's full-scale value."""
    m = torch.tensor(graph.meta["mean"])
    s = torch.tensor(graph.meta["std"])
    return float(torch.maximum((0 - m).abs() / s, (1 - m).abs() / s).max())


@torch.no_grad()
def activation_scales(graph: Graph, images: torch.Tensor, percentile: float | None, batch_size: int,
                      seed: int = 0, device: torch.device | str = "cpu") -> dict[str, float]:
    """lambda per neuron layer: max or percentile of its positive ANN activations on ``images``."""
    ann = GraphANN(graph).eval().to(device)
    gen = torch.Generator().manual_seed(seed)
    samples: dict[str, list[torch.Tensor]] = {n.name: [] for n in graph.neurons()}
    maxima: dict[str, float] = {n.name: 0.0 for n in graph.neurons()}
    n_batches = math.ceil(len(images) / batch_size)
    per_batch = max(1, MAX_SAMPLES_PER_LAYER // n_batches)
    for i in tqdm(range(0, len(images), batch_size), desc="activation statistics", leave=False,
                  disable=n_batches < 4):
        with torch.no_grad():
            _, acts = ann(images[i:i + batch_size].to(device), record=True)
        for name, a in acts.items():
            pos = a[a > 0].cpu()
            if pos.numel() == 0:
                continue
            maxima[name] = max(maxima[name], float(pos.max()))
            if pos.numel() > per_batch:
                pos = pos[torch.randint(pos.numel(), (per_batch,), generator=gen)]
            samples[name].append(pos)
    scales = {}
    for name, chunks in samples.items():
        if not chunks:
            scales[name] = 1.0  # a dead layer: any positive scale is exact
            continue
        if percentile is None:
            scales[name] = maxima[name]
        else:
            allv = torch.cat(chunks)
            scales[name] = float(torch.quantile(allv.float(), percentile / 100.0)) if allv.numel() < 16_000_000 \
                else float(allv.kthvalue(max(1, int(allv.numel() * percentile / 100))).values)
        clip = graph[name].clip
        if clip is not None:  # a ReLU6 layer never exceeds its clip (float32 statistics can, by a rounding)
            scales[name] = min(scales[name], clip)
        scales[name] = max(scales[name], 1e-6)
    return scales


def _source_scale(graph: Graph, name: str, scales: dict[str, float], in_scale: float) -> float:
    """Scale of the signal a synaptic layer reads: walk up through pooling/flatten to a neuron/input."""
    node = graph[name]
    while isinstance(node, (AvgPool, MaxPool, Flatten)):
        node = graph[node.inputs[0]]
    if isinstance(node, Neuron):
        return scales[node.name]
    if isinstance(node, Input):
        return in_scale
    raise PrivsnnError(f"layer {name!r}: a synaptic layer must read spikes or the input, not a {node.TYPE} "
                       f"({node.name!r}); insert a ReLU between consecutive linear layers")


def _target_scale(graph: Graph, name: str, scales: dict[str, float]) -> float:
    """Scale of the neuron a synaptic layer drives: walk down through adds/pooling to a neuron."""
    node = graph[name]
    while node.name != graph.output:
        users = graph.consumers(node.name)
        if len(users) != 1:
            raise PrivsnnError(f"layer {node.name!r} feeds {len(users)} layers; expected exactly one")
        node = users[0]
        if isinstance(node, Neuron):
            return scales[node.name]
        if not isinstance(node, (Add, AvgPool, Flatten)):
            raise PrivsnnError(f"layer {name!r} feeds a {node.TYPE} ({node.name!r}) before any neuron")
    return 1.0  # the output layer keeps ANN logit units


def normalise(graph: Graph, scales: dict[str, float], in_scale: float) -> Graph:
    """Rescale weights so that every threshold is 1 (see module docstring). Returns ``graph``."""
    for node in graph.weighted():
        s_in = _source_scale(graph, node.inputs[0], scales, in_scale)
        s_out = _target_scale(graph, node.name, scales)
        node.weight = node.weight * (s_in / s_out)
        if node.bias is not None:
            node.bias = node.bias / s_out
    for n in graph.neurons():
        n.threshold = 1.0
        if n.clip is not None:  # ReLU6 in spike units: >= 1 (the scale is at most the clip), so the
            n.clip = n.clip / scales[n.name]  # neuron's own saturation at one spike per step absorbs it
    graph.meta["activation_scales"] = dict(scales)
    return graph


@torch.no_grad()
def balance_on_snn(graph: Graph, images: torch.Tensor, timesteps: int, batch_size: int,
                   device: torch.device | str = "cpu") -> dict[str, float]:
    """Layer by layer, scale each threshold so the SNN's mean rate matches the ANN's normalised
    activation (earlier layers already corrected). Returns the correction factors."""
    ann = GraphANN(graph).eval().to(device)
    x = images[:batch_size].to(device)
    _, acts = ann(x, record=True)
    factors = {}
    for node in tqdm(graph.neurons(), desc="balancing on the SNN", leave=False):
        snn = SpikingNetwork(graph, timesteps).eval().to(device)
        _, spikes = snn(x, timesteps, return_spikes=True)
        rate = float(spikes[node.name].mean())
        target = float(acts[node.name].clamp(0, 1).mean())
        f = rate / target if target > 0 and rate > 0 else 1.0
        f = min(max(f, 0.5), 2.0)
        node.threshold *= f
        factors[node.name] = f
    return factors


def layer_teacher_graph(loaded: LoadedModel, snn: Graph) -> Graph:
    """The ANN as a ReLU graph in the units of ``snn`` (converted from ``loaded``): the same pooling
    folds and the same per-layer activation scales, so each neuron layer's activation is what the
    SNN layer's ``threshold * rate`` should approximate. Used by layer-wise rate distillation."""
    scales = snn.meta.get("activation_scales")
    if not scales:
        raise PrivsnnError("the SNN artifact records no activation_scales (convert it with this version)")
    graph = ann_graph(loaded)
    if snn.meta.get("folded_pools"):
        from .transforms import fold_average_pooling

        graph, _ = fold_average_pooling(graph)
    names = {n.name for n in graph.neurons()}
    if names != {n.name for n in snn.neurons()}:
        raise PrivsnnError("the teacher's layers do not match the SNN's (was the SNN converted from this model?)")
    in_scale = snn.input.input_scale if snn.input.encoding == "rate" else 1.0
    return normalise(graph, scales, in_scale)


def convert(loaded: LoadedModel, images: torch.Tensor, settings: ConversionSettings,
            device: torch.device | str = "cpu", progress: bool = True) -> Graph:
    """Convert ``loaded`` to a spiking graph using ``images`` (synthetic, or real for the baseline);
    the statistics run on ``device``, the graph stays on the CPU.

    Low latency: ``qcfs_levels`` fine-tunes the normalised graph as a QCFS ANN by distillation
    from the ANN itself (thresholds become the learnt clips; see :mod:`privatesnn.qcfs`)."""
    if settings.timesteps <= 0:
        raise PrivsnnError(f"--timesteps must be > 0, got {settings.timesteps}")
    if settings.encoding not in ("direct", "rate"):
        raise PrivsnnError(f"--encoding must be direct or rate, got {settings.encoding!r}")
    if len(images) == 0:
        raise PrivsnnError("no calibration images")
    if settings.signed and settings.reset != "subtract":
        raise PrivsnnError("--signed neurons reset by subtraction (--reset subtract)")
    if settings.windowed and (settings.reset != "subtract" or settings.leak != 1.0 or settings.signed):
        raise PrivsnnError("--windowed neurons are IF neurons reset by subtraction (--reset subtract, --leak 1), "
                           "and cannot be --signed")
    pct = parse_threshold(settings.threshold)
    graph = ann_graph(loaded)
    if settings.fold_pooling:
        from .transforms import fold_average_pooling

        graph, folded = fold_average_pooling(graph)
        graph.meta["folded_pools"] = folded
    in_scale = 1.0
    if settings.encoding == "rate":
        in_scale = input_scale(graph)
        graph.input.encoding, graph.input.input_scale = "rate", in_scale
    # statistics are taken on the ANN graph before any rescaling (input in normalised units)
    graph.input.encoding, saved = "direct", graph.input.encoding
    scales = activation_scales(graph, images, pct, settings.batch_size, device=device)
    graph.input.encoding = saved
    normalise(graph, scales, in_scale)
    for n in graph.neurons():
        n.reset, n.leak, n.v_init = settings.reset, settings.leak, settings.v_init
    graph.validate()
    if settings.balance == "snn":
        graph.meta["balance_factors"] = balance_on_snn(graph, images, settings.timesteps, settings.batch_size, device)
    elif settings.balance != "none":
        raise PrivsnnError(f"--balance must be none or snn, got {settings.balance!r}")
    if settings.qcfs_levels > 0:
        from .qcfs import QCFSSettings, finetune_qcfs

        if settings.reset != "subtract" or settings.leak != 1.0:
            raise PrivsnnError("--qcfs-levels needs IF neurons with reset by subtraction (--reset subtract, --leak 1)")
        qs = QCFSSettings(levels=settings.qcfs_levels, epochs=settings.qcfs_epochs, lr=settings.qcfs_lr,
                          feature_weight=settings.qcfs_feature_weight, rate_reg=settings.qcfs_rate_reg,
                          rate_weighting=settings.qcfs_rate_weighting,
                          optimizer=settings.qcfs_optimizer,
                          kd_loss=settings.qcfs_kd_loss, ema=settings.qcfs_ema, anchor=settings.qcfs_anchor,
                          prune=settings.qcfs_prune, prune_input=settings.qcfs_prune_input,
                          trapdoor=settings.qcfs_trapdoor, trapdoor_alpha=settings.qcfs_trapdoor_alpha,
                          trapdoor_key=settings.trapdoor_key, trapdoor_augment=settings.qcfs_trapdoor_augment,
                          misalign=settings.qcfs_misalign, seed=settings.seed)
        graph = finetune_qcfs(graph, images, qs, device, progress=progress)
    if settings.signed or settings.windowed:
        for n in graph.neurons():
            n.signed, n.windowed = settings.signed, settings.windowed
        graph.validate()
    graph.meta["timesteps"] = settings.timesteps
    return graph
