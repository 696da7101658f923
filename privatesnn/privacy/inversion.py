"""Model inversion: class-representative image generation (PrivateSNN's attack, Algorithm 1/3).

Regularised gradient ascent on a class score, from random images, with the usual image priors:
random jitter (roll) of the input at every step, a Gaussian blur every few steps, total-variation
and L2 penalties, and clamping to the valid pixel range [0, 1]. The same routine attacks:

* scenario 1: the SNN's weights read as a ReLU ANN (:class:`~.weights_as_ann.RebuiltANN`);
* scenario 2: the SNN itself, through time, with surrogate gradients (:class:`SNNForInversion`;
  a rate-coded input uses a straight-through estimator for the Bernoulli spikes).

Batched and seeded: the images of batch ``b`` depend only on ``(seed, b)`` and the settings.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from norse.torch.functional.encode import signed_poisson_encode_step
from tqdm.auto import tqdm

from ..errors import PrivsnnError
from ..graph import Graph
from ..snn import SpikingNetwork, _normalize

OBJECTIVES = ("ce", "logit")


@dataclass
class InversionSettings:
    per_class: int = 8  # images generated per class
    iterations: int = 200
    lr: float = 0.1  # Adam on pixels, cosine-decayed
    objective: str = "logit"  # "logit": maximise z_c (transfers best); "ce": maximise log p(c)
    jitter: int | None = None  # max random roll in pixels per step; None: 1 for <= 16 px images, else 2
    blur_every: int = 4  # Gaussian blur of the image every k steps (0: never)
    blur_sigma: float = 0.5
    tv: float = 0.5  # total-variation (L2) weight, per pixel
    l2: float = 0.1  # weight of the penalty ||x - 0.5||^2 per pixel
    flip: bool | None = None  # random horizontal flips; None: for 3-channel images only
    timesteps: int | None = None  # scenario 2: T of the SNN (None: the artifact's)
    snn_surrogate_alpha: float = 1.0  # scenario 2: the attacker's triangle surrogate height (the
    # training default 0.3 shrinks gradients by 0.3 per layer and leaves the images grey)
    batch_size: int = 100
    seed: int = 0

    def validate(self) -> None:
        checks = [(self.per_class > 0, "per-class images must be > 0"), (self.iterations > 0, "--iterations must be > 0"),
                  (self.lr > 0 and math.isfinite(self.lr), "inversion lr must be > 0"),
                  (self.objective in OBJECTIVES, f"inversion objective must be one of {OBJECTIVES}"),
                  (self.jitter is None or self.jitter >= 0, "jitter must be >= 0"),
                  (self.blur_every >= 0 and self.blur_sigma >= 0, "blur settings must be >= 0"),
                  (self.tv >= 0 and self.l2 >= 0, "tv / l2 weights must be >= 0"),
                  (self.timesteps is None or self.timesteps > 0, "--timesteps must be > 0"),
                  (self.snn_surrogate_alpha > 0, "surrogate alpha must be > 0"),
                  (self.batch_size > 0, "batch size must be > 0")]
        for ok, msg in checks:
            if not ok:
                raise PrivsnnError(msg)

    def to_dict(self) -> dict:
        return asdict(self)


class SNNForInversion(SpikingNetwork):
    """The SNN as the attacker differentiates it: surrogate gradients through time, and for a
    rate-coded input a straight-through estimator (forward: Bernoulli spikes; backward: identity
    on the spike probability)."""

    def encode(self, x: torch.Tensor, timesteps: int) -> torch.Tensor:
        inp = self.graph.input
        if inp.encoding == "direct" or not x.requires_grad:
            return super().encode(x, timesteps)
        p = (_normalize(self.graph, x) / inp.input_scale).clamp(-1.0, 1.0)
        spikes = torch.stack([signed_poisson_encode_step(p.detach(), f_max=1000.0, dt=1e-3) for _ in range(timesteps)])
        return spikes + (p - p.detach()).unsqueeze(0)


def snn_for_inversion(graph: Graph, timesteps: int, surrogate_alpha: float = 1.0) -> nn.Module:
    """A module ``x -> logits`` running ``graph`` as an SNN for ``timesteps`` steps, weights frozen,
    differentiable through time with a triangle surrogate of height ``surrogate_alpha``."""
    net = SNNForInversion(graph, timesteps, "triangle", surrogate_alpha).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def gaussian_kernel(sigma: float, channels: int) -> torch.Tensor:
    radius = max(1, int(math.ceil(2 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k1 = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k1 = k1 / k1.sum()
    return (k1[:, None] * k1[None, :]).expand(channels, 1, -1, -1).contiguous()


def blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    r = kernel.shape[-1] // 2
    return F.conv2d(F.pad(x, (r, r, r, r), mode="replicate"), kernel.to(x), groups=x.shape[1])


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of neighbouring pixels."""
    return ((x[:, :, 1:] - x[:, :, :-1]) ** 2).mean() + ((x[:, :, :, 1:] - x[:, :, :, :-1]) ** 2).mean()


