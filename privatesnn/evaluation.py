"""Accuracy of classifiers on labelled images, with a progress bar."""

from __future__ import annotations

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .data import ImageSet
from .errors import DataError


@torch.no_grad()
def predict(module: nn.Module, images: torch.Tensor, batch_size: int = 256, desc: str = "predict",
            device: torch.device | str = "cpu", progress: bool = True) -> torch.Tensor:
    """Arg-max predictions of ``module`` (which takes pixels in [0, 1]) for ``images``."""
    module = module.to(device).eval()
    preds = []
    it = range(0, len(images), batch_size)
    for i in tqdm(it, desc=desc, disable=not progress or len(it) < 4, leave=False):
        preds.append(module(images[i:i + batch_size].to(device)).argmax(1).cpu())
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)


def check_classes(data: ImageSet, num_classes: int, what: str) -> None:
    if len(data) and int(data.y.max()) >= num_classes:
        raise DataError(f"{data.spec} has labels up to {int(data.y.max())} but {what} has {num_classes} outputs")


def accuracy(module: nn.Module, data: ImageSet, num_classes: int, batch_size: int = 256,
             device: torch.device | str = "cpu", desc: str = "ANN") -> float:
    """Top-1 accuracy of an ANN on ``data``."""
    check_classes(data, num_classes, "the model")
    preds = predict(module, data.x, batch_size, desc, device)
    return float((preds == data.y).float().mean()) if len(data) else float("nan")
