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


def tiny_graph(seed: int = 0):
    """A two-layer conv SNN graph on 1x6x6 images with 3 classes (random weights from ``seed``)."""
    from privatesnn.graph import Conv, Flatten, Graph, Input, Linear, Neuron

    gen = torch.Generator().manual_seed(seed)
    nodes = [Input("x", [], shape=(1, 6, 6)),
             Conv("c1", ["x"], weight=torch.randn(4, 1, 3, 3, generator=gen) * 0.6, bias=torch.randn(4, generator=gen) * 0.1,
                  padding=(1, 1)),
             Neuron("n1", ["c1"]),
             Conv("c2", ["n1"], weight=torch.randn(6, 4, 3, 3, generator=gen) * 0.4, bias=torch.zeros(6)),
             Neuron("n2", ["c2"]),
             Flatten("f", ["n2"]),
             Linear("fc", ["f"], weight=torch.randn(3, 6 * 4 * 4, generator=gen) * 0.2, bias=torch.zeros(3))]
    return Graph({n.name: n for n in nodes}, output="fc", meta={"mean": [0.0], "std": [1.0], "num_classes": 3})
