"""Small builders shared by several test modules."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import torch
import torch.nn as nn


def randomize_bn(net: nn.Module, seed: int = 1) -> nn.Module:
    """Non-trivial BN statistics so that a dropped/mis-mapped buffer changes the outputs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.1)
    return net.eval()


def save_test_snn(path, graph, timesteps: int):
    """An SNN artifact of ``graph`` with a minimal (private) test manifest; returns its path."""
    from privatesnn.artifact import save_snn
    from privatesnn.manifest import Manifest

    return save_snn(path, graph, {"timesteps": timesteps}, Manifest(kind="snn", command="test", settings={}))


def load_bench(name: str) -> ModuleType:
    """A script of bench/ (not a package) imported as a module, e.g. ``load_bench("energy")``."""
    path = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
