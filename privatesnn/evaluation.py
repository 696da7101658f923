"""Accuracy of classifiers on labelled images, with a progress bar."""

from __future__ import annotations

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .data import ImageSet
from .distributed import DistContext, current
from .errors import DataError


def gather_batches(local: dict[int, torch.Tensor], ctx: DistContext) -> torch.Tensor:
    """Concatenate per-batch results ``{batch index: tensor}`` from every rank in batch order."""
    merged: dict[int, torch.Tensor] = {}
    for part in ctx.all_gather(local):
        merged.update(part)
    return torch.cat([merged[k] for k in sorted(merged)]) if merged else torch.empty(0, dtype=torch.long)


@torch.no_grad()
def predict(module: nn.Module, images: torch.Tensor, batch_size: int = 256, desc: str = "predict",
            device: torch.device | str = "cpu", progress: bool = True) -> torch.Tensor:
    """Arg-max predictions of ``module`` (which takes pixels in [0, 1]) for ``images``.

    Under torchrun each rank predicts every world-size-th batch and all ranks get all predictions."""
    ctx = current()
    module = module.to(device).eval()
    starts = list(range(0, len(images), batch_size))
    preds: dict[int, torch.Tensor] = {}
    for k in tqdm(ctx.mine(len(starts)), desc=desc, disable=not progress or len(starts) < 4 or not ctx.is_main,
                  leave=False):
        i = starts[k]
        preds[k] = module(images[i:i + batch_size].to(device)).argmax(1).cpu()
    return gather_batches(preds, ctx)


def check_classes(data: ImageSet, num_classes: int, what: str) -> None:
    if len(data) and int(data.y.max()) >= num_classes:
        raise DataError(f"{data.spec} has labels up to {int(data.y.max())} but {what} has {num_classes} outputs")


def accuracy(module: nn.Module, data: ImageSet, num_classes: int, batch_size: int = 256,
             device: torch.device | str = "cpu", desc: str = "ANN") -> float:
    """Top-1 accuracy of an ANN on ``data``."""
    check_classes(data, num_classes, "the model")
    preds = predict(module, data.x, batch_size, desc, device)
    return float((preds == data.y).float().mean()) if len(data) else float("nan")
