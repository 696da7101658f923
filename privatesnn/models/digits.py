"""Small CNNs for scikit-learn's handwritten digits (8x8 grey, 10 classes): the embedded default.

``digits_cnn`` is the victim model (BatchNorm, average pooling: converts to an SNN exactly).
``digits_mlp`` is an independent evaluator of another architecture, used to score privacy attacks.
"""

from __future__ import annotations

import torch.nn as nn

from .registry import ModelCfg, register_model

DIGITS_CFG = dict(input_shape=(1, 8, 8), num_classes=10, mean=(0.5,), std=(0.5,))


class DigitsCNN(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.relu2 = nn.ReLU()
        self.pool = nn.AvgPool2d(2)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(32)
        self.relu3 = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.relu4 = nn.ReLU()
        self.fc2 = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.pool(self.relu2(self.bn2(self.conv2(x))))
        x = self.relu3(self.bn3(self.conv3(x)))
        return self.fc2(self.relu4(self.fc1(self.flatten(x))))


class DigitsMLP(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, num_classes))

    def forward(self, x):
        return self.net(x)


@register_model(ModelCfg(**DIGITS_CFG, description="digits CNN (BN, avg-pool) for 8x8 sklearn digits"))
def digits_cnn(num_classes: int = 10) -> nn.Module:
    return DigitsCNN(num_classes)


@register_model(ModelCfg(**DIGITS_CFG, description="digits MLP: the independent privacy-audit evaluator"))
def digits_mlp(num_classes: int = 10) -> nn.Module:
    return DigitsMLP(num_classes)
