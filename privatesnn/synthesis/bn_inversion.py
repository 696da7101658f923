"""DeepInversion-style synthesis (Yin et al., CVPR 2020), re-implemented from the paper: match the
batch statistics of every BatchNorm2d input to its running statistics, plus cross-entropy to the
target class and total-variation / L2 image priors, with random jitter and flips.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def batchnorm_layers(net: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]


def tv_l2(x: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between vertical and horizontal pixel neighbours."""
    return ((x[:, :, 1:, :] - x[:, :, :-1, :]) ** 2).mean() + ((x[:, :, :, 1:] - x[:, :, :, :-1]) ** 2).mean()


class BNInversionLoss:
    """``CE + r_feature * sum_l (||mu_l - mean_l|| + ||var_l - var_l^run||) + tv * TV + l2 * ||x||^2``.

    Forward hooks on every BatchNorm2d of ``net`` record the statistics distance; use it as a
    context manager so the hooks are removed afterwards.
    """

    def __init__(self, module: nn.Module, net: nn.Module, labels: torch.Tensor, r_feature: float,
                 tv_weight: float, l2_weight: float):
        self.module, self.labels = module, labels
        self.r_feature, self.tv_weight, self.l2_weight = r_feature, tv_weight, l2_weight
        self.layers = batchnorm_layers(net)
        self._handles: list = []
        self._terms: list[torch.Tensor] = []

    def _hook(self, bn: nn.BatchNorm2d, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        x = inputs[0]
        mu = x.mean(dim=(0, 2, 3))
        var = x.var(dim=(0, 2, 3), unbiased=False)
        self._terms.append(torch.norm(mu - bn.running_mean, 2) + torch.norm(var - bn.running_var, 2))

    def __enter__(self) -> "BNInversionLoss":
        self._handles = [m.register_forward_hook(self._hook) for m in self.layers]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._terms = []
        logits = self.module(x)
        loss = F.cross_entropy(logits, self.labels)
        loss = loss + self.r_feature * torch.stack(self._terms).sum()
        loss = loss + self.tv_weight * tv_l2(x) + self.l2_weight * (x ** 2).mean()
        return loss, logits
