"""Pre-activation ResNets and DenseNets (concatenation, BatchNorm after an add/concat) through every
reader: extraction from torch and ONNX (exact), conversion (the SNN approaches the ANN at large T),
the op counter (= brute force), NIR round trip (exact), and the chip model and Lava (bit-exact with
each other, close to the float SNN)."""

from __future__ import annotations

import pytest
import torch
from helpers import randomize_bn
from test_ops_count import check_against_brute_force

from privatesnn.conversion import ConversionSettings, ann_graph, convert
from privatesnn.errors import UnsupportedLayerError
from privatesnn.exporters.nir_export import write_nir
from privatesnn.exporters.nir_import import read_nir_graph
from privatesnn.exporters.onnx_export import torch_onnx_export
from privatesnn.extract import extract_graph
from privatesnn.graph import Add, Linear
from privatesnn.lava_extra import lava_available
from privatesnn.models import create_model, load_model, model_cfg
from privatesnn.models.loading import LoadedModel
from privatesnn.snn import GraphANN, SpikingNetwork

FAMILIES = ["digits_preact_resnet", "digits_densenet"]


def _loaded(arch: str, seed: int = 0) -> LoadedModel:
    torch.manual_seed(seed)
    net = randomize_bn(create_model(arch), seed=seed)
    cfg = model_cfg(arch)
    return LoadedModel(net=net, spec=arch, arch=arch, input_shape=cfg.input_shape, num_classes=10,
                       mean=cfg.mean, std=cfg.std, sha256="0" * 64)


