"""PrivateSNN's synthesis (ZSKD "data impressions", Nayak et al. 2019): class similarity from the
last Linear layer, a Dirichlet soft target per image, and soft cross-entropy at temperature 20.
Needs no BatchNorm, so it works on any classifier that ends in ``nn.Linear``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import UnsupportedLayerError

DIRICHLET_EPS = 1e-3  # concentration floor: the min-max normalisation puts an exact 0 in every row


def last_linear(net: nn.Module) -> nn.Linear:
    """The last ``nn.Linear`` in ``net.modules()`` order (the classifier head)."""
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise UnsupportedLayerError("dirichlet synthesis needs a final nn.Linear classifier layer; "
                                    f"{type(net).__name__} has none")
    return linears[-1]


def class_similarity(net: nn.Module) -> torch.Tensor:
    """(K, K) cosine similarity of the head's weight rows, min-max normalised row by row
    (so the diagonal is 1 and each row has one exact 0)."""
    w = last_linear(net).weight.detach().float().cpu()
    w = F.normalize(w, dim=1)
    c = w @ w.t()
    c = c - c.min(dim=1, keepdim=True).values
    return c / c.max(dim=1, keepdim=True).values.clamp_min(1e-12)


def dirichlet_targets(sim: torch.Tensor, labels: torch.Tensor, beta: float,
                      rng: np.random.Generator) -> torch.Tensor:
    """One soft target per image: ``y ~ Dirichlet(beta * sim[k] + eps)`` for its label k."""
    alpha = (beta * sim[labels.cpu()] + DIRICHLET_EPS).double().numpy()
    y = np.stack([rng.dirichlet(a) for a in alpha])
    return torch.from_numpy(y).float()


class DirichletLoss:
    """Soft cross-entropy between fixed Dirichlet targets and ``softmax(logits / temperature)``."""

    def __init__(self, module: nn.Module, targets: torch.Tensor, temperature: float):
        self.module, self.targets, self.temperature = module, targets, temperature

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.module(x)
        loss = -(self.targets * F.log_softmax(logits / self.temperature, dim=1)).sum(dim=1).mean()
        return loss, logits
