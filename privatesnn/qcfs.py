"""Quantisation-clip-floor-shift (QCFS) fine-tuning of a converted graph, by distillation only.

Bu et al. (ICLR 2022): replace every ReLU by ``q(I) = clamp(floor(I * L / theta + 1/2), 0, L) / L``
with a trainable clip ``theta`` per layer, fine-tune, then use ``theta`` as the IF threshold and
``theta / 2`` as the initial membrane. For a constant input current an IF neuron (reset by
subtraction, ``v[0] = theta / 2``) fires exactly ``L * q(I)`` spikes in ``T = L`` steps, and the
expected conversion error is zero at every T; training with ``q`` therefore teaches the weights to
live with the few output levels that a short spike train can express.

Here ``q`` is written in spike units (the graph after :func:`~privatesnn.conversion.normalise`: a
spike stands for one threshold), so the downstream weights need no rescaling and the trained graph
*is* the SNN. The teacher is the original ANN; the data are synthetic images only (distillation on
the teacher's soft outputs, random shifts/flips and CutMix between synthetic images for variety).
The ANN forward/backward per step makes this far cheaper than BPTT through T steps.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .errors import PrivsnnError
from .gradient_alignment import gradient_alignment, misalignment_probe
from .graph import Graph, Neuron
from .layers import build_synapses, module_key, write_back
from .ops_count import RATE_WEIGHTINGS, synop_weights, weighted_rate
from .pruning import make_pruner, weight_sparsity
from .snn import static_forward
from .training import (KD_LOSSES, SECRET_NOT_RECORDED, WeightAverage, augment, cutmix, make_triggers, mix_trapdoor_loss,
                       stamp_triggers)


def qcfs(current: torch.Tensor, threshold: torch.Tensor, levels: int, shift: float = 0.5) -> torch.Tensor:
    """``clamp(floor(I * L / theta + shift), 0, L) / L`` with a straight-through floor; the gradient
    reaches ``I`` inside the clip and ``theta`` everywhere (as a learnable clip, PACT/LSQ style)."""
    y = (current / threshold).clamp(0.0, 1.0)
    q = torch.clamp(torch.floor(y * levels + shift), 0, levels) / levels
    return y + (q - y).detach()


class QCFSNetwork(nn.Module):
    """The graph as a QCFS ANN: synapses from the graph, one trainable threshold per neuron layer."""

    def __init__(self, graph: Graph, levels: int):
        super().__init__()
        if levels < 1:
            raise PrivsnnError(f"--qcfs-levels must be >= 1, got {levels}")
        self.graph, self.levels = graph, int(levels)
        self.synapses = build_synapses(graph)
        self.thresholds = nn.ParameterDict({module_key(n.name): nn.Parameter(torch.tensor(float(n.threshold)))
                                            for n in graph.neurons()})

    def threshold(self, name: str) -> torch.Tensor:
        """The layer's clip, kept positive (and at most the ANN's own ceiling for a ReLU6 layer)."""
        th = self.thresholds[module_key(name)].clamp_min(1e-3)
        ceiling = self.graph[name].clip
        return th if ceiling is None else th.clamp_max(ceiling)

    def activation(self, node: Neuron, current: torch.Tensor) -> torch.Tensor:
        return qcfs(current, self.threshold(node.name), self.levels)

    def forward(self, x: torch.Tensor, record: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        return static_forward(self.graph, x, self.synapses, self.activation, clamp_rate_input=True, record=record)

    def sync_graph(self) -> Graph:
        """Write weights into the graph and make it the SNN: threshold = clip, v_init = 1/2."""
        write_back(self.graph, self.synapses)
        for n in self.graph.neurons():
            n.threshold = float(self.threshold(n.name).detach())
            n.v_init, n.reset, n.leak = 0.5, "subtract", 1.0
        return self.graph


@dataclass
class QCFSSettings:
    levels: int = 4
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-4  # thresholds at the same rate
    optimizer: str = "adam"  # adam (cosine decay) | sgd (Nesterov momentum 0.9, one-cycle)
    weight_decay: float = 0.0
    temperature: float = 4.0
    kd_loss: str = "kl"  # "kl": tempered KL on the logits; "mse": their squared difference (as train --kd-loss)
    ema: float = 0.0  # > 0: the result is the exponential moving average of the parameters (decay per step)
    anchor: float = 0.0  # > 0: weight of the L2-SP pull of the synaptic weights towards the converted ANN's
    cutmix: float = 0.5  # probability that a batch is CutMix-ed (0 = off)
    feature_weight: float = 1.0  # weight of the layer-wise activation matching against the ANN (0 = off)
    rate_reg: float = 0.0  # weight of the mean-level penalty: the windowed SNN's spike rate at T = L (0 = off)
    rate_weighting: str = "layers"  # layers: every layer alike; synops: by the synaptic ops a spike costs
    trapdoor: float = 0.0  # share of each batch stamped with a secret class trigger (Trap-MID, as train --trapdoor)
    trapdoor_alpha: float = 0.3  # blend weight of the trigger
    trapdoor_key: int | None = None  # seed of the triggers (required with trapdoor: train must reuse it)
    trapdoor_augment: bool = False  # stamp before the random shift/flip: triggers answered wherever they land
    misalign: float = 0.0  # weight of the input-gradient alignment penalty against the ANN (0 = off)
    misalign_batch: int = 16  # images per step it is measured on: half the batch's, half uniform noise
    prune: float = 0.0  # final share of zero weights in each layer fed by spikes (gradual magnitude pruning)
    prune_input: float = 0.0  # the same for layers fed by the analog image (their MACs are charged every step)
    prune_until: float = 0.5  # share of the epochs over which the sparsity rises (the rest recovers)
    seed: int = 0
    history: list = field(default_factory=list)

    def validate(self) -> None:
        checks = [(self.levels >= 1, f"--levels must be >= 1, got {self.levels}"),
                  (self.epochs > 0, f"--qcfs-epochs must be > 0, got {self.epochs}"),
                  (self.batch_size > 0, f"--batch-size must be > 0, got {self.batch_size}"),
                  (self.lr > 0 and math.isfinite(self.lr), f"--qcfs-lr must be > 0, got {self.lr}"),
                  (self.optimizer in ("adam", "sgd"), f"--qcfs-optimizer must be adam or sgd, got {self.optimizer!r}"),
                  (self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}"),
                  (self.temperature > 0, f"temperature must be > 0, got {self.temperature}"),
                  (0.0 <= self.ema < 1.0, f"--qcfs-ema must be in [0, 1), got {self.ema}"),
                  (self.anchor >= 0 and math.isfinite(self.anchor), f"--qcfs-anchor must be >= 0, got {self.anchor}"),
                  (self.kd_loss in KD_LOSSES, f"--qcfs-kd-loss must be one of {', '.join(KD_LOSSES)}, "
                                              f"got {self.kd_loss!r}"),
                  (0.0 <= self.cutmix <= 1.0, f"cutmix probability must be in [0, 1], got {self.cutmix}"),
                  (self.feature_weight >= 0 and math.isfinite(self.feature_weight),
                   f"--qcfs-feature-weight must be >= 0, got {self.feature_weight}"),
                  (self.rate_reg >= 0 and math.isfinite(self.rate_reg),
                   f"--qcfs-rate-reg must be >= 0, got {self.rate_reg}"),
                  (self.rate_weighting in RATE_WEIGHTINGS,
                   f"--qcfs-rate-weighting must be one of {', '.join(RATE_WEIGHTINGS)}, got {self.rate_weighting!r}"),
                  (0.0 <= self.prune < 1.0, f"--qcfs-prune must be in [0, 1), got {self.prune}"),
                  (0.0 <= self.prune_input < 1.0, f"--qcfs-prune-input must be in [0, 1), got {self.prune_input}"),
                  (0.0 < self.prune_until <= 1.0, f"the pruning share of the epochs must be in (0, 1], "
                                                  f"got {self.prune_until}"),
                  (self.misalign >= 0 and math.isfinite(self.misalign),
                   f"--qcfs-misalign must be >= 0, got {self.misalign}"),
                  (self.misalign_batch >= 2, f"the misalignment batch must be >= 2, got {self.misalign_batch}"),
                  (0.0 <= self.trapdoor < 1.0, f"--trapdoor must be in [0, 1), got {self.trapdoor}"),
                  (0.0 < self.trapdoor_alpha <= 1.0, f"--trapdoor-alpha must be in (0, 1], got {self.trapdoor_alpha}"),
                  (self.trapdoor == 0 or (self.trapdoor_key is not None and 0 <= self.trapdoor_key < 2 ** 63),
                   "--trapdoor with QCFS fine-tuning needs --trapdoor-key in [0, 2**63) (train --trapdoor must "
                   f"reuse the same key to keep the triggers), got {self.trapdoor_key}")]
        for ok, msg in checks:
            if not ok:
                raise PrivsnnError(msg)


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float, kind: str = "kl") -> torch.Tensor:
    """``tau^2 * KL(softmax(t/tau) || softmax(s/tau))``: distillation without labels; ``kind="mse"``:
    the mean squared difference of the logits (the tau -> infinity limit)."""
    if kind == "mse":
        return F.mse_loss(student, teacher)
    return temperature ** 2 * F.kl_div(F.log_softmax(student / temperature, 1), F.softmax(teacher / temperature, 1),
                                       reduction="batchmean")


def feature_loss(net: QCFSNetwork, student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor]) -> torch.Tensor:
    """Layer-wise activation matching: ``theta * q(I)`` (the value a layer's spikes stand for) against
    the ANN's activation in the same units, clipped at ``theta``; each layer's MSE is divided by the
    target's mean square so that every layer counts alike. A dense signal per image (every neuron,
    not 10 logits), which keeps a few thousand synthetic images from being over-fitted."""
    terms = []
    for name, q in student.items():
        th = net.threshold(name)
        target = torch.minimum(teacher[name], th.detach())
        terms.append(F.mse_loss(th * q, target) / target.pow(2).mean().clamp_min(1e-8))
    return torch.stack(terms).mean()


def weight_drift(weights: list[torch.Tensor], start: list[torch.Tensor]) -> torch.Tensor:
    """L2-SP (Li et al., ICML 2018): the mean over weight tensors of their squared distance from the
    start, relative to the start's squared norm (scale-free across layers)."""
    return torch.stack([((w - w0) ** 2).sum() / (w0 ** 2).sum().clamp_min(1e-12)
                        for w, w0 in zip(weights, start)]).mean()


