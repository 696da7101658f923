"""Temporal spike-based training of a converted SNN: the PrivateSNN weight "encryption".

BPTT through all T steps with surrogate gradients (Norse's triangle threshold), LIF leak
configurable, knowledge distillation from the ANN teacher plus cross-entropy on the synthetic
targets, Adam, optional spike-rate regulariser. Synthetic images only: no real data is read here.
Checkpoints after every epoch (``<out>.ckpt.pt``) make ``--resume`` continue where a run stopped.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .errors import ArtifactError, PrivsnnError, TrainingDivergedError
from .graph import Graph
from .io_utils import torch_save
from .snn import SpikingNetwork


@dataclass
class TrainSettings:
    epochs: int = 5
    timesteps: int = 8
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.0
    kd_alpha: float = 0.7  # weight of the distillation term; (1 - kd_alpha) weighs CE on synthetic targets
    kd_temperature: float = 4.0
    rate_reg: float = 0.0  # weight of the mean-spike-rate penalty (fewer spikes, less energy)
    leak: float | None = None  # set every neuron's leak (e.g. 0.95 = LIF); None keeps the artifact's
    reset: str | None = None  # "zero" trains for the Lava/Loihi neuron; None keeps the artifact's
    surrogate: str = "triangle"
    surrogate_alpha: float = 0.3
    augment: bool = True  # random shifts (and flips for 3-channel images)
    seed: int = 0
    history: list = field(default_factory=list)

    def validate(self) -> None:
        checks = [(self.epochs > 0, "--epochs must be > 0"), (0 < self.timesteps <= 10_000, "--timesteps must be in 1..10000"),
                  (self.batch_size > 0, "--batch-size must be > 0"), (self.lr > 0 and math.isfinite(self.lr), "--lr must be > 0"),
                  (0.0 <= self.kd_alpha <= 1.0, "--kd-alpha must be in [0, 1]"),
                  (self.kd_temperature > 0, "--kd-temperature must be > 0"), (self.rate_reg >= 0, "--rate-reg must be >= 0"),
                  (self.leak is None or 0.0 < self.leak <= 1.0, "--leak must be in (0, 1]"),
                  (self.reset in (None, "subtract", "zero"), "--reset must be subtract or zero")]
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


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, alpha: float,
                      temperature: float) -> torch.Tensor:
    """Hinton KD: ``(1-a)*CE(y, s) + a*tau^2*KL(softmax(t/tau) || softmax(s/tau))``."""
    ce = F.cross_entropy(student, labels)
    if alpha == 0:
        return ce
    kl = F.kl_div(F.log_softmax(student / temperature, 1), F.softmax(teacher / temperature, 1), reduction="batchmean")
    return (1 - alpha) * ce + alpha * temperature ** 2 * kl


def train_snn(graph: Graph, teacher: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
              settings: TrainSettings, checkpoint: str | Path, resume: bool = False,
              device: torch.device | str = "cpu", progress: bool = True,
              on_epoch: Callable[[int, dict], None] | None = None) -> Graph:
    """Train ``graph``'s weights in place of a copy; returns the trained graph.

    ``teacher`` takes pixels in [0, 1]. ``checkpoint`` is rewritten (atomically) after every epoch;
    with ``resume=True`` training continues from it.
    """
    settings.validate()
    torch.manual_seed(settings.seed)
    graph = graph.copy()
    net = SpikingNetwork(graph, settings.timesteps, settings.surrogate, settings.surrogate_alpha).to(device)
    changes = {k: v for k, v in (("leak", settings.leak), ("reset", settings.reset)) if v is not None}
    if changes:
        net.set_neurons(**changes)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, settings.epochs)
    teacher = teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    start_epoch, history = 0, []
    ckpt = Path(checkpoint)
    if resume and ckpt.exists():
        state = _load_checkpoint(ckpt)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start_epoch, history = int(state["epoch"]), list(state["history"])
    n = len(images)
    for epoch in range(start_epoch, settings.epochs):
        gen = torch.Generator().manual_seed(settings.seed * 100_003 + epoch)  # epoch result depends only on (seed, epoch)
        torch.manual_seed(settings.seed * 100_003 + epoch)
        perm = torch.randperm(n, generator=gen)
        net.train()
        totals = {"loss": 0.0, "rate": 0.0, "correct": 0, "agree": 0, "seen": 0}
        t0 = time.time()
        bar = tqdm(range(0, n, settings.batch_size), desc=f"epoch {epoch + 1}/{settings.epochs}", leave=False,
                   disable=not progress)
        for i in bar:
            idx = perm[i:i + settings.batch_size]
            x = images[idx]
            if settings.augment:
                x = augment(x, gen)
            x, y = x.to(device), labels[idx].to(device)
            with torch.no_grad():
                t_logits = teacher(x)
            logits, spikes = net(x, settings.timesteps, return_spikes=True)
            loss = distillation_loss(logits, t_logits, y, settings.kd_alpha, settings.kd_temperature)
            rate = torch.stack([s.mean() for s in spikes.values()]).mean() if spikes else logits.new_zeros(())
            if settings.rate_reg > 0:
                loss = loss + settings.rate_reg * rate
            if not torch.isfinite(loss):
                raise TrainingDivergedError(
                    f"loss became {float(loss)} at epoch {epoch + 1}, batch {i // settings.batch_size + 1}; "
                    f"the last good checkpoint ({ckpt if ckpt.exists() else 'none yet'}) is kept; try a lower --lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            b = len(idx)
            totals["loss"] += float(loss) * b
            totals["rate"] += float(rate) * b
            totals["correct"] += int((logits.argmax(1) == y).sum())
            totals["agree"] += int((logits.argmax(1) == t_logits.argmax(1)).sum())
            totals["seen"] += b
            bar.set_postfix(loss=f"{totals['loss'] / totals['seen']:.3f}", rate=f"{totals['rate'] / totals['seen']:.3f}")
        sched.step()
        seen = max(1, totals["seen"])
        record = {"epoch": epoch + 1, "loss": totals["loss"] / seen, "spike_rate": totals["rate"] / seen,
                  "synthetic_accuracy": totals["correct"] / seen, "teacher_agreement": totals["agree"] / seen,
                  "seconds": time.time() - t0}
        history.append(record)
        if any(not torch.isfinite(p).all() for p in params):
            raise TrainingDivergedError(f"weights became NaN/Inf in epoch {epoch + 1}; the last good checkpoint is kept")
        torch_save(ckpt, {"format": "privsnn-train-checkpoint/1", "epoch": epoch + 1, "model": net.state_dict(),
                          "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "history": history,
                          "settings": {k: v for k, v in asdict(settings).items() if k != "history"}})
        if on_epoch:
            on_epoch(epoch + 1, record)
    settings.history = history
    net.cpu()
    return net.sync_graph()


def _load_checkpoint(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any unreadable checkpoint is the same user-facing problem
        raise ArtifactError(f"{path}: unreadable training checkpoint ({type(e).__name__}); delete it or drop --resume") from None
    if not isinstance(state, dict) or state.get("format") != "privsnn-train-checkpoint/1":
        raise ArtifactError(f"{path}: not a privsnn training checkpoint")
    return state
