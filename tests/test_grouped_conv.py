"""MobileNet-style layers through every reader: grouped and depthwise convolutions and ReLU6 /
clamp(0, c) activations (a clip the threshold absorbs): extraction from torch and ONNX, the SNN, NIR
export/import (nir 1.0.8 mis-types grouped convs; worked around), the Lava plan, the chip model and
Lava itself."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from privatesnn.conversion import ConversionSettings, convert
from privatesnn.exporters.nir_export import write_nir
from privatesnn.exporters.onnx_export import torch_onnx_export
from privatesnn.exporters.nir_import import read_nir_graph
from privatesnn.extract import extract_graph
from privatesnn.lava_extra import lava_available
from privatesnn.models.loading import LoadedModel
from privatesnn.snn import GraphANN, SpikingNetwork


class DepthwiseNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)  # depthwise
        self.gc = nn.Conv2d(8, 16, 3, padding=1, stride=2, groups=2)  # grouped
        self.fc = nn.Linear(16 * 4 * 4, 10)

        self.act = nn.ReLU6()

    def forward(self, x):
        x = torch.relu(self.c1(x))
        x = self.act(self.dw(x))  # ReLU6, as in MobileNet
        x = torch.clamp(self.gc(x), 0.0, 0.1)  # a clip that binds often
        return self.fc(torch.flatten(x, 1))


def _loaded() -> LoadedModel:
    torch.manual_seed(0)
    net = DepthwiseNet().eval()
    return LoadedModel(net=net, spec="depthwise-test", arch="depthwise", input_shape=(1, 8, 8), num_classes=10,
                       mean=(0.0,), std=(1.0,), sha256="0" * 64)


def test_grouped_convs_extract_convert_and_round_trip_through_nir(tmp_path):
    loaded = _loaded()
    x = torch.rand(32, 1, 8, 8)
    g = extract_graph(loaded.net, (1, 8, 8), meta={"mean": [0.0], "std": [1.0], "num_classes": 10})
    assert sorted(n.groups for n in g.weighted() if hasattr(n, "groups")) == [1, 2, 8]
    assert [n.clip for n in g.neurons()] == [None, 6.0, 0.1]
    assert torch.allclose(GraphANN(g)(x), loaded.net(x), atol=1e-5)  # the extracted graph is the ANN
    g.neurons()[2].clip = None
    assert not torch.allclose(GraphANN(g)(x), loaded.net(x), atol=1e-3)  # ... and the clip binds here
    snn = convert(loaded, x, ConversionSettings(timesteps=64), progress=False)
    ann_pred = loaded.net(x).argmax(1)
    agree = float((SpikingNetwork(snn)(x, 256).argmax(1) == ann_pred).float().mean())
    assert agree >= 0.9  # the SNN approaches the ANN at large T
    assert all(n.clip is None or n.clip >= 1.0 for n in snn.neurons())  # in spike units: the neuron saturates first
    assert torch.allclose(GraphANN(snn)(x), loaded.net(x), atol=1e-4)  # normalisation keeps the ANN exact
    path = write_nir(snn, tmp_path / "m.nir")
    back = read_nir_graph(path)
    y0, y1 = SpikingNetwork(snn)(x, 8), SpikingNetwork(back)(x, 8)
    assert torch.equal(y0, y1)  # NIR round trip exact
    assert [n.clip for n in back.neurons()] == [n.clip for n in snn.neurons()]


def test_onnx_clip_imports_as_a_clipped_neuron(tmp_path):
    from privatesnn.models import load_model

    loaded = _loaded()
    torch_onnx_export(loaded.net, (torch.rand(1, 1, 8, 8),), tmp_path / "m.onnx", input_names=["x"],
                      output_names=["y"], opset_version=13)
    onnx_model = load_model(str(tmp_path / "m.onnx"))
    from privatesnn.conversion import ann_graph

    g = ann_graph(onnx_model)
    assert [n.clip for n in g.neurons()] == [None, 6.0, pytest.approx(0.1)]
    x = torch.rand(8, 1, 8, 8)
    assert torch.allclose(GraphANN(g)(x), loaded.net(x), atol=1e-5)


def test_grouped_convs_deploy_bit_exact_on_the_chip_model_and_lava(tmp_path):
    from privatesnn.hw_targets.chip_model import reference_fixed
    from privatesnn.hw_targets.plan import build_plan
    from privatesnn.hw_targets.fixed_point import quantize_plan

    loaded = _loaded()
    x = torch.rand(16, 1, 8, 8)
    snn = convert(loaded, x, ConversionSettings(timesteps=8, reset="zero"), progress=False)
    snn.meta["timesteps"] = 8
    plan = build_plan(snn, 8)
    fixed = quantize_plan(plan)
    chip = reference_fixed(fixed, x[:4]).argmax(1)
    agree = float((chip == SpikingNetwork(snn)(x[:4], 8).argmax(1)).float().mean())
    assert agree >= 0.75  # 8-bit weights: near the float SNN
    if lava_available():
        from privatesnn.hw_targets.lava_sim import run_lava

        res = run_lava(plan, fixed, x[:2], "fixed_pt")
        assert torch.equal(torch.as_tensor(res.raw_sums).to(torch.int64), reference_fixed(fixed, x[:2]).to(torch.int64))  # bit for bit