def _images(n: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("arch", FAMILIES + ["preact_resnet20", "densenet40_bc"])
def test_extracted_graph_reproduces_the_ann(arch):
    loaded = _loaded(arch)
    g = ann_graph(loaded)
    x = torch.rand(3, *loaded.input_shape, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(GraphANN(g)(x), loaded.module()(x), atol=1e-5)
    assert g.meta is not None and not any(n.TYPE in ("concat", "affine") for n in g)  # lowered away


def test_densenet_concat_splits_into_summed_synapses():
    g = ann_graph(_loaded("digits_densenet"))
    out = g[g.output]
    # the classifier reads the concatenation of the stem and every layer of the last block: one
    # Linear per part, summed
    assert isinstance(out, Add) and all(isinstance(g[s], Linear) for s in out.inputs) and len(out.inputs) == 4
    # each feature map is read by every later layer of its block, each with its own BatchNorm: a
    # scaled copy of the synapses per reader (stem -> 3 dense layers + transition)
    assert sum(1 for n in g.weighted() if n.inputs == ["x"]) == 4
    low = g.meta["lowering"]
    assert low["concatenations"] == 6 and low["synaptic_layers_after"] == len(g.weighted()) > low["synaptic_layers_before"]


@pytest.mark.parametrize("arch", FAMILIES)
def test_snn_approaches_the_ann_and_nir_round_trip_is_exact(arch, tmp_path):
    loaded = _loaded(arch)
    x = _images(64)
    snn = convert(loaded, x, ConversionSettings(timesteps=64), progress=False)
    assert torch.allclose(GraphANN(snn)(x), loaded.module()(x), atol=1e-4)  # normalisation keeps the ANN
    ann_pred = loaded.module()(x).argmax(1)
    agree = float((SpikingNetwork(snn)(x, 512).argmax(1) == ann_pred).float().mean())
    assert agree >= 0.9, agree
    back = read_nir_graph(write_nir(snn, tmp_path / "m.nir"))
    assert torch.equal(SpikingNetwork(snn)(x[:16], 8), SpikingNetwork(back)(x[:16], 8))


@pytest.mark.parametrize("arch", FAMILIES)
def test_op_counts_equal_brute_force(arch):
    loaded = _loaded(arch)
    x = _images(8)
    snn = convert(loaded, x, ConversionSettings(timesteps=8), progress=False)
    check_against_brute_force(snn, x[:1], T=2)  # pure-Python loops: one image


@pytest.mark.parametrize("arch", FAMILIES)
def test_onnx_import_matches_torch(arch, tmp_path):
    loaded = _loaded(arch)
    path = tmp_path / f"{arch}.onnx"
    torch_onnx_export(loaded.net, (torch.rand(1, 1, 8, 8),), path, input_names=["x"], output_names=["y"],
                      opset_version=13)
    g = ann_graph(load_model(str(path), mean=loaded.mean, std=loaded.std))
    x = _images(4)
    assert torch.allclose(GraphANN(g)(x), loaded.module()(x), atol=1e-4)


@pytest.mark.parametrize("arch", FAMILIES)
def test_deploys_bit_exact_on_the_chip_model_and_lava(arch):
    from privatesnn.hw_targets.chip_model import reference_fixed
    from privatesnn.hw_targets.fixed_point import quantize_plan
    from privatesnn.hw_targets.plan import build_plan

    loaded = _loaded(arch)
    x = _images(32)
    snn = convert(loaded, x, ConversionSettings(timesteps=16, reset="zero"), progress=False)
    plan = build_plan(snn, 16)
    # the pre-activation ResNet's conv stem runs along the first residual adds: those neurons take
    # the image part as a per-image bias and the spikes through synapses
    assert any(layer.host_mixed for layer in plan.layers.values()) == (arch == "digits_preact_resnet")
    fixed = quantize_plan(plan)
    chip = reference_fixed(fixed, x[:16]).argmax(1)
    agree = float((chip == SpikingNetwork(snn)(x[:16], 16).argmax(1)).float().mean())
    assert agree >= 0.75, agree  # 8-bit weights: near the float SNN
    if lava_available():
        from privatesnn.hw_targets.lava_sim import run_lava

        res = run_lava(fixed.plan, fixed, x[:2], "fixed_pt")
        assert torch.equal(torch.as_tensor(res.raw_sums).to(torch.int64),
                           reference_fixed(fixed, x[:2]).to(torch.int64))  # bit for bit


def test_bn_after_relu_and_cat_along_space_are_clear_errors():
    import torch.nn as nn
    import torch.nn.functional as F

    class BNAfterReLU(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.bn, self.fc = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Linear(256, 10)

        def forward(self, x):
            return self.fc(torch.flatten(F.relu(self.bn(F.relu(self.c(x)))), 1))

    class CatSpace(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.fc = nn.Conv2d(1, 4, 3, padding=1), nn.Linear(512, 10)

        def forward(self, x):
            y = F.relu(self.c(x))
            return self.fc(torch.flatten(torch.cat([y, y], 2), 1))

    with pytest.raises(UnsupportedLayerError, match="BatchNorm 'bn' after a ReLU"):
        extract_graph(randomize_bn(BNAfterReLU()), (1, 8, 8))
    with pytest.raises(UnsupportedLayerError, match="along dim 2"):
        extract_graph(CatSpace().eval(), (1, 8, 8))


def test_qat_grid_matches_the_exporter_on_mixed_and_concatenated_layers():
    """After QAT the exporter's 8-bit quantisation is lossless here too: a mixed layer keeps the
    weights' scale (its host part widens the bias exponent instead) and split synapses share a grid."""
    from privatesnn.hw_targets.fixed_point import BIAS_EXP, quantize_plan
    from privatesnn.hw_targets.plan import build_plan
    from privatesnn.qat import enable_qat, finalize_qat

    for arch in FAMILIES:
        snn = convert(_loaded(arch), _images(16), ConversionSettings(timesteps=8, reset="zero"), progress=False)
        net = SpikingNetwork(snn)
        enable_qat(net.synapses, snn)
        finalize_qat(net.synapses)
        fixed = quantize_plan(build_plan(net.sync_graph(), 8))
        report = fixed.report()
        assert max(w["rel_l2_error"] for r in report for w in r["weights"]) < 1e-6, arch
        mixed = [r for r in report if r["host_mixed"]]
        assert bool(mixed) == (arch == "digits_preact_resnet")
        assert all(r["bias_exp"] >= BIAS_EXP for r in mixed)
        if mixed:  # this stem's current needs more range than 13 bits at the weights' scale
            assert max(r["bias_exp"] for r in mixed) > BIAS_EXP
