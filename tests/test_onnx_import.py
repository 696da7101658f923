"""ONNX import: registry models round-trip through torch.onnx.export, and bad files fail cleanly."""

from __future__ import annotations

import operator
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

from privatesnn.errors import CheckpointError, PrivsnnError, UnsupportedLayerError  # noqa: E402
from privatesnn.exporters.onnx_export import torch_onnx_export  # noqa: E402
from privatesnn.models import create_model, model_cfg  # noqa: E402
from privatesnn.models.onnx_import import load_onnx_classifier  # noqa: E402


def _randomize_bn(net: nn.Module, gen: torch.Generator) -> None:
    """Non-trivial BN statistics, so a wrong epsilon/mean/var mapping shows up in the outputs."""
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=gen) * 0.1)


def _export(net: nn.Module, shape: tuple[int, ...], path: Path, opset: int = 13, fold: bool = True) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch_onnx_export(net.eval(), (torch.zeros(1, *shape),), path, opset_version=opset,
                          do_constant_folding=fold, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    return path


def _roundtrip(net: nn.Module, shape: tuple[int, ...], tmp_path: Path, opset: int = 13, fold: bool = True):
    torch.manual_seed(0)
    net.eval()
    gm, in_shape, k = load_onnx_classifier(_export(net, shape, tmp_path / "m.onnx", opset, fold))
    x = torch.randn(4, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref, got = net(x), gm(x)
    return gm, in_shape, k, ref, got


@pytest.mark.parametrize("name,opset", [("resnet20", 13), ("vgg11", 17), ("vgg16_nobn", 13),
                                        ("digits_cnn", 17), ("digits_mlp", 13)])
def test_registry_models_roundtrip(name: str, opset: int, tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = create_model(name).eval()
    _randomize_bn(net, torch.Generator().manual_seed(2))
    cfg = model_cfg(name)
    gm, in_shape, k, ref, got = _roundtrip(net, cfg.input_shape, tmp_path, opset)
    assert isinstance(gm, fx.GraphModule)
    assert in_shape == tuple(cfg.input_shape)
    assert k == cfg.num_classes
    assert got.shape == (4, cfg.num_classes)
    assert (got - ref).abs().max().item() < 1e-4
    assert not gm.training
    mods = list(gm.modules())
    if name != "digits_mlp":
        assert any(isinstance(m, nn.Conv2d) for m in mods)
    assert any(isinstance(m, nn.Linear) for m in mods)
    # every weight is reachable through the state dict, and fx can re-trace the module
    if name in ("vgg16_nobn", "digits_mlp"):  # (torch.onnx.export folds BN into the convs)
        assert sum(p.numel() for p in gm.parameters()) == sum(p.numel() for p in net.parameters())
    assert len(gm.state_dict()) > 0
    retraced = fx.symbolic_trace(gm)
    with torch.no_grad():
        assert torch.allclose(retraced(torch.zeros(2, *in_shape)), gm(torch.zeros(2, *in_shape)))


@pytest.mark.parametrize("name", ["resnet20", "digits_cnn"])
def test_unfolded_batchnorm_becomes_batchnorm2d(name: str, tmp_path: Path) -> None:
    """Without constant folding torch keeps BatchNormalization nodes: they map to nn.BatchNorm2d."""
    torch.manual_seed(0)
    net = create_model(name).eval()
    _randomize_bn(net, torch.Generator().manual_seed(3))
    gm, _, _, ref, got = _roundtrip(net, model_cfg(name).input_shape, tmp_path, 13, fold=False)
    bns = [m for m in gm.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert all(not m.training and m.track_running_stats for m in bns)
    assert (got - ref).abs().max().item() < 1e-4
    assert sum(p.numel() for p in gm.parameters()) == sum(p.numel() for p in net.parameters())


def test_resnet_shortcut_becomes_slice_and_pad(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = create_model("resnet20").eval()
    gm, *_ = _roundtrip(net, (3, 32, 32), tmp_path)
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert targets.count(F.pad) == 2
    assert operator.getitem in targets
    assert targets.count(operator.add) == 9
    pads = [n.args[1] for n in gm.graph.nodes if n.target is F.pad]
    assert pads == [(0, 0, 0, 0, 8, 8), (0, 0, 0, 0, 16, 16)]


class _Zoo(nn.Module):
    """Ops and attribute combinations the registry models do not cover."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=True)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2, bias=False)
        self.avg = nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
        self.maxp = nn.MaxPool2d(3, stride=1, padding=1)
        self.w = nn.Parameter(torch.randn(8 * 3 * 5, 5) * 0.1)
        self.b = nn.Parameter(torch.randn(5))
        self.register_buffer("offset", torch.randn(1, 8, 1, 1))

    def forward(self, x):
        x = F.relu(self.conv1(F.pad(x, (0, 1, 0, 1))))  # asymmetric pad before a conv
        x = x + self.conv2(x)  # residual add
        x = self.maxp(x) * 0.5 - self.offset  # scalar mul, buffer sub
        x = self.avg(x)
        x = x[:, :, ::2, 1:]
        x = x.reshape(x.size(0), -1)  # Shape/Gather/Unsqueeze/Concat/Reshape
        return x @ self.w + self.b  # MatMul + Add -> Linear


@pytest.mark.parametrize("opset", [11, 13, 17])
def test_zoo_roundtrip(opset: int, tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = _Zoo().eval()
    gm, in_shape, k, ref, got = _roundtrip(net, (3, 21, 21), tmp_path, opset)
    assert in_shape == (3, 21, 21) and k == 5
    assert (got - ref).abs().max().item() < 1e-5
    mods = [type(m) for m in gm.modules()]
    assert nn.Flatten in mods and nn.Linear in mods and nn.AvgPool2d in mods
    assert sum(isinstance(m, nn.Linear) for m in gm.modules()) == 1  # the Add was folded into it


def _save(tmp_path: Path, nodes, inits, inputs, outputs, opset: int = 13, name: str = "hand.onnx") -> Path:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def _vi(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _init(name: str, arr: np.ndarray) -> onnx.TensorProto:
    return onnx.numpy_helper.from_array(arr.astype(np.float32), name)


@pytest.mark.parametrize("trans_b", [0, 1])
def test_hand_built_conv_gemm(trans_b: int, tmp_path: Path) -> None:
    """Asymmetric Conv pads, attribute-style Pad (opset 10), Gemm with transB/alpha/beta."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 2, 3, 3))
    gw = rng.standard_normal((4 * 4 * 4, 3) if trans_b == 0 else (3, 4 * 4 * 4))
    gc = rng.standard_normal((1, 3))
    nodes = [
        helper.make_node("Pad", ["x"], ["p"], name="pad0", pads=[0, 0, 1, 0, 0, 0, 0, 1], value=0.0),
        helper.make_node("Conv", ["p", "w"], ["c"], name="conv0", pads=[0, 1, 1, 0], strides=[1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu0"),
        helper.make_node("Flatten", ["r"], ["f"], name="flat0", axis=1),
        helper.make_node("Gemm", ["f", "gw", "gc"], ["y"], name="gemm0", transB=trans_b, alpha=0.5, beta=2.0),
    ]
    path = _save(tmp_path, nodes, [_init("w", w), _init("gw", gw), _init("gc", gc)],
                 [_vi("x", ["N", 2, 4, 4])], [_vi("y", ["N", 3])], opset=10)
    gm, in_shape, k = load_onnx_classifier(path)
    assert in_shape == (2, 4, 4) and k == 3
    x = torch.randn(4, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    t = lambda a: torch.from_numpy(a.astype(np.float32))  # noqa: E731
    ref = F.pad(x, (0, 1, 1, 0))  # Pad: H begin 1, W end 1
    ref = F.relu(F.conv2d(F.pad(ref, (1, 0, 0, 1)), t(w)))  # Conv pads [top, left, bottom, right]
    g = t(gw).T if trans_b else t(gw)
    ref = 0.5 * ref.flatten(1) @ g + 2.0 * t(gc)
    with torch.no_grad():
        assert (gm(x) - ref).abs().max().item() < 1e-4


# ------------------------------------------------------------------------------------------ errors

def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found.*nope.onnx"):
        load_onnx_classifier(tmp_path / "nope.onnx")


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.onnx"
    p.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_onnx_classifier(p)


def test_truncated_file(tmp_path: Path) -> None:
    torch.manual_seed(0)
    full = _export(create_model("digits_cnn"), (1, 8, 8), tmp_path / "full.onnx").read_bytes()
    p = tmp_path / "half.onnx"
    p.write_bytes(full[: len(full) // 2])
    with pytest.raises(CheckpointError) as e:
        load_onnx_classifier(p)
    assert "half.onnx" in str(e.value) and "ONNX model" in str(e.value)


def test_text_file(tmp_path: Path) -> None:
    p = tmp_path / "notes.onnx"
    p.write_text("this is not an onnx model\n" * 20)
    with pytest.raises(CheckpointError) as e:
        load_onnx_classifier(p)
    assert "notes.onnx" in str(e.value) and "expected an ONNX model" in str(e.value)


@pytest.mark.parametrize("op", ["Softsign", "LSTM"])
def test_unsupported_op(op: str, tmp_path: Path) -> None:
    if op == "Softsign":
        nodes = [helper.make_node("Softsign", ["x"], ["s"], name="weird_act"),
                 helper.make_node("Flatten", ["s"], ["y"], name="flat")]
        inits = []
    else:
        nodes = [helper.make_node("LSTM", ["x", "W", "R"], ["y"], name="weird_act", hidden_size=2)]
        inits = [_init("W", np.zeros((1, 8, 4))), _init("R", np.zeros((1, 8, 2)))]
    path = _save(tmp_path, nodes, inits, [_vi("x", ["N", 1, 2, 2])], [_vi("y", ["N", 4])])
    with pytest.raises(UnsupportedLayerError) as e:
        load_onnx_classifier(path)
    msg = str(e.value)
    assert op in msg and "weird_act" in msg and "Conv" in msg and "Supported ops" in msg


def test_bad_graph_signatures(tmp_path: Path) -> None:
    relu = [helper.make_node("Relu", ["x"], ["y"], name="r")]
    two_in = _save(tmp_path, [helper.make_node("Add", ["x", "z"], ["y"], name="a")], [],
                   [_vi("x", ["N", 1, 2, 2]), _vi("z", ["N", 1, 2, 2])], [_vi("y", ["N", 1, 2, 2])], name="a.onnx")
    with pytest.raises(PrivsnnError, match="2 inputs"):
        load_onnx_classifier(two_in)
    two_out = _save(tmp_path, relu + [helper.make_node("Relu", ["y"], ["z"], name="r2")], [],
                    [_vi("x", ["N", 1, 2, 2])], [_vi("y", ["N", 1, 2, 2]), _vi("z", ["N", 1, 2, 2])], name="b.onnx")
    with pytest.raises(PrivsnnError, match="2 outputs"):
        load_onnx_classifier(two_out)
    flat_in = _save(tmp_path, relu, [], [_vi("x", ["N", 4])], [_vi("y", ["N", 4])], name="c.onnx")
    with pytest.raises(PrivsnnError, match="4-D NCHW"):
        load_onnx_classifier(flat_in)
    not_logits = _save(tmp_path, relu, [], [_vi("x", ["N", 1, 2, 2])], [_vi("y", ["N", 1, 2, 2])], name="d.onnx")
    with pytest.raises(PrivsnnError, match=r"expected \(N, K\)"):
        load_onnx_classifier(not_logits)
