"""Choosing T without real data (the paper's future work): the SNN's agreement with its ANN on
held-out synthetic images at each T, and the smallest T that reaches a wanted agreement.

Agreement (same top-1 class as the ANN) needs no labels, so synthetic images the SNN was not
trained or calibrated on can stand in for the test set; ``bench/accuracy.py`` checks how well it
predicts the real accuracy.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .errors import PrivsnnError
from .graph import Graph
from .snn import SpikingNetwork


@torch.no_grad()
def agreement_over_time(graph: Graph, teacher: torch.nn.Module, images: torch.Tensor, timesteps: list[int],
                        batch_size: int = 100, device: torch.device | str = "cpu", progress: bool = True
                        ) -> dict[int, float]:
    """Share of ``images`` on which the SNN's top-1 class at T equals the ANN's, for each T (one
    simulation of max(T) steps per batch)."""
    if len(images) == 0:
        raise PrivsnnError("no held-out synthetic images")
    net = SpikingNetwork(graph).to(device).eval()
    teacher = teacher.to(device).eval()
    hits = {t: 0 for t in timesteps}
    for i in tqdm(range(0, len(images), batch_size), desc=f"agreement T<={max(timesteps)}", leave=False,
                  disable=not progress):
        x = images[i:i + batch_size].to(device)
        ref = teacher(x).argmax(1)
        for t, logits in net.logits_over_time(x, timesteps).items():
            hits[t] += int((logits.argmax(1) == ref).sum())
    return {t: hits[t] / len(images) for t in timesteps}


def smallest_t(agreement: dict[int, float], target: float) -> int | None:
    """The smallest T whose agreement reaches ``target`` (None when none does)."""
    ok = [t for t, a in sorted(agreement.items()) if a >= target]
    return ok[0] if ok else None