def _batch_seed(seed: int, b: int) -> int:
    return int(np.random.SeedSequence([seed, b, 0x1A7]).generate_state(1, np.uint64)[0]) >> 1


def invert(model: Callable[[torch.Tensor], torch.Tensor], classes: list[int], input_shape: tuple[int, ...],
           settings: InversionSettings, device: torch.device | str = "cpu", desc: str = "inversion",
           progress: bool = True, init: torch.Tensor | None = None,
           regulariser: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Generate ``settings.per_class`` images for each class in ``classes`` by gradient ascent on
    ``model`` (pixels in [0, 1] -> logits). Returns ``(images (N,C,H,W) in [0,1], labels (N,))`` on the CPU.

    ``init`` (M, C, H, W): start each image from one of these (drawn with the batch's seed) instead
    of uniform noise; ``regulariser(x)``: an extra penalty added to the loss (e.g. an image prior's
    negative log-likelihood). Both serve the attacker with auxiliary data (threat model d)."""
    settings.validate()
    labels = torch.tensor([c for c in classes for _ in range(settings.per_class)], dtype=torch.long)
    c_in, h, w = input_shape
    jitter = settings.jitter if settings.jitter is not None else (1 if max(h, w) <= 16 else 2)
    flip = settings.flip if settings.flip is not None else c_in == 3
    kernel = gaussian_kernel(settings.blur_sigma, c_in) if settings.blur_every and settings.blur_sigma > 0 else None
    blur_until = int(0.75 * settings.iterations)  # the last quarter refines without blurring
    out = []
    n_batches = math.ceil(len(labels) / settings.batch_size)
    bar = tqdm(total=n_batches * settings.iterations, desc=desc, unit="step", leave=False, disable=not progress)
    try:
        for b in range(n_batches):
            y = labels[b * settings.batch_size:(b + 1) * settings.batch_size]
            bseed = _batch_seed(settings.seed, b)
            gen = torch.Generator().manual_seed(bseed)
            torch.manual_seed(bseed)  # rate-coded SNN inputs draw spikes from the global generator
            if init is None:
                x = torch.rand((len(y), c_in, h, w), generator=gen)
            else:
                x = init[torch.randint(0, len(init), (len(y),), generator=gen)].clone()
            x = x.to(device).requires_grad_(True)
            yd = y.to(device)
            opt = torch.optim.Adam([x], lr=settings.lr)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=settings.iterations)
            for it in range(settings.iterations):
                xin = x
                if jitter:
                    dy, dx = torch.randint(-jitter, jitter + 1, (2,), generator=gen).tolist()
                    xin = torch.roll(xin, shifts=(dy, dx), dims=(2, 3))
                if flip and torch.rand((), generator=gen).item() < 0.5:
                    xin = torch.flip(xin, dims=(3,))
                logits = model(xin)
                if settings.objective == "ce":
                    score = -F.cross_entropy(logits, yd)
                else:
                    score = logits.gather(1, yd[:, None]).mean()
                loss = -score
                if settings.tv:
                    loss = loss + settings.tv * total_variation(x) * h * w
                if settings.l2:
                    loss = loss + settings.l2 * ((x - 0.5) ** 2).mean() * h * w
                if regulariser is not None:
                    loss = loss + regulariser(x)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                with torch.no_grad():
                    if kernel is not None and (it + 1) % settings.blur_every == 0 and it + 1 <= blur_until:
                        x.copy_(blur(x, kernel))
                    x.clamp_(0.0, 1.0)
                bar.update(1)
            out.append(x.detach().cpu())
    finally:
        bar.close()
    return torch.cat(out), labels


@torch.no_grad()
def target_hits(evaluator: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                device: torch.device | str = "cpu", batch_size: int = 256) -> torch.Tensor:
    """Per image: does ``evaluator`` (pixels in [0,1] -> logits) assign it to its target class."""
    evaluator = evaluator.to(device).eval()
    hits = [evaluator(images[i:i + batch_size].to(device)).argmax(1).cpu() == labels[i:i + batch_size]
            for i in range(0, len(labels), batch_size)]
    return torch.cat(hits) if hits else torch.zeros(0, dtype=torch.bool)


def attack_accuracy(evaluator: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                    device: torch.device | str = "cpu", batch_size: int = 256) -> float:
    """How often ``evaluator`` assigns an image to the class it was generated for."""
    hits = target_hits(evaluator, images, labels, device, batch_size)
    return float(hits.float().mean()) if len(hits) else 0.0


def per_class_rates(hits: torch.Tensor, labels: torch.Tensor) -> dict[int, float]:
    """Hit rate per target class (the images of one class are correlated: the class is the unit)."""
    return {int(c): float(hits[labels == c].float().mean()) for c in torch.unique(labels)}


def clustered_se(rates: dict[int, float] | None, p: float, n_images: int) -> float:
    """Standard error of an attack accuracy with classes as clusters: ``std(per-class rates)/sqrt(K)``,
    but never below the binomial SE of ``n_images`` independent images."""
    binom = math.sqrt(max(p * (1 - p), 1e-12) / max(n_images, 1))
    if not rates or len(rates) < 2:
        return binom
    vals = torch.tensor(list(rates.values()), dtype=torch.float64)
    return max(binom, float(vals.std(unbiased=True)) / math.sqrt(len(vals)))


def score_inversion(evaluator: nn.Module, victim: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                    device: torch.device | str = "cpu") -> dict:
    """An attack's score: the independent ``evaluator``'s accuracy on the inverted ``images`` with its
    clustered standard error and per-class rates, and ``self``: the share the attacked ``victim``
    itself puts in their target class (did the attack reach its goal)."""
    hits = target_hits(evaluator, images, labels, device)
    acc = float(hits.float().mean())
    rates = per_class_rates(hits, labels)
    return {"evaluator": acc, "se": clustered_se(rates, acc, len(labels)), "per_class": rates,
            "self": attack_accuracy(victim, images, labels, device, batch_size=50)}


def save_grid(path, images: torch.Tensor, labels: torch.Tensor, title: str = "", per_class: int = 8,
              class_names: list[str] | None = None):
    """A PNG grid (atomically written): one row per class, up to ``per_class`` images each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io_utils import atomic_path

    classes = sorted(set(labels.tolist()))
    cols = max(1, min(per_class, max(int((labels == c).sum()) for c in classes) if classes else 1))
    rows = max(1, len(classes))
    fig, axes = plt.subplots(rows, cols, figsize=(max(cols * 0.8 + 0.6, 5.0), rows * 0.8 + 0.5), squeeze=False)
    for r, c in enumerate(classes):
        idx = torch.nonzero(labels == c).flatten()[:cols].tolist()
        for j in range(cols):
            ax = axes[r][j]
            ax.set_xticks([]), ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if j < len(idx):
                img = images[idx[j]].clamp(0, 1).permute(1, 2, 0).numpy()
                if img.shape[2] == 1:
                    ax.imshow(img[:, :, 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                else:
                    ax.imshow(img, interpolation="nearest")
            if j == 0:
                name = class_names[c] if class_names and c < len(class_names) else str(c)
                ax.set_ylabel(name, rotation=0, labelpad=14, va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
