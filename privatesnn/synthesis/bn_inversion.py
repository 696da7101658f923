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


def boundary_targets(labels: torch.Tensor, num_classes: int, max_mix: float, gen: torch.Generator) -> torch.Tensor:
    """Soft targets between two classes: ``(1 - m) e_label + m e_other`` with ``m ~ U(0, max_mix)`` and
    another class drawn at random, so the images lie towards the teacher's decision boundaries
    (where a low-T student's errors are) rather than deep inside a class; the label stays the argmax."""
    n = labels.shape[0]
    other = (labels + torch.randint(1, num_classes, (n,), generator=gen)) % num_classes
    m = torch.rand(n, generator=gen) * max_mix
    t = torch.zeros(n, num_classes)
    t[torch.arange(n), labels] = 1.0 - m
    t[torch.arange(n), other] += m
    return t


class BNInversionLoss:
    """``CE + r_feature * sum_l (||mu_l - mean_l|| + ||var_l - var_l^run||) + tv * TV + l2 * ||x||^2``.

    Forward hooks on every BatchNorm2d of ``net`` record the statistics distance; use it as a
    context manager so the hooks are removed afterwards.
    """

    def __init__(self, module: nn.Module, net: nn.Module, labels: torch.Tensor, r_feature: float,
                 tv_weight: float, l2_weight: float, soft_targets: torch.Tensor | None = None):
        self.module, self.labels, self.soft_targets = module, labels, soft_targets
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
        if self.soft_targets is None:
            loss = F.cross_entropy(logits, self.labels)
        else:
            loss = -(self.soft_targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
        loss = loss + self.r_feature * torch.stack(self._terms).sum()
        loss = loss + self.tv_weight * tv_l2(x) + self.l2_weight * (x ** 2).mean()
        return loss, logits
