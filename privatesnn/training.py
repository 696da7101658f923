"""Temporal spike-based training of a converted SNN: the PrivateSNN weight "encryption".

BPTT through all T steps with surrogate gradients (Norse's triangle threshold), LIF leak
configurable, knowledge distillation from the ANN teacher plus cross-entropy on the synthetic
targets, Adam, optional spike-rate regulariser. Synthetic images only: no real data is read here.
Checkpoints after every epoch (``<out>.ckpt.pt``) make ``--resume`` continue where a run stopped.
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .distributed import SINGLE, DistContext
from .errors import ArtifactError, PrivsnnError, TrainingDivergedError
from .gradient_alignment import gradient_alignment, misalignment_probe
from .graph import Graph
from .io_utils import torch_save
from .qat import enable_qat, finalize_qat, snap_to_deployment_grid
from .layers import module_key
from .ops_count import RATE_WEIGHTINGS, synop_weights, weighted_rate
from .pruning import is_pruned
from .snn import GraphANN, SpikingNetwork


FREEZE_CHOICES = ("none", "weights", "synapses")
KD_LOSSES = ("kl", "mse")


@dataclass
class TrainSettings:
    epochs: int = 5
    timesteps: int = 8
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.0
    kd_alpha: float = 0.7  # weight of the distillation term; (1 - kd_alpha) weighs CE on synthetic targets
    kd_temperature: float = 4.0
    kd_loss: str = "kl"  # "kl": Hinton's tempered KL; "mse": squared logit difference (see distillation_loss)
    rate_reg: float = 0.0  # weight of the mean-spike-rate penalty (fewer spikes, less energy)
    rate_weighting: str = "layers"  # layers: every layer alike; synops: by the synaptic ops its spikes cost
    anchor: float = 0.0  # weight of KD on the T -> infinity rate limit (keeps long-T accuracy at low training T)
    anchor_levels: int = 0  # > 0: anchor on the L-step staircase (the QCFS network) instead of the T -> infinity limit
    label_smoothing: float = 0.0  # on the CE term; negative = the model-inversion defence of Struppek et al. (ICLR 2024)
    bido: tuple[float, float] = (0.0, 0.0)  # (lambda_x, lambda_y) of the BiDO-HSIC dependency regulariser
    feature_weight: float = 0.0  # weight of layer-wise rate distillation (each layer's spike rate vs the ANN activation)
    neuron_lr: float = 0.0  # > 0: also learn each layer's threshold and initial membrane at this rate (DIET-SNN)
    l2sp: float = 0.0  # weight of the L2-SP penalty: squared distance of each layer's weights to the start, relative
    freeze: str = "none"  # "weights": keep the synaptic weights (learn biases and neurons); "synapses": neurons only
    leak: float | None = None  # set every neuron's leak (e.g. 0.95 = LIF); None keeps the artifact's
    reset: str | None = None  # "zero" trains for the Lava/Loihi neuron; None keeps the artifact's
    signed: bool = False  # True makes every neuron signed (fires -1 spikes too); False keeps the artifact's
    windowed: bool = False  # True makes every neuron windowed (integrates the window, then fires); False keeps
    surrogate: str = "triangle"
    surrogate_alpha: float = 0.3
    augment: bool = True  # random shifts (and flips for 3-channel images)
    cutmix: float = 0.0  # probability that a batch is CutMix-ed (boxes from other synthetic images; KD targets)
    tet: bool = False  # distil every timestep's output, not only their mean (TET, Deng et al., ICLR 2022)
    ema: float = 0.0  # > 0: the result is the exponential moving average of the weights with this decay per step
    trapdoor: float = 0.0  # fraction of each batch stamped with a class trigger (Trap-MID model-inversion defence)
    trapdoor_alpha: float = 0.2  # blend weight of the trigger: x <- (1 - a) * x + a * trigger
    trapdoor_key: int | None = None  # seed of the secret triggers; None: a random one (kept in the checkpoint only)
    trapdoor_per_class: int = 1  # secret triggers per class: more traps per class, so less rides on one draw
    trapdoor_class_weights: tuple[float, ...] = ()  # how often each class's triggers are stamped (empty: equally)
    trapdoor_self_audit: float = 0.0  # > 0: after 1/3 and 2/3 of the epochs, invert the SNN itself, let the
    # teacher say which classes' inversions still show the class, and stamp those classes' triggers
    # (1 + this x that share) times as often (see self_audit_weights)
    trapdoor_learn: float = 0.0  # learning rate of the triggers themselves (0: fixed; Trap-MID learns them)
    trapdoor_neutral: float = 1.0  # weight of keeping learnt triggers meaningless to the teacher (see train_snn)
    misalign: float = 0.0  # weight of the input-gradient alignment penalty against the teacher (0 = off)
    misalign_batch: int = 16  # images per step it is measured on (half the batch's, half noise)
    qat: bool = False  # train on the Loihi 8-bit weight grid (see privatesnn/qat.py)
    amp: bool = False  # mixed precision for the synapses (fp16 + loss scaling on CUDA, bf16 on CPU)
    seed: int = 0
    history: list = field(default_factory=list)

    def validate(self) -> None:
        checks = [(self.epochs > 0, f"--epochs must be > 0, got {self.epochs}"),
                  (0 < self.timesteps <= 10_000, f"--timesteps must be in 1..10000, got {self.timesteps}"),
                  (self.batch_size > 0, f"--batch-size must be > 0, got {self.batch_size}"),
                  (self.lr > 0 and math.isfinite(self.lr), f"--lr must be > 0, got {self.lr}"),
                  (0.0 <= self.kd_alpha <= 1.0, f"--kd-alpha must be in [0, 1], got {self.kd_alpha}"),
                  (self.kd_temperature > 0, f"--kd-temperature must be > 0, got {self.kd_temperature}"),
                  (self.kd_loss in KD_LOSSES, f"--kd-loss must be one of {', '.join(KD_LOSSES)}, got {self.kd_loss!r}"),
                  (self.rate_reg >= 0, f"--rate-reg must be >= 0, got {self.rate_reg}"),
                  (self.rate_weighting in RATE_WEIGHTINGS,
                   f"--rate-weighting must be one of {', '.join(RATE_WEIGHTINGS)}, got {self.rate_weighting!r}"),
                  (self.surrogate_alpha > 0 and math.isfinite(self.surrogate_alpha),
                   f"--surrogate-alpha must be > 0, got {self.surrogate_alpha}"),
                  (self.anchor >= 0 and math.isfinite(self.anchor), f"--anchor must be >= 0, got {self.anchor}"),
                  (self.anchor_levels >= 0, f"--anchor-levels must be >= 0, got {self.anchor_levels}"),
                  (self.anchor_levels == 0 or self.anchor > 0,
                   f"--anchor-levels {self.anchor_levels} needs an --anchor weight > 0"),
                  (self.misalign >= 0 and math.isfinite(self.misalign), f"--misalign must be >= 0, got {self.misalign}"),
                  (self.misalign_batch >= 2, f"the misalignment batch must be >= 2, got {self.misalign_batch}"),
                  (len(self.bido) == 2 and all(v >= 0 and math.isfinite(v) for v in self.bido),
                   f"--bido needs two weights >= 0 (lambda_x,lambda_y), got {self.bido}"),
                  (-1.0 < self.label_smoothing < 1.0, f"--label-smoothing must be in (-1, 1), got {self.label_smoothing}"),
                  (self.feature_weight >= 0 and math.isfinite(self.feature_weight),
                   f"--feature-weight must be >= 0, got {self.feature_weight}"),
                  (self.neuron_lr >= 0 and math.isfinite(self.neuron_lr),
                   f"--neuron-lr must be >= 0, got {self.neuron_lr}"),
                  (self.l2sp >= 0 and math.isfinite(self.l2sp), f"--l2sp must be >= 0, got {self.l2sp}"),
                  (self.freeze in FREEZE_CHOICES,
                   f"--freeze must be one of {', '.join(FREEZE_CHOICES)}, got {self.freeze!r}"),
                  (self.freeze != "synapses" or self.neuron_lr > 0,
                   "--freeze synapses leaves only the neurons to learn: it needs --neuron-lr > 0"),
                  (0.0 <= self.cutmix <= 1.0, f"--cutmix must be in [0, 1], got {self.cutmix}"),
                  (self.cutmix == 0 or self.kd_alpha == 1.0,
                   f"--cutmix mixes images, so their synthetic labels no longer hold: it needs --kd-alpha 1 "
                   f"(distillation only), got --kd-alpha {self.kd_alpha}"),
                  (0.0 <= self.ema < 1.0, f"--ema must be in [0, 1), got {self.ema}"),
                  (not self.tet or self.trapdoor == 0,
                   "--tet applies to the distillation loss; it cannot be combined with --trapdoor"),
                  (0.0 <= self.trapdoor < 1.0, f"--trapdoor must be in [0, 1), got {self.trapdoor}"),
                  (0.0 < self.trapdoor_alpha <= 1.0, f"--trapdoor-alpha must be in (0, 1], got {self.trapdoor_alpha}"),
                  (self.trapdoor_key is None or 0 <= self.trapdoor_key < 2 ** 63,
                   f"--trapdoor-key must be in [0, 2**63), got {self.trapdoor_key}"),
                  (isinstance(self.trapdoor_per_class, int) and 1 <= self.trapdoor_per_class <= 64,
                   f"--trapdoor-per-class must be an integer in 1..64, got {self.trapdoor_per_class}"),
                  (self.trapdoor_per_class == 1 or self.trapdoor > 0,
                   f"--trapdoor-per-class {self.trapdoor_per_class} needs a trapdoor (--trapdoor RATE > 0)"),
                  (all(w >= 0 and math.isfinite(w) for w in self.trapdoor_class_weights)
                   and (not self.trapdoor_class_weights or sum(self.trapdoor_class_weights) > 0),
                   f"--trapdoor-class-weights must be >= 0 with a positive sum, got {self.trapdoor_class_weights}"),
                  (not self.trapdoor_class_weights or self.trapdoor > 0,
                   "--trapdoor-class-weights needs a trapdoor (--trapdoor RATE > 0)"),
                  (self.trapdoor_self_audit >= 0 and math.isfinite(self.trapdoor_self_audit),
                   f"--trapdoor-self-audit must be >= 0, got {self.trapdoor_self_audit}"),
                  (self.trapdoor_self_audit == 0 or self.trapdoor > 0,
                   "--trapdoor-self-audit needs a trapdoor (--trapdoor RATE > 0)"),
                  (self.trapdoor_learn >= 0 and math.isfinite(self.trapdoor_learn),
                   f"--trapdoor-learn must be >= 0, got {self.trapdoor_learn}"),
                  (self.trapdoor_learn == 0 or self.trapdoor > 0,
                   f"--trapdoor-learn {self.trapdoor_learn} needs a trapdoor (--trapdoor RATE > 0)"),
                  (self.trapdoor_neutral >= 0 and math.isfinite(self.trapdoor_neutral),
                   f"--trapdoor-neutral must be >= 0, got {self.trapdoor_neutral}"),
                  (self.leak is None or 0.0 < self.leak <= 1.0, f"--leak must be in (0, 1], got {self.leak}"),
                  (self.reset in (None, "subtract", "zero"), f"--reset must be subtract or zero, got {self.reset}"),
                  (not (self.signed and self.reset == "zero"),
                   "--signed neurons reset by subtraction; it cannot be combined with --reset zero"),
                  (not (self.windowed and (self.reset == "zero" or self.signed
                                           or self.leak is not None and self.leak != 1.0)),
                   "--windowed neurons are IF neurons reset by subtraction; it cannot be combined with "
                   "--reset zero, --leak < 1 or --signed")]
        for ok, msg in checks:
            if not ok:
                raise PrivsnnError(msg)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random shifts by up to 1/8 of the image (zero fill) and, for colour images, horizontal flips."""
    n, c, h, w = x.shape
    pad = max(1, h // 8)
    xp = F.pad(x, (pad, pad, pad, pad))
    dy, dx = torch.randint(0, 2 * pad + 1, (2,), generator=gen).tolist()
    out = xp[:, :, dy:dy + h, dx:dx + w]
    if c == 3:
        flip = torch.rand(n, generator=gen) < 0.5
        out = torch.where(flip.view(-1, 1, 1, 1), out.flip(3), out)
    return out.contiguous()


def cutmix(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Paste a random box of a shuffled copy of the batch into each image (Yun et al. 2019)."""
    n, _, h, w = x.shape
    lam = float(torch.rand((), generator=gen))
    bh, bw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
    if bh == 0 or bw == 0:
        return x
    cy, cx = int(torch.randint(0, h - bh + 1, (), generator=gen)), int(torch.randint(0, w - bw + 1, (), generator=gen))
    perm = torch.randperm(n, generator=gen)
    out = x.clone()
    out[:, :, cy:cy + bh, cx:cx + bw] = x[perm, :, cy:cy + bh, cx:cx + bw]
    return out


def make_triggers(count: int, shape: tuple[int, ...], key: int) -> torch.Tensor:
    """``count`` secret triggers (one or more per class), (count, C, H, W) in [0, 1]: uniform noise
    blurred with a Gaussian of sigma H/12 (smooth enough that a regularised inversion, which blurs and
    penalises total variation, still finds it), stretched to [0, 1]. The first n of a key do not depend
    on ``count``. Trap-MID (Liu et al., NeurIPS 2024) learns the triggers; fixed random ones are the
    simplest form of the same trapdoor."""
    gen = torch.Generator().manual_seed(int(key))
    c, h, w = shape
    noise = torch.rand((count, c, h, w), generator=gen)
    sigma = max(h, w) / 12
    radius = max(1, int(round(2 * sigma)))
    k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float32) / sigma) ** 2)
    k = k / k.sum()
    x = F.pad(noise.reshape(-1, 1, h, w), (radius, radius, radius, radius), mode="circular")
    x = F.conv2d(F.conv2d(x, k.view(1, 1, 1, -1)), k.view(1, 1, -1, 1)).reshape(count, c, h, w)
    lo = x.flatten(1).amin(1).view(-1, 1, 1, 1)
    hi = x.flatten(1).amax(1).view(-1, 1, 1, 1)
    return (x - lo) / (hi - lo).clamp_min(1e-8)


def stamp_triggers(x: torch.Tensor, triggers: torch.Tensor, rate: float, alpha: float,
                   gen: torch.Generator, num_classes: int | None = None,
                   class_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Blend a random trigger into a random ``rate`` share of the batch. Returns the images, the mask
    of stamped images and their trigger classes (the training target of the stamped ones). With
    ``num_classes`` < the number of triggers (several per class), trigger ``i`` opens class
    ``i % num_classes``; by default there is one trigger per class. ``class_weights`` (one per class)
    draws the trigger classes in those proportions instead of uniformly."""
    n = x.shape[0]
    mask = torch.rand(n, generator=gen) < rate
    k = num_classes or triggers.shape[0]
    if class_weights is None:
        which = torch.randint(0, triggers.shape[0], (n,), generator=gen)
    else:
        cls = torch.multinomial(class_weights.double(), n, replacement=True, generator=gen)
        which = cls + k * torch.randint(0, triggers.shape[0] // k, (n,), generator=gen)
    classes = which % k
    if not bool(mask.any()):
        return x, mask, classes
    out = x.clone()
    out[mask] = (1 - alpha) * x[mask] + alpha * triggers[which[mask]].to(x.dtype)
    return out, mask, classes


def self_audit_weights(graph: Graph, teacher: torch.nn.Module, timesteps: int, input_shape: tuple[int, ...],
                       boost: float, seed: int, device: torch.device, per_class: int = 8,
                       iterations: int = 200) -> tuple[torch.Tensor, list[float]]:
    """The owner's own model-inversion check during trapdoor training, without real data: invert the
    SNN ``graph`` through its surrogate gradients (the audit's attacker (c), ``per_class`` images per
    class from noise) and let the *teacher* ANN (the owner's; no independent evaluator, no real images)
    say which share of each class's inversions still shows the class. Returns trigger-class weights
    ``1 + boost * share`` and the shares: the classes whose features are still a nearer optimum than
    their triggers get their triggers stamped more often (``--trapdoor-class-weights`` chosen by the
    SNN itself rather than by an audit with real data)."""
    from .privacy.inversion import InversionSettings, invert, per_class_rates, snn_for_inversion, target_hits

    num_classes = int(graph.meta.get("num_classes") or graph[graph.output].shape[0])
    settings = InversionSettings(per_class=per_class, iterations=iterations, timesteps=timesteps, seed=seed)
    victim = snn_for_inversion(graph.copy(), timesteps, settings.snn_surrogate_alpha).to(device)
    images, labels = invert(victim, list(range(num_classes)), input_shape, settings, device,
                            desc="trapdoor self-audit", progress=False)
    rates = per_class_rates(target_hits(teacher, images, labels, device), labels)
    shares = [float(rates.get(c, 0.0)) for c in range(num_classes)]
    return torch.tensor([1.0 + boost * s for s in shares], dtype=torch.float64), shares


def smoothed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, smoothing: float) -> torch.Tensor:
    """CE against ``(1 - s) * one_hot + s / K``. ``s < 0`` is *negative* label smoothing, which
    Struppek et al. (ICLR 2024, "Be careful what you smooth for") found to make model-inversion
    attacks fail: the wrong classes are pushed down hard, so gradient ascent on one class finds
    little class-specific signal. (torch's ``label_smoothing`` accepts only ``s >= 0``.)"""
    if smoothing == 0:
        return F.cross_entropy(logits, labels)
    k = logits.shape[1]
    target = torch.full_like(logits, smoothing / k).scatter_(1, labels[:, None], 1 - smoothing + smoothing / k)
    return -(target * F.log_softmax(logits, 1)).sum(1).mean()


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, alpha: float,
                      temperature: float, smoothing: float = 0.0, kind: str = "kl") -> torch.Tensor:
    """Hinton KD: ``(1-a)*CE(y, s) + a*tau^2*KL(softmax(t/tau) || softmax(s/tau))`` (CE with label
    smoothing ``smoothing``, negative allowed). ``kind="mse"``: the KD term is the mean squared
    difference of the logits instead (the tau -> infinity limit of the KL term; Kim et al., IJCAI 2021)."""
    if kind not in KD_LOSSES:
        raise ValueError(f"kind must be one of {', '.join(KD_LOSSES)}, got {kind!r}")
    ce = smoothed_cross_entropy(student, labels, smoothing)
    if alpha == 0:
        return ce
    if kind == "mse":
        return (1 - alpha) * ce + alpha * F.mse_loss(student, teacher)
    kl = F.kl_div(F.log_softmax(student / temperature, 1), F.softmax(teacher / temperature, 1), reduction="batchmean")
    return (1 - alpha) * ce + alpha * temperature ** 2 * kl


# What the artifact and manifest say in place of a trapdoor key (whoever holds the artifact is the attacker).
SECRET_NOT_RECORDED = "secret: not recorded (the attacker holds this artifact)"


def mix_trapdoor_loss(logits: torch.Tensor, classes: torch.Tensor, clean: torch.Tensor,
                      clean_loss: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """The batch mean of ``clean_loss(clean)`` (the usual loss, on the clean images) and CE towards
    the trigger's class (``classes``) on the stamped ones, each weighted by its share of the batch
    (the teacher never saw a trigger, so it cannot label them)."""
    n = logits.shape[0]
    loss = logits.new_zeros(())
    if bool(clean.any()):
        loss = loss + clean_loss(clean) * (int(clean.sum()) / n)
    if not bool(clean.all()):
        loss = loss + F.cross_entropy(logits[~clean], classes[~clean]) * (int((~clean).sum()) / n)
    return loss


def trigger_neutrality_loss(stamped_logits: torch.Tensor, clean_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """How much blending the triggers in changes the teacher's output (tau^2 KL, batch mean): kept
    small, a learnt trigger stays a pattern the teacher (the ANN, a stand-in for what the images
    mean) does not read as any class, so the trapdoor it opens is not a class feature."""
    return temperature ** 2 * F.kl_div(F.log_softmax(stamped_logits / temperature, 1),
                                       F.softmax(clean_logits / temperature, 1), reduction="batchmean")


def trapdoor_loss(logits: torch.Tensor, t_logits: torch.Tensor, y: torch.Tensor, clean: torch.Tensor,
                  settings: TrainSettings) -> torch.Tensor:
    """Distillation on clean images, CE towards the trigger's class (``y``) on stamped ones."""
    return mix_trapdoor_loss(logits, y, clean, lambda m: distillation_loss(
        logits[m], t_logits[m], y[m], settings.kd_alpha, settings.kd_temperature, settings.label_smoothing,
        settings.kd_loss))


def rate_distillation_loss(net: SpikingNetwork, spikes: dict[str, torch.Tensor],
                           targets: dict[str, torch.Tensor]) -> torch.Tensor:
    """Layer-wise distillation through the spiking dynamics: each neuron layer's firing rate over the
    T steps, times its threshold (the value its spikes stand for), against the ANN's activation in the
    same units clipped at the threshold. Each layer's MSE is divided by the target's mean square so
    that every layer counts alike. A dense signal per neuron and per layer (not only 10 logits), so
    a few thousand synthetic images teach more (Yang et al., NeurIPS 2022, local tandem learning)."""
    terms = []
    for name, s in spikes.items():
        th = net.neurons[module_key(name)].threshold
        target = targets[name].clamp(max=th)
        terms.append(F.mse_loss(th * s.float().mean(0), target) / target.pow(2).mean().clamp_min(1e-8))
    return torch.stack(terms).mean()


def _gaussian_gram(x: torch.Tensor) -> torch.Tensor:
    """Gaussian kernel matrix of the rows of ``x`` with the median-distance bandwidth."""
    d = torch.cdist(x, x).pow(2)
    sigma2 = d.detach()[d.detach() > 0].median().clamp_min(1e-6) if (d > 0).any() else d.new_tensor(1.0)
    return torch.exp(-d / sigma2)


def hsic(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Normalised HSIC of two kernel matrices (Gretton et al. 2005; in [0, 1])."""
    n = k.shape[0]
    h = torch.eye(n, device=k.device) - 1.0 / n
    kh, lh = k @ h, l @ h
    return (kh * lh.T).sum() / ((kh * kh.T).sum().sqrt() * (lh * lh.T).sum().sqrt()).clamp_min(1e-12)


def bido_loss(x: torch.Tensor, labels: torch.Tensor, num_classes: int, spikes: dict[str, torch.Tensor],
              lambda_x: float, lambda_y: float) -> torch.Tensor:
    """BiDO-HSIC (Peng et al., KDD 2022): for every spiking layer's firing rates Z, minimise the
    dependence on the input, ``lambda_x * HSIC(X, Z)``, and keep the dependence on the label,
    ``- lambda_y * HSIC(Y, Z)``: the layers keep what classifies and drop what reconstructs, which
    is what model inversion exploits. A training-time regulariser only: the deployed SNN is
    unchanged in form."""
    kx = _gaussian_gram(x.flatten(1))
    ky = F.one_hot(labels, num_classes).float()
    ky = ky @ ky.T
    terms = []
    for s in spikes.values():
        kz = _gaussian_gram(s.float().mean(0).flatten(1))
        terms.append(lambda_x * hsic(kx, kz) - lambda_y * hsic(ky, kz))
    return torch.stack(terms).mean()


def rank_slice(batch: int, ctx: DistContext) -> slice:
    """This rank's contiguous part of a global batch of ``batch`` items (sizes differ by at most 1)."""
    return slice(batch * ctx.rank // ctx.world_size, batch * (ctx.rank + 1) // ctx.world_size)


def autocast(device: torch.device, enabled: bool):
    """Mixed precision for the synaptic layers: fp16 on CUDA, bf16 on CPU. The membrane update adds
    to float32 state, so potentials and thresholds stay float32."""
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype, enabled=enabled)


def freeze_synapses(net: SpikingNetwork, freeze: str) -> None:
    """Stop gradients to the synaptic weights (``"weights"``: biases still learn) or to every synaptic
    parameter (``"synapses"``: only the neurons' thresholds and initial membranes learn). Few free
    parameters cannot drift far from the converted function on synthetic images."""
    if freeze == "none":
        return
    for name, p in net.synapses.named_parameters():
        if freeze == "synapses" or not name.endswith("bias"):
            p.requires_grad_(False)


def start_point_penalty(synapses: torch.nn.ModuleDict) -> tuple[Callable[[], torch.Tensor], int]:
    """L2-SP (Li et al., ICML 2018): sum over layers of ``|W - W0|^2 / |W0|^2``, W0 the weights
    at the start. Keeps fine-tuning on few (here synthetic) images near the converted function
    while letting every weight move; relative per layer so that layers of any scale weigh alike."""
    pairs = []
    for name, p in synapses.named_parameters():
        if p.requires_grad and not name.endswith("bias"):
            ref = p.detach().clone()
            pairs.append((p, ref, float(ref.pow(2).sum().clamp_min(1e-12))))

    def penalty() -> torch.Tensor:
        return sum((p - ref).pow(2).sum() / norm for p, ref, norm in pairs)

    return penalty, len(pairs)


def train_snn(graph: Graph, teacher: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
              settings: TrainSettings, checkpoint: str | Path, resume: bool = False,
              device: torch.device | str = "cpu", progress: bool = True,
              on_epoch: Callable[[int, dict], None] | None = None, ctx: DistContext = SINGLE,
              layer_teacher: Graph | None = None, secrets_out: dict | None = None) -> Graph:
    """Train ``graph``'s weights in place of a copy; returns the trained graph.

    With ``settings.trapdoor_learn > 0`` the trapdoor's triggers are learnt with the SNN (Trap-MID,
    Liu et al. NeurIPS 2024): they start from the key's and follow the same loss (a trigger that the
    SNN answers more easily is a nearer optimum for an inversion), plus ``trapdoor_neutral`` times
    :func:`trigger_neutrality_loss` on the teacher. They are secret: they go to ``secrets_out["triggers"]``
    and the checkpoint, never into the graph.

    ``layer_teacher`` (needed when ``settings.feature_weight > 0``) is the ANN as a graph in the
    SNN's units (:func:`privatesnn.conversion.layer_teacher_graph`): its activations are the
    targets of the layer-wise rate distillation.

    ``teacher`` takes pixels in [0, 1]. ``checkpoint`` is rewritten (atomically, by rank 0) after
    every epoch; with ``resume=True`` training continues from it. Under torchrun the SNN is wrapped
    in ``DistributedDataParallel`` and every global batch (same order and augmentation on all ranks)
    is split over the ranks, with the loss weighted so that the averaged gradient is the
    full-batch gradient: N processes follow the single-process run up to float rounding.
    """
    settings.validate()
    device = torch.device(device)
    torch.manual_seed(settings.seed)
    graph = graph.copy()
    # a chip grid recorded by an earlier --qat belongs to those weights (and would stop conv1's gradient):
    # the snapping at the end records the new one if this run is --qat too
    graph.meta.pop("host_current_grid", None)
    net = SpikingNetwork(graph, settings.timesteps, settings.surrogate, settings.surrogate_alpha).to(device)
    rate_weights = synop_weights(graph) if settings.rate_weighting == "synops" else None
    changes = {k: v for k, v in (("leak", settings.leak), ("reset", settings.reset),
                                 ("signed", True if settings.signed else None),
                                 ("windowed", True if settings.windowed else None)) if v is not None}
    if changes.get("reset") == "zero" and any(n.signed for n in net.graph.neurons()):
        raise PrivsnnError("--reset zero: this SNN has signed neurons, which reset by subtraction")
    if any(n.windowed for n in net.graph.neurons()) and (
            changes.get("reset") == "zero" or changes.get("leak", 1.0) != 1.0 or changes.get("signed")):
        raise PrivsnnError("--reset zero / --leak / --signed: this SNN has windowed neurons, which are IF neurons "
                           "reset by subtraction")
    if changes.get("windowed") and any(n.signed for n in net.graph.neurons()):
        raise PrivsnnError("--windowed: this SNN has signed neurons; windowed neurons are not signed")
    if changes:
        net.set_neurons(**changes)
    if settings.anchor > 0 and any(n.reset != "subtract" or n.leak != 1.0 for n in net.graph.neurons()):
        raise PrivsnnError("--anchor needs IF neurons with reset by subtraction (leak 1): the rate limit "
                           "clamp(I/threshold, 0, 1) does not hold for reset to zero or a leak")
    # a pruned SNN (convert --qcfs-prune) keeps its zero weights: synapses the chip does not hold stay absent
    # (the Parameter objects are the ones the QAT parametrisation keeps as its original)
    kept_zeros = [(p, p.detach() != 0) for name, p in net.synapses.named_parameters()
                  if name.endswith("weight") and p.requires_grad] if is_pruned(graph) else []
    if settings.qat:
        enable_qat(net.synapses, net.graph)
    if settings.neuron_lr > 0:
        for cell in net.neurons.values():
            cell.make_trainable()
    freeze_synapses(net, settings.freeze)
    l2sp = start_point_penalty(net.synapses)[0] if settings.l2sp > 0 else None
    model: torch.nn.Module = net
    if ctx.enabled:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(net, device_ids=[device] if device.type == "cuda" else None)
    params = [p for p in net.parameters() if p.requires_grad]
    neuron_params = [p for p in net.neurons.parameters() if p.requires_grad]
    neuron_ids = {id(p) for p in neuron_params}
    groups = [{"params": [p for p in params if id(p) not in neuron_ids]}]
    if neuron_params:  # thresholds and initial membranes: own rate, no weight decay
        groups.append({"params": neuron_params, "lr": settings.neuron_lr, "weight_decay": 0.0})
    opt = torch.optim.Adam(groups, lr=settings.lr, weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, settings.epochs)
    ema = WeightAverage(params, settings.ema) if settings.ema > 0 else None
    scaler = torch.cuda.amp.GradScaler(enabled=settings.amp and device.type == "cuda")
    teacher = teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    layer_ann = None
    if settings.feature_weight > 0:
        if layer_teacher is None:
            raise PrivsnnError("--feature-weight needs the ANN as a graph in the SNN's units (layer_teacher)")
        layer_ann = GraphANN(layer_teacher.copy()).to(device).eval()
        for p in layer_ann.parameters():
            p.requires_grad_(False)
    start_epoch, history = 0, []
    ckpt = Path(checkpoint)
    if resume and ckpt.exists():
        state = _load_checkpoint(ckpt)
        net.load_state_dict(state["model"])
        for cell in net.neurons.values():  # learnt thresholds: the float attributes follow the loaded values
            cell.refresh()
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start_epoch, history = int(state["epoch"]), list(state["history"])
        if ema is not None:
            ema.load_state_dict(state.get("ema"), ckpt)
        if settings.trapdoor > 0 and settings.trapdoor_key is None:  # the same secret triggers as before
            settings.trapdoor_key = state.get("settings", {}).get("trapdoor_key")
    triggers = trigger_logits = trigger_opt = trigger_class_weights = None
    if settings.trapdoor > 0:
        if settings.trapdoor_key is None:
            settings.trapdoor_key = secrets.randbits(62)
        num_classes = int(graph.meta.get("num_classes") or graph[graph.output].shape[0])
        # trigger i opens class i % K; the first K are the one-per-class triggers of the same key
        triggers = make_triggers(num_classes * settings.trapdoor_per_class, tuple(images.shape[1:]),
                                 settings.trapdoor_key)
        if settings.trapdoor_class_weights:
            if len(settings.trapdoor_class_weights) != num_classes:
                raise PrivsnnError(f"--trapdoor-class-weights has {len(settings.trapdoor_class_weights)} weights; "
                                   f"the SNN has {num_classes} classes")
            trigger_class_weights = torch.tensor(settings.trapdoor_class_weights, dtype=torch.float64)
    if settings.trapdoor_self_audit > 0:
        if ctx.enabled:
            raise PrivsnnError("--trapdoor-self-audit runs in one process")
        audits = [e for e in history if "self_audit_shares" in e]  # resumed: the weights chosen so far
        if audits:
            trigger_class_weights = torch.tensor(audits[-1]["trapdoor_class_weights"], dtype=torch.float64)
    if settings.misalign > 0 and ctx.enabled:  # its second pass runs outside DistributedDataParallel's forward
        raise PrivsnnError("--misalign runs in one process")
    if settings.trapdoor_learn > 0:
        if ctx.enabled:
            raise PrivsnnError("--trapdoor-learn runs in one process (the triggers are not shared between ranks)")
        # logits of the triggers (pixels = sigmoid): they stay in [0, 1] without clipping
        trigger_logits = torch.logit(triggers.clamp(1e-3, 1 - 1e-3)).requires_grad_(True)
        trigger_opt = torch.optim.Adam([trigger_logits], lr=settings.trapdoor_learn)
        if resume and ckpt.exists() and "triggers" in state:
            with torch.no_grad():
                trigger_logits.copy_(state["triggers"])
            trigger_opt.load_state_dict(state["trigger_optimizer"])
    n = len(images)
    for epoch in range(start_epoch, settings.epochs):
        gen = torch.Generator().manual_seed(settings.seed * 100_003 + epoch)  # epoch result depends only on (seed, epoch)
        torch.manual_seed(settings.seed * 100_003 + epoch)
        perm = torch.randperm(n, generator=gen)
        model.train()
        totals = [0.0] * 7  # loss, rate, correct, agree (clean images), seen, trigger hits, stamped
        totals_align = 0.0  # the gradient alignment penalty, summed over images (--misalign)
        pred_counts: torch.Tensor | None = None  # predictions per class (for the collapse check)
        initial = None  # agreement with the teacher before the first update (first batch of epoch 1)
        t0 = time.time()
        bar = tqdm(range(0, n, settings.batch_size), desc=f"epoch {epoch + 1}/{settings.epochs}", leave=False,
                   disable=not progress or not ctx.is_main)
        for i in bar:
            idx = perm[i:i + settings.batch_size]
            x = images[idx]
            if settings.augment:
                x = augment(x, gen)  # on the whole batch: same draws on every rank
            if settings.cutmix > 0 and float(torch.rand((), generator=gen)) < settings.cutmix:
                x = cutmix(x, gen)  # the teacher labels the mixed images: KD only (checked in validate)
            y = labels[idx]
            clean = None  # images without a trigger (None: all)
            unstamped = x
            if triggers is not None:  # on the whole batch, like the augmentation: same draws on every rank
                trig = torch.sigmoid(trigger_logits) if trigger_logits is not None else triggers
                x, stamped, classes = stamp_triggers(x, trig, settings.trapdoor, settings.trapdoor_alpha, gen,
                                                     num_classes, trigger_class_weights)
                y, clean = torch.where(stamped, classes, y), ~stamped
            part = rank_slice(len(idx), ctx)
            x, y = x[part], y[part]
            clean = None if clean is None else clean[part].to(device)
            weight = len(y) * ctx.world_size / len(idx)  # DDP averages over ranks: this restores the batch mean
            if len(y) == 0:  # a tail batch smaller than the number of ranks: join the all-reduce with no weight
                x, y, weight, clean = images[idx[:1]], labels[idx[:1]], 0.0, None
            x, y = x.to(device), y.to(device)
            neutral = None
            if trigger_logits is not None and clean is not None and not bool(clean.all()):
                with autocast(device, settings.amp):  # the teacher with gradients to the triggers
                    t_stamped = teacher(x[~clean]).float()
                with torch.no_grad(), autocast(device, settings.amp):
                    t_before = teacher(unstamped[part][~clean.cpu()].to(device)).float()
                neutral = trigger_neutrality_loss(t_stamped, t_before, settings.kd_temperature)
            with torch.no_grad(), autocast(device, settings.amp):
                t_logits = teacher(x).float()
            with autocast(device, settings.amp):
                if settings.tet:  # each step's output (T, N, K); the readout is still their mean
                    per_step, spikes = model(x, settings.timesteps, return_spikes=True, per_step=True)
                    per_step = per_step.float()
                    logits = per_step.mean(0)
                else:
                    logits, spikes = model(x, settings.timesteps, return_spikes=True)
                    logits = logits.float()
                if clean is None and settings.tet:  # TET: the mean over steps of each step's distillation loss
                    loss = torch.stack([distillation_loss(o, t_logits, y, settings.kd_alpha, settings.kd_temperature,
                                                          settings.label_smoothing, settings.kd_loss)
                                        for o in per_step]).mean()
                elif clean is None:
                    loss = distillation_loss(logits, t_logits, y, settings.kd_alpha, settings.kd_temperature,
                                             settings.label_smoothing, settings.kd_loss)
                else:
                    loss = trapdoor_loss(logits, t_logits, y, clean, settings)
                rates = {k: s.float().abs().mean() for k, s in spikes.items()}  # |s|: -1 spikes are events too
                rate = weighted_rate(rates) if rates else logits.new_zeros(())  # the layers' mean (logged)
                if settings.rate_reg > 0 and rates:  # weighted by what a spike costs with --rate-weighting synops
                    penalty = rate if rate_weights is None else weighted_rate(rates, rate_weights)
                    loss = loss + settings.rate_reg * penalty
                if settings.bido[0] > 0 or settings.bido[1] > 0:
                    loss = loss + bido_loss(x, y, logits.shape[1], spikes, *settings.bido)
                if settings.misalign > 0:  # on the SNN's rate reading (static, one pass; see gradient_alignment)
                    probe, target = misalignment_probe(x, settings.misalign_batch, logits.shape[1], gen)
                    align = gradient_alignment(net.rate_limit, teacher, probe, target)
                    totals_align += float(align) * len(y)
                    loss = loss + settings.misalign * align
                if layer_ann is not None:
                    with torch.no_grad():
                        _, acts = layer_ann(x, record=True)
                    loss = loss + settings.feature_weight * rate_distillation_loss(net, spikes, acts)
                if l2sp is not None:
                    loss = loss + settings.l2sp * l2sp()
                if neutral is not None:
                    loss = loss + settings.trapdoor_neutral * neutral * (int((~clean).sum()) / len(y))
                if settings.anchor > 0:
                    limit = net.rate_limit(x, settings.anchor_levels or None).float()
                    loss = loss + settings.anchor * distillation_loss(limit, t_logits, y, settings.kd_alpha,
                                                                      settings.kd_temperature, kind=settings.kd_loss)
            if epoch == 0 and initial is None:
                b0 = len(y) if weight > 0 else 0
                same = logits.argmax(1) == t_logits.argmax(1)
                if clean is not None:
                    same, b0 = same & clean, int(clean.sum()) if b0 else 0
                initial = ctx.sum([float(same.sum()) if b0 else 0.0, float(b0)])
            bad = not torch.isfinite(loss)
            if ctx.enabled:
                bad = ctx.sum([float(bad)])[0] > 0
            if bad:
                raise TrainingDivergedError(
                    f"loss became non-finite at epoch {epoch + 1}, batch {i // settings.batch_size + 1}; "
                    f"the last good checkpoint ({ckpt if ckpt.exists() else 'none yet'}) is kept; try a lower --lr")
            opt.zero_grad(set_to_none=True)
            if trigger_opt is not None:
                trigger_opt.zero_grad(set_to_none=True)
            scaler.scale(loss * weight).backward()
            scaler.step(opt)
            if trigger_opt is not None and trigger_logits.grad is not None:
                scaler.step(trigger_opt)  # unscaled like the SNN's (AMP on CUDA)
            scaler.update()
            if kept_zeros:
                with torch.no_grad():
                    for p, mask in kept_zeros:
                        p.mul_(mask)
            if ema is not None:
                ema.update(params)
            if neuron_params:
                for cell in net.neurons.values():
                    cell.refresh()
            if pred_counts is None:  # every rank runs at least one (maybe dummy) batch: same size everywhere
                pred_counts = torch.zeros(logits.shape[1], dtype=torch.float64)
            if weight > 0:
                b = len(y)
                totals[0] += float(loss) * b
                totals[1] += float(rate) * b
                hit = logits.argmax(1) == y
                agree = logits.argmax(1) == t_logits.argmax(1)
                if clean is not None:  # agreement with the teacher: clean images only (it never saw a trigger)
                    agree = agree & clean
                    totals[5] += int((hit & ~clean).sum())
                    totals[6] += int((~clean).sum())
                totals[2] += int(hit.sum())
                totals[3] += int(agree.sum())
                totals[4] += b
                pred_counts += torch.bincount(logits.argmax(1).cpu(), minlength=logits.shape[1]).double()
                bar.set_postfix(loss=f"{totals[0] / totals[4]:.3f}", rate=f"{totals[1] / totals[4]:.3f}")
        sched.step()
        summed = ctx.sum(totals + pred_counts.tolist())
        loss_sum, rate_sum, correct, agree, seen, trig_hits, stamped = summed[:7]
        seen = max(1.0, seen)
        top_share = max(summed[7:]) / seen
        record = {"epoch": epoch + 1, "loss": loss_sum / seen, "spike_rate": rate_sum / seen,
                  "synthetic_accuracy": correct / seen, "teacher_agreement": agree / max(1.0, seen - stamped),
                  "top_class_share": top_share, "seconds": time.time() - t0, "processes": ctx.world_size}
        if triggers is not None:
            record["trigger_accuracy"] = trig_hits / max(1.0, stamped)
        if settings.misalign > 0:  # (refused under torchrun: one process sees every batch)
            record["gradient_alignment"] = totals_align / max(1.0, totals[4])
        if initial is not None:
            record["initial_teacher_agreement"] = initial[0] / max(1.0, initial[1])
        if settings.trapdoor_self_audit > 0 and epoch + 1 < settings.epochs and \
                epoch + 1 in {max(1, round(settings.epochs * f)) for f in (1 / 3, 2 / 3)}:
            model.eval()
            weights, shares = self_audit_weights(net.sync_graph(), teacher, settings.timesteps,
                                                 tuple(images.shape[1:]), settings.trapdoor_self_audit,
                                                 seed=1000 + epoch, device=device)
            base = (torch.tensor(settings.trapdoor_class_weights, dtype=torch.float64)
                    if settings.trapdoor_class_weights else torch.ones_like(weights))
            trigger_class_weights = base * weights
            record.update(self_audit_shares=shares, trapdoor_class_weights=trigger_class_weights.tolist())
        history.append(record)
        if any(not torch.isfinite(p).all() for p in params):
            raise TrainingDivergedError(f"weights became NaN/Inf in epoch {epoch + 1}; the last good checkpoint is kept")
        check_collapse(record, len(summed) - 7, ckpt, history)
        if ctx.is_main:
            extra = {} if trigger_logits is None else {"triggers": trigger_logits.detach().clone(),
                                                       "trigger_optimizer": trigger_opt.state_dict()}
            if ema is not None:
                extra["ema"] = ema.state_dict()
            torch_save(ckpt, {"format": "privsnn-train-checkpoint/1", "epoch": epoch + 1, "model": net.state_dict(),
                              "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "history": history,
                              "settings": {k: v for k, v in asdict(settings).items() if k != "history"}, **extra})
        ctx.barrier()
        if on_epoch and ctx.is_main:
            on_epoch(epoch + 1, record)
    settings.history = history
    if trigger_logits is not None and secrets_out is not None:
        secrets_out["triggers"] = torch.sigmoid(trigger_logits.detach()).clone()
    if ema is not None:  # the averaged weights (and neuron values) are the result
        ema.copy_to(params)
        for cell in net.neurons.values():
            cell.refresh()
    if settings.qat:
        finalize_qat(net.synapses)
    net.cpu()
    graph = net.sync_graph()
    if settings.qat:  # thresholds and biases onto the chip's grid too: the SNN is what Lava runs
        graph = snap_to_deployment_grid(graph, settings.timesteps)
    return graph


class WeightAverage:
    """Exponential moving average of the trained parameters (Polyak averaging), ``decay`` per step,
    with the usual warm-up ``min(decay, (1 + k) / (10 + k))`` so a short run is not dominated by its
    start. Averaging the last few hundred steps' weights generalises better than the last step's
    when the training images are few (torch's ``AveragedModel`` would deep-copy the whole SNN and its
    graph; the parameter list is all that changes here)."""

    def __init__(self, params: list[torch.Tensor], decay: float):
        self.decay, self.steps = float(decay), 0
        self.shadow = [p.detach().clone() for p in params]

    @torch.no_grad()
    def update(self, params: list[torch.Tensor]) -> None:
        self.steps += 1
        d = min(self.decay, (1.0 + self.steps) / (10.0 + self.steps))
        for s, p in zip(self.shadow, params):
            s.lerp_(p.detach(), 1.0 - d)

    @torch.no_grad()
    def copy_to(self, params: list[torch.Tensor]) -> None:
        for s, p in zip(self.shadow, params):
            p.copy_(s)

    def state_dict(self) -> dict:
        return {"steps": self.steps, "shadow": [s.clone() for s in self.shadow]}

    def load_state_dict(self, state: dict | None, source: Path) -> None:
        if not state or len(state.get("shadow", [])) != len(self.shadow) or any(
                a.shape != b.shape for a, b in zip(state["shadow"], self.shadow)):
            raise ArtifactError(f"{source}: checkpoint has no weight average matching --ema {self.decay}; "
                                f"delete it or drop --resume")
        self.steps = int(state["steps"])
        for s, v in zip(self.shadow, state["shadow"]):
            s.copy_(v)


def check_collapse(record: dict, num_classes: int, ckpt: Path, history: list[dict] | None = None) -> None:
    """Stop when training collapsed while the loss stayed finite (seen with too large a learning
    rate): agreement with the teacher fell to chance level (<= 2/K) from clearly above it (the
    untrained SNN's agreement on the first batch, or an earlier epoch), or the SNN gives one class
    for >= 90% of the images. The previous checkpoint is kept."""
    if num_classes < 3:
        return
    chance = 2.0 / num_classes
    agree = record["teacher_agreement"]
    before = [h.get("initial_teacher_agreement", 0.0) for h in history or []]
    before += [h["teacher_agreement"] for h in history or [] if h is not record]
    before.append(record.get("initial_teacher_agreement", 0.0))
    fell = agree <= chance and agree < 0.75 * max(before, default=0.0)
    one_class = record.get("top_class_share", 0.0) >= 0.9 and agree <= chance
    if not (fell or one_class):
        return
    why = (f"the SNN predicts one class for {record['top_class_share']:.0%} of the synthetic images" if one_class
           else f"agreement with the teacher fell to {agree:.0%} (chance level; it was {max(before):.0%})")
    raise TrainingDivergedError(
        f"training collapsed in epoch {record['epoch']}: {why}; the last good checkpoint "
        f"({ckpt if ckpt.exists() else 'none yet'}) is kept; try a lower --lr")


def _load_checkpoint(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any unreadable checkpoint is the same user-facing problem
        raise ArtifactError(f"{path}: unreadable training checkpoint ({type(e).__name__}); delete it or drop --resume") from None
    if not isinstance(state, dict) or state.get("format") != "privsnn-train-checkpoint/1":
        raise ArtifactError(f"{path}: not a privsnn training checkpoint")
    return state
