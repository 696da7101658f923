"""Architectures beyond post-activation ResNets and VGGs: pre-activation ResNets, DenseNet-BC and
MobileNet-style depthwise networks (ReLU6). Small ``digits_*`` versions (8x8 grey) are what
``bench/models.py`` trains to measure each family end to end; the CIFAR-sized ones take
user weights (e.g. ``preact_resnet20:weights.pt``).

Pre-activation (BatchNorm -> ReLU -> conv, He et al. 2016) and concatenation (Huang et al. 2017)
are lowered into the standard layer graph exactly (:mod:`privatesnn.lowering`).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .digits import DIGITS_CFG
from .registry import ModelCfg, register_model
from .vgg import CIFAR_MEAN, CIFAR_STD

CIFAR_CFG = dict(input_shape=(3, 32, 32), num_classes=10, mean=CIFAR_MEAN, std=CIFAR_STD)


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus the identity (or a 1x1 conv on the pre-activated input)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c_in), nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(c_out), nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride, bias=False) if stride != 1 or c_in != c_out else None

    def forward(self, x):
        out = F.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        return self.conv2(F.relu(self.bn2(out))) + skip


class PreActResNet(nn.Module):
    """Pre-activation ResNet with the CIFAR paper's plain conv stem. The stem's output is an analog
    value that the first stage's residual adds carry: on Lava those neurons take it as a per-image
    bias from the host and their spikes through synapses (``Layer.host_mixed``)."""

    def __init__(self, blocks: tuple[int, ...], widths: tuple[int, ...], in_ch: int, num_classes: int):
        super().__init__()
        self.stem = nn.Conv2d(in_ch, widths[0], 3, 1, 1, bias=False)
        layers, c = [], widths[0]
        for i, (n, w) in enumerate(zip(blocks, widths)):
            for j in range(n):
                layers.append(PreActBlock(c, w, 2 if (i > 0 and j == 0) else 1))
                c = w
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        x = F.relu(self.bn(self.layers(self.stem(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class DenseLayer(nn.Module):
    """DenseNet-BC layer: BN-ReLU-conv1x1 (4k) - BN-ReLU-conv3x3 (k), concatenated to its input."""

    def __init__(self, c_in: int, growth: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c_in), nn.Conv2d(c_in, 4 * growth, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(4 * growth), nn.Conv2d(4 * growth, growth, 3, 1, 1, bias=False)

    def forward(self, x):
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([x, out], 1)


class Transition(nn.Module):
    """BN-ReLU-conv1x1 (compression) - 2x2 average pooling."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.bn, self.conv = nn.BatchNorm2d(c_in), nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x):
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2)


class DenseNetBC(nn.Module):
    def __init__(self, layers_per_block: int, blocks: int, growth: int, in_ch: int, num_classes: int,
                 reduction: float = 0.5):
        super().__init__()
        c = 2 * growth
        self.stem = nn.Conv2d(in_ch, c, 3, 1, 1, bias=False)
        mods: list[nn.Module] = []
        for b in range(blocks):
            for _ in range(layers_per_block):
                mods.append(DenseLayer(c, growth))
                c += growth
            if b < blocks - 1:
                mods.append(Transition(c, int(c * reduction)))
                c = int(c * reduction)
        self.features = nn.Sequential(*mods)
        self.bn = nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        x = F.relu(self.bn(self.features(self.stem(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class DepthwiseSeparable(nn.Module):
    """MobileNet block: depthwise 3x3 - BN - ReLU6 - pointwise 1x1 - BN - ReLU6."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.dw = nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in, bias=False)
        self.bn1 = nn.BatchNorm2d(c_in)
        self.pw = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)

    def forward(self, x):
        return F.relu6(self.bn2(self.pw(F.relu6(self.bn1(self.dw(x))))))


class MobileNetSmall(nn.Module):
    def __init__(self, widths: tuple[int, ...], strides: tuple[int, ...], in_ch: int, num_classes: int):
        super().__init__()
        self.stem = nn.Conv2d(in_ch, widths[0], 3, 1, 1, bias=False)
        self.stem_bn = nn.BatchNorm2d(widths[0])
        self.blocks = nn.Sequential(*[DepthwiseSeparable(a, b, s) for a, b, s in zip(widths[:-1], widths[1:], strides)])
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward(self, x):
        x = self.blocks(F.relu6(self.stem_bn(self.stem(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class MaxPoolCNN(nn.Module):
    """conv-ReLU-maxpool twice, then a linear head (max pooling runs as a spiking max pool)."""

    def __init__(self, in_ch: int, num_classes: int, size: int):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(in_ch, 16, 3, padding=1), nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32 * (size // 4) ** 2, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        return self.fc(torch.flatten(x, 1))


# --- digits (8x8 grey): trained by bench/models.py ---------------------------------------------

@register_model(ModelCfg(description="pre-activation ResNet for digits (2 stages x 2 blocks)", **DIGITS_CFG))
def digits_preact_resnet(num_classes: int = 10) -> nn.Module:
    return PreActResNet((2, 2), (16, 32), 1, num_classes)


@register_model(ModelCfg(description="DenseNet-BC for digits (2 blocks x 3 layers, growth 8)", **DIGITS_CFG))
def digits_densenet(num_classes: int = 10) -> nn.Module:
    return DenseNetBC(3, 2, 8, 1, num_classes)


@register_model(ModelCfg(description="MobileNet-style digits net (depthwise separable convs, ReLU6)", **DIGITS_CFG))
def digits_mobilenet(num_classes: int = 10) -> nn.Module:
    return MobileNetSmall((16, 32, 64, 64), (1, 2, 1), 1, num_classes)


@register_model(ModelCfg(description="max-pooling CNN for digits", **DIGITS_CFG))
def digits_maxpool_cnn(num_classes: int = 10) -> nn.Module:
    return MaxPoolCNN(1, num_classes, 8)


# --- CIFAR-sized (user weights) -----------------------------------------------------------------

@register_model(ModelCfg(description="pre-activation ResNet-20 for CIFAR (He et al. 2016b; plain conv stem)",
                         **CIFAR_CFG))
def preact_resnet20(num_classes: int = 10) -> nn.Module:
    return PreActResNet((3, 3, 3), (16, 32, 64), 3, num_classes)


@register_model(ModelCfg(description="DenseNet-BC-40 for CIFAR (growth 12, 3 blocks x 6 layers)", **CIFAR_CFG))
def densenet40_bc(num_classes: int = 10) -> nn.Module:
    return DenseNetBC(6, 3, 12, 3, num_classes)
