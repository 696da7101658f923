"""CIFAR VGGs: with BatchNorm (``vgg11``, ``vgg16``) and the PrivateSNN style ``vgg16_nobn``.

``vgg16_nobn`` follows the paper's code lineage (Rathi et al.): no BatchNorm, no bias, 2x2 average
pooling, and a ``Linear(512*s*s, 4096) - ReLU - Dropout - Linear(4096, K)`` head.
"""

from __future__ import annotations

import torch.nn as nn

from .registry import ModelCfg, register_model

CFG = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)


class VGG(nn.Module):
    """VGG feature stack + classifier. ``pool`` is ``"max"`` or ``"avg"``."""

    def __init__(self, cfg: list, num_classes: int, batch_norm: bool, pool: str, hidden: int | None,
                 bias: bool = True, input_size: int = 32, dropout: float = 0.5):
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2))
            else:
                layers.append(nn.Conv2d(c, v, 3, padding=1, bias=bias and not batch_norm))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(v))
                layers.append(nn.ReLU())
                c = v
        self.features = nn.Sequential(*layers)
        spatial = input_size // 2 ** cfg.count("M")
        feat = c * spatial * spatial
        self.flatten = nn.Flatten()
        if hidden:
            self.classifier = nn.Sequential(
                nn.Linear(feat, hidden, bias=bias), nn.ReLU(), nn.Dropout(dropout),
                nn.Linear(hidden, num_classes, bias=bias),
            )
        else:
            self.classifier = nn.Sequential(nn.Linear(feat, num_classes))

    def forward(self, x):
        return self.classifier(self.flatten(self.features(x)))


_CIFAR = dict(input_shape=(3, 32, 32), num_classes=10, mean=CIFAR_MEAN, std=CIFAR_STD)


@register_model(ModelCfg(**_CIFAR, description="CIFAR VGG-11 with BatchNorm and max pooling"))
def vgg11(num_classes: int = 10) -> nn.Module:
    return VGG(CFG["vgg11"], num_classes, batch_norm=True, pool="max", hidden=None)


@register_model(ModelCfg(**_CIFAR, description="CIFAR VGG-16 with BatchNorm and max pooling"))
def vgg16(num_classes: int = 10) -> nn.Module:
    return VGG(CFG["vgg16"], num_classes, batch_norm=True, pool="max", hidden=None)


@register_model(ModelCfg(input_shape=(3, 32, 32), num_classes=10, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                         description="PrivateSNN VGG-16: no BN, no bias, average pooling, 4096 hidden"))
def vgg16_nobn(num_classes: int = 10) -> nn.Module:
    return VGG(CFG["vgg16"], num_classes, batch_norm=False, pool="avg", hidden=4096, bias=False)
