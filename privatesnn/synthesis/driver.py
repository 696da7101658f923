"""Batched, seeded, resumable synthesis of class-balanced images from a frozen classifier.

Each batch's images depend only on ``(seed, batch index)`` (and the settings), so an interrupted
run resumed from ``<out>.partial.npz`` gives exactly the same result as an uninterrupted one.

Defaults (tuned on a 2-core CPU; see ``make_config``): both methods optimise pixels in [0, 1]
with Adam (lr 0.05) and cosine decay on batches of 256; 200 steps for dirichlet, 120 for
bn-inversion (about 1.5 s per step for ResNet-20 at batch 256 on one core: ~3 min per batch).
PrivateSNN itself uses lr 1e-3 for 2500 steps on one image at a time; that is far too slow on a
CPU, and on the digits model the shorter, larger-step schedule trains a better distilled student.
bn-inversion: BN-statistics weight 0.5; TV weight 0.3 and uniform-noise start on tiny (< 16 px)
images, 30 and a smooth start otherwise; jitter 1 px (< 16 px) or 2 px; flips only for RGB; random
resized crops (``crop``) off by default.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..distributed import SINGLE, DistContext
from ..errors import ArtifactError, PrivsnnError
from ..models.loading import LoadedModel
from .bn_inversion import BNInversionLoss, batchnorm_layers, boundary_targets
from .dirichlet import DirichletLoss, class_similarity, dirichlet_targets
from ..io_utils import remove_stale_temps
from .store import load_partial, save_partial, save_preview, save_synthetic

METHODS = ("dirichlet", "bn-inversion")
MAX_NUM = 10_000_000
# Defaults, tuned on a 2-core CPU: pixel-space Adam with cosine decay (see make_config).
DEFAULTS: dict[str, dict[str, Any]] = {
    "dirichlet": dict(iterations=200, lr=0.05),
    "bn-inversion": dict(iterations=120, lr=0.05),
}


@dataclass(frozen=True)
class SynthConfig:
    """Every setting that determines the images (hashed to match a partial for resuming)."""

    method: str
    num: int
    batch_size: int = 256
    iterations: int = 120
    lr: float = 0.05
    seed: int = 0
    flip: bool = False
    jitter: int = 0  # max random roll in pixels per step (bn-inversion)
    init: str = "uniform"  # "uniform" noise, or "smooth" (upsampled low-resolution noise)
    beta: float = 1.0  # dirichlet concentration scale
    temperature: float = 20.0  # dirichlet softmax temperature
    r_feature: float = 0.5  # bn-inversion: weight of the BN-statistics term
    tv: float = 30.0  # bn-inversion: total-variation (L2) weight
    l2: float = 0.0  # bn-inversion: L2 image prior weight
    boundary: float = 0.0  # bn-inversion: max weight of a second class in each image's target (0 = one-hot)
    crop: float = 0.0  # bn-inversion: > 0: each step sees random resized crops of at least this area fraction

    @property
    def num_batches(self) -> int:
        return math.ceil(self.num / self.batch_size)


def default_method(loaded: LoadedModel) -> str:
    return "bn-inversion" if batchnorm_layers(loaded.net) else "dirichlet"


def make_config(loaded: LoadedModel, num: int, method: str | None = None, batch_size: int = 256,
                iterations: int | None = None, lr: float | None = None, seed: int = 0,
                flip: bool | None = None, **extra: Any) -> SynthConfig:
    """Validate and fill in per-method and per-model defaults."""
    method = method or default_method(loaded)
    if method not in METHODS:
        raise PrivsnnError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "bn-inversion" and not batchnorm_layers(loaded.net):
        raise PrivsnnError(f"--method bn-inversion needs BatchNorm2d layers to match, but model {loaded.spec!r} "
                           f"has none; use --method dirichlet")
    if extra.get("boundary") and method != "bn-inversion":
        raise PrivsnnError(f"--boundary mixes targets of the bn-inversion method; --method {method} has its own "
                           f"soft targets (dirichlet: --beta, --temperature)")
    if extra.get("crop") and method != "bn-inversion":
        raise PrivsnnError(f"--crop applies to --method bn-inversion, not {method}")
    for name, v in extra.items():  # here, not in the CLI or API, so every caller of the driver gets them
        if name == "crop" and not 0.0 <= v < 1.0:
            raise PrivsnnError(f"--crop is the smallest area fraction of a crop: it must be in [0, 1), got {v}")
        if name == "boundary" and not 0.0 <= v < 0.5:
            raise PrivsnnError(f"--boundary must be in [0, 0.5) (the second class's weight stays below the "
                               f"label's), got {v}")
        if name in ("tv", "l2") and not v >= 0:
            raise PrivsnnError(f"--{name} must be >= 0, got {v}")
        if name in ("beta", "temperature", "r_feature") and not v > 0:
            raise PrivsnnError(f"--{name.replace('_', '-')} must be > 0, got {v}")
    for name, v in (("--num", num), ("--batch-size", batch_size), ("--iterations", iterations)):
        if v is not None and (not isinstance(v, int) or v <= 0):
            raise PrivsnnError(f"{name} must be a positive integer, got {v}")
    if num > MAX_NUM:
        raise PrivsnnError(f"--num {num} is absurdly large (max {MAX_NUM:,})")
    if lr is not None and not (lr > 0 and math.isfinite(lr)):
        raise PrivsnnError(f"--lr must be > 0, got {lr}")
    if seed < 0:
        raise PrivsnnError(f"--seed must be >= 0, got {seed}")
    d = DEFAULTS[method]
    digits_like = loaded.input_shape[0] == 1 or loaded.arch.startswith("digits")
    if flip is None:  # mirrored digits/characters are other classes
        flip = method == "bn-inversion" and not digits_like
    cfg = SynthConfig(method=method, num=num, batch_size=min(batch_size, num),
                      iterations=iterations or d["iterations"], lr=lr or d["lr"], seed=seed, flip=bool(flip))
    if method == "bn-inversion":
        # Tiny images (8x8 digits) have large natural neighbour differences: a weak TV prior and
        # plain noise work best there; 32x32+ images want a strong one and a smooth start.
        small = min(loaded.input_shape[1:]) < 16
        cfg = dataclasses.replace(cfg, jitter=1 if small else 2, tv=0.3 if small else 30.0,
                                  init="uniform" if small else "smooth")
    return dataclasses.replace(cfg, **extra)


def settings_hash(loaded: LoadedModel, cfg: SynthConfig) -> str:
    model = {k: v for k, v in loaded.describe().items() if k != "spec"}  # a moved checkpoint may resume
    settings = dataclasses.asdict(cfg)
    if not settings["crop"]:  # added later: partial runs written before it still resume
        del settings["crop"]
    blob = json.dumps({"cfg": settings, "model": model}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def balanced_labels(num: int, num_classes: int, seed: int) -> torch.Tensor:
    """``i % K`` for i < num, shuffled by a permutation that depends only on (seed, num)."""
    perm = np.random.default_rng([seed, num, 0x1AB]).permutation(num)
    return torch.from_numpy((np.arange(num) % num_classes)[perm].astype(np.int64))


def _batch_seed(seed: int, b: int) -> int:
    return int(np.random.SeedSequence([seed, b]).generate_state(1, np.uint64)[0]) >> 1


def init_images(cfg: SynthConfig, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """Starting pixels: uniform noise (as in PrivateSNN), or bilinearly upsampled noise at 1/8 of
    the resolution plus a little fine noise ("smooth")."""
    if cfg.init == "uniform":
        return torch.rand(shape, generator=gen)
    if cfg.init != "smooth":
        raise PrivsnnError(f"unknown init {cfg.init!r}: expected uniform or smooth")
    n, c, h, w = shape
    lo = torch.rand((n, c, max(1, h // 8), max(1, w // 8)), generator=gen)
    x = F.interpolate(lo, size=(h, w), mode="bilinear", align_corners=False)
    return (x + 0.05 * torch.randn(shape, generator=gen)).clamp(0.0, 1.0)


def random_resized_crops(x: torch.Tensor, min_area: float, gen: torch.Generator) -> torch.Tensor:
    """A random square crop of each image (area fraction ~ U(min_area, 1), anywhere inside it),
    resized back to the full size, differentiable (``affine_grid``/``grid_sample``, bilinear).

    Inverting the model through crops makes every part of an image read as its class at several
    scales, so objects take part of the frame at varied sizes, as in photos, instead of one
    texture filling it ("local object reinforcement", IntraQ, Zhong et al. CVPR 2022; the
    augmentation ensemble of Plug-In Inversion, Ghiasi et al. 2022)."""
    n = x.shape[0]
    side = (min_area + (1.0 - min_area) * torch.rand(n, generator=gen)).sqrt()
    shift = (2 * torch.rand(n, 2, generator=gen) - 1) * (1 - side)[:, None]
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = side, side
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def synthesize_batch(loaded: LoadedModel, cfg: SynthConfig, labels: torch.Tensor, b: int,
                     device: torch.device, bar: Any = None) -> torch.Tensor:
    """Optimise one batch of images (pixels in [0, 1]) towards ``labels``; returns them on the CPU."""
    module = loaded.module().to(device)
    for p in module.parameters():
        p.requires_grad_(False)
    bseed = _batch_seed(cfg.seed, b)
    gen = torch.Generator().manual_seed(bseed)  # CPU draws: same images on any device
    n = labels.shape[0]
    y = labels.to(device)
    if cfg.method == "dirichlet":
        targets = dirichlet_targets(class_similarity(loaded.net), labels, cfg.beta, np.random.default_rng(bseed))
        loss_fn = DirichletLoss(module, targets.to(device), cfg.temperature)
        hooks = contextlib.nullcontext()
    else:
        soft = None
        if cfg.boundary > 0:
            soft = boundary_targets(labels, loaded.num_classes, cfg.boundary,
                                    torch.Generator().manual_seed(bseed + 1)).to(device)
        loss_fn = hooks = BNInversionLoss(module, loaded.net, y, cfg.r_feature, cfg.tv, cfg.l2, soft)
    x = init_images(cfg, (n, *loaded.input_shape), gen).to(device).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.iterations)
    with hooks:
        for it in range(cfg.iterations):
            xin = x
            if cfg.jitter:
                dx, dy = torch.randint(-cfg.jitter, cfg.jitter + 1, (2,), generator=gen).tolist()
                xin = torch.roll(xin, shifts=(dy, dx), dims=(2, 3))
            if cfg.flip and torch.rand((), generator=gen).item() < 0.5:
                xin = torch.flip(xin, dims=(3,))
            if cfg.crop > 0:
                xin = random_resized_crops(xin, cfg.crop, gen)
            loss, _ = loss_fn(xin)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                x.clamp_(0.0, 1.0)
            if bar is not None:
                bar.update(1)
                if it % 10 == 0 or it == cfg.iterations - 1:
                    bar.set_postfix_str(f"batch {b + 1}/{cfg.num_batches} loss {loss.item():.4f}", refresh=False)
    return x.detach().cpu()


@torch.no_grad()
def target_agreement(module: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device,
                     batch_size: int = 512) -> tuple[float, float]:
    """(fraction with argmax == target, mean softmax probability of the target)."""
    module = module.to(device).eval()
    hits, conf = 0, 0.0
    for i in range(0, len(labels), batch_size):
        p = torch.softmax(module(images[i:i + batch_size].to(device)), dim=1).cpu()
        t = labels[i:i + batch_size]
        hits += int((p.argmax(1) == t).sum())
        conf += float(p.gather(1, t[:, None]).sum())
    return hits / len(labels), conf / len(labels)


def partial_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".partial.npz")


def generate(loaded: LoadedModel, cfg: SynthConfig, device: torch.device | str = "cpu",
             partial: str | Path | None = None, overwrite: bool = False, max_batches: int | None = None,
             progress: bool = True, ctx: DistContext = SINGLE) -> tuple[torch.Tensor, torch.Tensor, int] | None:
    """Run all batches, checkpointing each finished round to ``partial`` and resuming from it.

    Under torchrun the batches of a round go round-robin to the ranks (batch ``b`` of the round to
    rank ``b % world``) and are gathered on every rank; a batch's images depend only on
    ``(seed, b)``, so any number of processes gives the same images. Only rank 0 writes the partial.
    Returns ``(images, labels, batches run now)``, or None if ``max_batches`` stopped it early.
    """
    from tqdm.auto import tqdm

    device = torch.device(device)
    labels = balanced_labels(cfg.num, loaded.num_classes, cfg.seed)
    h = settings_hash(loaded, cfg)
    done_imgs: list[np.ndarray] = []
    start = 0
    partial = Path(partial) if partial is not None else None
    if partial is not None and partial.exists():
        if overwrite:
            if ctx.is_main:
                partial.unlink()
        else:
            try:
                imgs, labs, meta = load_partial(partial)
            except ArtifactError as e:
                raise ArtifactError(f"{e}; pass --overwrite to discard it and start again") from None
            if meta.get("settings_hash") != h:
                raise ArtifactError(f"{partial} is a partial run with different settings (or another model); "
                                    f"rerun with the same settings to resume, or pass --overwrite to start again")
            start = int(meta["batches_done"])
            n_done = min(start * cfg.batch_size, cfg.num)
            if imgs.shape[0] != n_done or not np.array_equal(labs, labels[:n_done].numpy()):
                raise ArtifactError(f"{partial} is inconsistent ({imgs.shape[0]} images for {start} batches); "
                                    f"pass --overwrite to start again")
            done_imgs = [imgs]
    ctx.barrier()  # every rank has read the partial before rank 0 may rewrite it
    total = cfg.num_batches
    stop = total if max_batches is None else min(total, start + max_batches)
    rounds = range(start, stop, ctx.world_size)
    bar = tqdm(total=len(rounds) * cfg.iterations, desc=f"synthesize ({cfg.method})", unit="step",
               disable=not progress or not ctx.is_main, dynamic_ncols=True)
    try:
        for first in rounds:
            b = first + ctx.rank
            mine = None
            if b < stop:
                sl = slice(b * cfg.batch_size, min((b + 1) * cfg.batch_size, cfg.num))
                mine = synthesize_batch(loaded, cfg, labels[sl], b, device, bar).numpy()
            done_imgs.extend(x for x in ctx.all_gather(mine) if x is not None)
            last = min(first + ctx.world_size, stop)
            if partial is not None and last < total and ctx.is_main:
                allx = np.concatenate(done_imgs)
                done_imgs = [allx]
                save_partial(partial, allx, labels[:allx.shape[0]].numpy(), h, last)
    finally:
        bar.close()
    if stop < total:
        return None
    return torch.from_numpy(np.concatenate(done_imgs)), labels, stop - start


def synthesize(loaded: LoadedModel, cfg: SynthConfig, out: str | Path, device: torch.device | str = "cpu",
               overwrite: bool = False, max_batches: int | None = None, progress: bool = True,
               command: str = "synthesize", ctx: DistContext = SINGLE) -> dict[str, Any] | None:
    """Generate ``cfg.num`` images into ``out`` (npz), ``out``'s ``.png`` preview and manifest.

    Returns a summary dict, or None if stopped early by ``max_batches`` (the partial is kept).
    """
    from ..manifest import Manifest

    out = Path(out)
    if out.is_dir():
        raise PrivsnnError(f"--out {out} is a directory; give a file name such as {out / 'synth.npz'}")
    if out.exists() and not overwrite:
        raise PrivsnnError(f"{out} already exists; pass --overwrite to replace it")
    t0 = time.time()
    part = partial_path(out)
    if ctx.is_main:
        for dest in (out, part):
            remove_stale_temps(dest)  # left by a killed run
    res = generate(loaded, cfg, device, part, overwrite, max_batches, progress, ctx)
    if res is None:
        return None
    images, labels, ran = res
    seconds = time.time() - t0
    if not ctx.is_main:  # rank 0 writes; the others are done
        return {"out": str(out), "n": len(labels), "rank": ctx.rank}
    agree, conf = target_agreement(loaded.module(), images, labels, torch.device(device))
    settings = dataclasses.asdict(cfg)
    results = {"target_agreement": agree, "mean_target_confidence": conf, "seconds": round(seconds, 2),
               "seconds_per_batch": round(seconds * ctx.world_size / max(ran, 1), 2),
               "batches_resumed": cfg.num_batches - ran, "processes": ctx.world_size}
    meta = {"method": cfg.method, "model": loaded.describe(), "num_classes": loaded.num_classes,
            "input_shape": list(loaded.input_shape), "settings": settings, "results": results}
    save_synthetic(out, images, labels, meta)
    preview = save_preview(out.with_suffix(".png"), images, labels, loaded.num_classes)
    Manifest(kind="synthetic", command=command, settings={**settings, **results},
             inputs={"model": loaded.sha256}, real_data_read=False, private=True, seed=cfg.seed,
             parents=[{"role": "model", **loaded.describe()}]).write_for(out)
    if part.exists():
        part.unlink()
    return {"out": str(out), "preview": str(preview), "n": len(labels), **results}

