"""SNN -> ONNX (one step, explicit state): onnx.checker, ReferenceEvaluator against the torch SNN,
the CLI's manifest and atomic failure."""

from __future__ import annotations

import onnx
import pytest
import torch

from privatesnn.exporters.onnx_export import export_onnx, run_onnx_steps, state_names
from helpers import save_test_snn
from privatesnn.cli import main
from privatesnn.conversion import ConversionSettings, convert
from privatesnn.errors import ArtifactError, UnsupportedLayerError
from privatesnn.graph import Conv, Flatten, Graph, Input, Linear, MaxPool, Neuron
from privatesnn.manifest import read_manifest
from privatesnn.snn import SpikingNetwork


@pytest.fixture(scope="module")
def digits_model_graph():
    from privatesnn.models import load_model

    return convert(load_model("digits"), torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0)),
                   ConversionSettings(timesteps=6, reset="subtract", leak=0.95))


def test_export_checks_and_matches_torch(digits_model_graph, tmp_path):
    res = export_onnx(digits_model_graph, tmp_path / "d.onnx", 6)
    assert res["max_abs_diff"] < 1e-4 and res["predictions_agree"]
    model = onnx.load(str(tmp_path / "d.onnx"))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["x"] + state_names(digits_model_graph)
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        ref = SpikingNetwork(digits_model_graph).eval()(x, 6).numpy()
    got = run_onnx_steps(tmp_path / "d.onnx", digits_model_graph, x, 6)
    assert abs(got - ref).max() < 1e-4


def test_spiking_maxpool_state_is_exported(tmp_path):
    g = torch.Generator().manual_seed(0)
    nodes = [Input("x", [], (1, 6, 6)), Conv("c", ["x"], weight=torch.randn(3, 1, 3, 3, generator=g), bias=None, padding=(1, 1)),
             Neuron("n", ["c"], threshold=0.5, v_init=0.5), MaxPool("mp", ["n"], kernel=(2, 2), stride=(2, 2)),
             Flatten("f", ["mp"]), Linear("out", ["f"], weight=torch.randn(4, 27, generator=g), bias=torch.zeros(4))]
    graph = Graph({n.name: n for n in nodes}, "out", {"mean": [0.5], "std": [0.5], "num_classes": 4})
    res = export_onnx(graph, tmp_path / "m.onnx", 5)
    assert res["max_abs_diff"] < 1e-4 and "count_mp" in res["inputs"]


def test_cli_export_onnx(digits_model_graph, tmp_path):
    snn = save_test_snn(tmp_path / "snn.pt", digits_model_graph, 6)
    out = tmp_path / "m.onnx"
    assert main(["export", "--snn", str(snn), "--target", "onnx", "--out", str(out)]) == 0
    m = read_manifest(out)
    assert m.kind == "onnx" and m.real_data_read is False and m.settings["max_abs_diff"] < 1e-4


def test_failed_check_writes_nothing(digits_model_graph, tmp_path, monkeypatch):
    import privatesnn.exporters.onnx_export as oe

    monkeypatch.setattr(oe, "verify_onnx", lambda *a, **k: {"max_abs_diff": 1.0})
    with pytest.raises(ArtifactError):
        oe.export_onnx(digits_model_graph, tmp_path / "x.onnx", 6)
    assert list(tmp_path.iterdir()) == []


def test_signed_neurons_carry_their_net_count_as_state(tmp_path):
    from privatesnn.models import load_model

    graph = convert(load_model("digits"), torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0)),
                    ConversionSettings(timesteps=6, signed=True))
    names = state_names(graph)
    assert sum(n.startswith("net_") for n in names) == len(graph.neurons())
    res = export_onnx(graph, tmp_path / "s.onnx", 6)
    assert res["max_abs_diff"] < 1e-4 and res["predictions_agree"]


def test_windowed_neurons_are_refused_with_the_layer_named(tmp_path):
    """A windowed layer fires only after its whole window: not one step of the network (exit 2 in the
    CLI), and nothing is written."""
    from privatesnn.models import load_model

    graph = convert(load_model("digits"), torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0)),
                    ConversionSettings(timesteps=6, windowed=True))
    first = graph.neurons()[0].name
    with pytest.raises(UnsupportedLayerError, match=f"neuron layer {first!r}.*windowed"):
        export_onnx(graph, tmp_path / "w.onnx", 6)
    assert list(tmp_path.iterdir()) == []