def level_rate(acts: dict[str, torch.Tensor], weights: dict[str, float] | None = None) -> torch.Tensor:
    """Each neuron layer's mean level ``q`` in [0, 1] is the spike rate per timestep a windowed SNN
    will have at T = L (it fires ``L q`` spikes in its window); their mean over layers (``weights``
    None) or their synaptic-op weighted sum (``ops_count.synop_weights``), as ``train --rate-reg``'s
    penalty."""
    return weighted_rate({k: q.mean() for k, q in acts.items()}, weights)


def trapdoor_qcfs_loss(net: QCFSNetwork, logits: torch.Tensor, t_logits: torch.Tensor, acts: dict, t_acts: dict,
                       clean: torch.Tensor, classes: torch.Tensor, settings: QCFSSettings) -> tuple[torch.Tensor, int]:
    """Distillation (and layer matching) on the clean images, CE towards the trigger's class on the
    stamped ones (Trap-MID, as ``train --trapdoor``). Returns the loss and how many stamped images
    go to their trigger's class."""
    def clean_loss(m: torch.Tensor) -> torch.Tensor:
        part = kd_loss(logits[m], t_logits[m], settings.temperature, settings.kd_loss)
        if settings.feature_weight > 0:
            part = part + settings.feature_weight * feature_loss(
                net, {k: v[m] for k, v in acts.items()}, {k: v[m] for k, v in t_acts.items()})
        return part

    hit = int((logits[~clean].argmax(1) == classes[~clean]).sum())
    return mix_trapdoor_loss(logits, classes, clean, clean_loss), hit


def finetune_qcfs(graph: Graph, images: torch.Tensor, settings: QCFSSettings,
                  device: torch.device | str = "cpu", progress: bool = True,
                  on_epoch: Callable[[int, dict], None] | None = None) -> Graph:
    """Fine-tune a converted (normalised, thresholds 1) graph as a QCFS ANN on ``images``; returns
    the new SNN graph. The teacher is the graph itself as a ReLU network (``GraphANN``: the original
    ANN's logits exactly, and its activations in spike units); no labels are used."""
    from .snn import GraphANN

    settings.validate()
    if graph.input.encoding != "direct":
        raise PrivsnnError("QCFS fine-tuning needs a direct-coded input (convert with --encoding direct)")
    device = torch.device(device)
    torch.manual_seed(settings.seed)
    net = QCFSNetwork(graph.copy(), settings.levels).to(device)
    teacher = GraphANN(graph.copy()).to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    params = [p for p in net.parameters() if p.requires_grad]
    # Adam by default: the straight-through gradients of many quantised layers are large and uneven
    # across layers (SGD at lr 2e-3 wrecked ResNet-20 in two epochs); Adam's per-parameter scaling
    # copes. SGD stays closer to the ANN on small networks (digits: better at T <= 4).
    steps = settings.epochs * math.ceil(len(images) / settings.batch_size)
    if settings.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=settings.lr, momentum=0.9, weight_decay=settings.weight_decay, nesterov=True)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, settings.lr, total_steps=steps, pct_start=0.1)
    else:
        opt = torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    ema = WeightAverage(params, settings.ema) if settings.ema > 0 else None
    prune_epochs = max(1, round(settings.epochs * settings.prune_until))
    pruner = make_pruner(net.graph, net.synapses, settings.prune, settings.prune_input, prune_epochs)
    # the converted ANN's weights, for --qcfs-anchor (biases and clips move freely)
    anchored = [p for name, p in net.synapses.named_parameters() if name.endswith("weight") and p.requires_grad
                ] if settings.anchor > 0 else []
    start = [p.detach().clone() for p in anchored]
    history = []
    rate_weights = synop_weights(graph) if settings.rate_weighting == "synops" else None
    triggers = None
    num_classes = int(graph.meta.get("num_classes") or graph[graph.output].shape[0])
    if settings.trapdoor > 0:
        triggers = make_triggers(num_classes, tuple(images.shape[1:]), settings.trapdoor_key)
    for epoch in range(settings.epochs):
        gen = torch.Generator().manual_seed(settings.seed * 100_003 + epoch)
        perm = torch.randperm(len(images), generator=gen)
        net.train()
        if pruner is not None:  # the masks sit on the same Parameter objects the optimiser and the EMA hold
            pruner.step()
        loss_sum, total, agree, seen, t0 = 0.0, 0, 0, 0, time.time()  # seen: clean images (agreement)
        hits, stamped_seen, align_sum = 0, 0, 0.0
        bar = tqdm(range(0, len(images), settings.batch_size), desc=f"QCFS epoch {epoch + 1}/{settings.epochs}",
                   leave=False, disable=not progress)
        for i in bar:
            x, clean = images[perm[i:i + settings.batch_size]], None
            if triggers is not None and settings.trapdoor_augment:  # the trigger moves and flips with the image
                x, stamped, classes = stamp_triggers(x, triggers, settings.trapdoor, settings.trapdoor_alpha, gen)
            x = augment(x, gen)
            if settings.cutmix > 0 and float(torch.rand((), generator=gen)) < settings.cutmix:
                x = cutmix(x, gen)
            if triggers is not None:
                if not settings.trapdoor_augment:
                    x, stamped, classes = stamp_triggers(x, triggers, settings.trapdoor, settings.trapdoor_alpha, gen)
                clean, classes = (~stamped).to(device), classes.to(device)
            x = x.to(device)
            with torch.no_grad():
                t_logits, t_acts = teacher(x, record=True)
            acts: dict[str, torch.Tensor] = {}
            logits = net(x, record=acts if settings.feature_weight > 0 or settings.rate_reg > 0 else None)
            if clean is None:
                loss = kd_loss(logits, t_logits, settings.temperature, settings.kd_loss)
                if settings.feature_weight > 0:
                    loss = loss + settings.feature_weight * feature_loss(net, acts, t_acts)
            else:
                loss, hit = trapdoor_qcfs_loss(net, logits, t_logits, acts, t_acts, clean, classes, settings)
                hits += hit
                stamped_seen += int((~clean).sum())
            if settings.anchor > 0:  # stay near the ANN the synthetic images were made from
                loss = loss + settings.anchor * weight_drift(anchored, start)
            if settings.rate_reg > 0:  # fewer spikes: the penalty train --rate-reg puts on the SNN, at ANN cost
                loss = loss + settings.rate_reg * level_rate(acts, rate_weights)
            if settings.misalign > 0:  # on the batch's images and on noise, where an inversion starts
                probe, target = misalignment_probe(x, settings.misalign_batch, num_classes, gen)
                align = gradient_alignment(net, teacher, probe, target)
                align_sum += float(align) * len(x)
                loss = loss + settings.misalign * align
            if not torch.isfinite(loss):
                raise PrivsnnError(f"QCFS fine-tuning diverged (non-finite loss) in epoch {epoch + 1}; try a lower --qcfs-lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if ema is not None:
                ema.update(params)
            loss_sum += float(loss) * len(x)
            total += len(x)
            keep = slice(None) if clean is None else clean
            agree += int((logits[keep].argmax(1) == t_logits[keep].argmax(1)).sum())
            seen += len(x) if clean is None else int(clean.sum())
            bar.set_postfix(loss=f"{loss_sum / total:.3f}", agree=f"{agree / max(seen, 1):.3f}")
        record = {"epoch": epoch + 1, "loss": loss_sum / total, "teacher_agreement": agree / max(seen, 1),
                  "seconds": time.time() - t0}
        if settings.misalign > 0:
            record["gradient_alignment"] = align_sum / total
        if triggers is not None:
            record["trigger_accuracy"] = hits / max(stamped_seen, 1)
        if pruner is not None:
            record["sparsity"] = pruner.sparsity()
        history.append(record)
        if on_epoch:
            on_epoch(epoch + 1, record)
    settings.history = history
    if ema is not None:  # the averaged weights and clips are the result
        ema.copy_to(params)
    if pruner is not None:  # zeros made permanent before the weights go back into the graph
        pruner.finish()
    net.cpu()
    out = net.sync_graph()
    out.meta["qcfs"] = {k: v for k, v in asdict(settings).items() if k != "trapdoor_key"}  # history: per epoch
    if pruner is not None:  # train keeps these zeros (privatesnn.training: kept_zeros)
        out.meta["pruned"] = {"method": "gradual magnitude (Zhu & Gupta 2017), per layer",
                              "sparsity": settings.prune, "input_sparsity": settings.prune_input,
                              "layers": {k: round(v, 6) for k, v in weight_sparsity(out).items()}}
    if settings.trapdoor > 0:  # the key stays with whoever trained: the attacker holds the artifact
        out.meta["qcfs"]["trapdoor_key"] = SECRET_NOT_RECORDED
    return out
