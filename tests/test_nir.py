"""SNN <-> NIR: built with nir constructors, type-checked read back, exact round trip, Norse
re-import where Norse can represent the graph, residual adds as several edges, clear errors."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

from privatesnn.exporters.nir_export import graph_to_nir, norse_check, write_nir
from privatesnn.exporters.nir_import import read_nir_graph
from helpers import save_test_snn
from privatesnn.cli import main
from privatesnn.conversion import ConversionSettings, convert
from privatesnn.errors import ArtifactError, UnsupportedLayerError
from privatesnn.graph import Add, Conv, Flatten, Graph, GraphError, Input, Linear, Neuron
from privatesnn.manifest import read_manifest
from privatesnn.snn import SpikingNetwork


@pytest.fixture(scope="module")
def digits_graph():
    from privatesnn.models import load_model

    g = convert(load_model("digits"), torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0)),
                ConversionSettings(timesteps=8, reset="zero", leak=0.9))
    return g


def _small(v_init=0.0, reset="zero", residual=False) -> Graph:
    g = torch.Generator().manual_seed(0)
    nodes = [Input("x", [], (1, 6, 6)),
             Conv("c1", ["x"], weight=torch.randn(4, 1, 3, 3, generator=g), bias=torch.randn(4, generator=g) * 0.1,
                  padding=(1, 1)),
             Neuron("n1", ["c1"], threshold=0.7, reset=reset, v_init=v_init)]
    last = "n1"
    if residual:
        nodes += [Conv("c2", ["n1"], weight=torch.randn(4, 4, 3, 3, generator=g) * 0.3, bias=torch.zeros(4), padding=(1, 1)),
                  Conv("sc", ["n1"], weight=torch.eye(4).view(4, 4, 1, 1), bias=None, trainable=False),
                  Add("add", ["c2", "sc"]), Neuron("n1b", ["add"], threshold=0.9, reset=reset, v_init=v_init)]
        last = "n1b"
    nodes += [Flatten("f", [last]), Linear("l1", ["f"], weight=torch.randn(8, 144, generator=g) * 0.3, bias=torch.zeros(8)),
              Neuron("n2", ["l1"], threshold=1.2, reset=reset, v_init=v_init),
              Linear("out", ["n2"], weight=torch.randn(3, 8, generator=g), bias=torch.randn(3, generator=g))]
    return Graph({n.name: n for n in nodes}, "out", {"mean": [0.5], "std": [0.5], "num_classes": 3, "timesteps": 10})


def _outputs(graph, x, T):
    with torch.no_grad():
        return SpikingNetwork(graph).eval()(x, T)


def test_round_trip_exact_digits(digits_graph, tmp_path):
    path = write_nir(digits_graph, tmp_path / "d.nir")
    ng = nir.read(path)  # type checking on by default
    assert {type(n).__name__ for n in ng.nodes.values()} >= {"Input", "Conv2d", "LIF", "Affine", "Output"}
    back = read_nir_graph(path)
    x = torch.rand(16, 1, 8, 8)
    diff = float((_outputs(digits_graph, x, 8) - _outputs(back, x, 8)).abs().max())
    assert diff < 1e-5
    assert back.meta["mean"] == digits_graph.meta["mean"] and back.meta["timesteps"] == 8
    assert [n.leak for n in back.neurons()] == [0.9] * len(back.neurons())


def test_residual_add_is_several_edges_and_round_trips(tmp_path):
    g = _small(v_init=0.5, reset="subtract", residual=True)
    ng = graph_to_nir(g)
    into = sorted(a for a, b in ng.edges if b == "n1b")
    assert into == ["c2", "sc"]
    path = write_nir(g, tmp_path / "r.nir")
    back = read_nir_graph(path)
    assert any(isinstance(n, Add) for n in back)
    assert {n.reset for n in back.neurons()} == {"subtract"}
    x = torch.rand(5, 1, 6, 6)
    assert float((_outputs(g, x, 10) - _outputs(back, x, 10)).abs().max()) < 1e-5


def test_norse_reimport_matches(tmp_path):
    g = _small()
    path = write_nir(g, tmp_path / "s.nir")
    res = norse_check(g, path, 10)
    assert res["ran"] and res["max_abs_diff"] < 1e-5


def test_norse_check_says_why_it_skips(digits_graph, tmp_path):
    path = write_nir(digits_graph, tmp_path / "d.nir")
    res = norse_check(digits_graph, path, 8)
    assert not res["ran"] and "LIF" in res["reason"]


def test_foreign_graph_with_sumpool_and_cubalif_imports():
    w = np.random.default_rng(0).normal(size=(2, 1, 3, 3)).astype(np.float32)
    dt = 1e-3
    nodes = {"in": nir.Input(input_type=np.array([1, 4, 4])),
             "conv": nir.Conv2d(input_shape=(4, 4), weight=w, stride=1, padding=1, dilation=1, groups=1,
                                bias=np.zeros(2, np.float32)),
             "lif": nir.CubaLIF(tau_syn=np.full((2, 4, 4), dt), tau_mem=np.full((2, 4, 4), 0.01), r=np.full((2, 4, 4), 10.0),
                                v_leak=np.zeros((2, 4, 4)), v_threshold=np.ones((2, 4, 4))),
             "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
             "flat": nir.Flatten(input_type={"input": np.array([2, 2, 2])}, start_dim=0),
             "fc": nir.Affine(weight=np.ones((3, 8), np.float32), bias=np.zeros(3, np.float32)),
             "out": nir.Output(output_type=np.array([3]))}
    edges = [("in", "conv"), ("conv", "lif"), ("lif", "pool"), ("pool", "flat"), ("flat", "fc"), ("fc", "out")]
    g = __import__("privatesnn.exporters.nir_import", fromlist=["nir_to_graph"]).nir_to_graph(nir.NIRGraph(nodes, edges), dt=dt)
    neuron = g.neurons()[0]
    assert abs(neuron.leak - 0.9) < 1e-9 and abs(neuron.threshold - 1.0) < 1e-9  # gain dt/tau*r = 1
    assert torch.allclose(g["fc"].weight, torch.full((3, 8), 4.0))  # SumPool's k*k folded into the dense layer


def test_truncated_nir_is_a_clear_error(digits_graph, tmp_path):
    path = write_nir(digits_graph, tmp_path / "d.nir")
    data = path.read_bytes()
    bad = tmp_path / "cut.nir"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(ArtifactError, match="truncated|not a readable"):
        read_nir_graph(bad)


def test_unsupported_node_is_named(tmp_path):
    nodes = {"in": nir.Input(input_type=np.array([4])), "li": nir.LI(tau=np.ones(4), r=np.ones(4), v_leak=np.zeros(4)),
             "out": nir.Output(output_type=np.array([4]))}
    path = tmp_path / "li.nir"
    nir.write(path, nir.NIRGraph(nodes, [("in", "li"), ("li", "out")]))
    with pytest.raises(UnsupportedLayerError, match=r"'li'.*LI"):
        read_nir_graph(path)


def test_shapes_that_do_not_chain(tmp_path):
    nodes = {"in": nir.Input(input_type=np.array([4])),
             "fc": nir.Affine(weight=np.ones((3, 5), np.float32), bias=np.zeros(3, np.float32)),
             "out": nir.Output(output_type=np.array([3]))}
    path = tmp_path / "bad.nir"
    nir.write(path, nir.NIRGraph(nodes, [("in", "fc"), ("fc", "out")], type_check=False))
    with pytest.raises(GraphError, match="do not chain"):
        read_nir_graph(path)


def test_cli_export_nir_manifest_and_errors(digits_graph, tmp_path):
    snn = save_test_snn(tmp_path / "snn.pt", digits_graph, 8)
    out = tmp_path / "m.nir"
    assert main(["export", "--snn", str(snn), "--target", "nir", "--out", str(out)]) == 0
    m = read_manifest(out)
    assert m.kind == "nir" and m.command == "export" and m.real_data_read is False and m.private is True
    assert m.parents[0]["role"] == "snn" and m.sha256
    assert main(["export", "--snn", str(snn), "--target", "nir", "--out", str(out)]) == 2  # exists, no --force
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    assert main(["export", "--snn", str(bad), "--target", "nir", "--out", str(tmp_path / "x.nir")]) == 2
    assert not (tmp_path / "x.nir").exists()


def test_write_nir_leaves_nothing_on_failure(tmp_path, monkeypatch):
    g = _small()
    import privatesnn.exporters.nir_export as ne

    monkeypatch.setattr(ne, "graphs_max_param_diff", lambda a, b: 1.0)
    with pytest.raises(ArtifactError):
        ne.write_nir(g, tmp_path / "x.nir")
    assert list(tmp_path.iterdir()) == []


def test_signed_neurons_round_trip_through_their_metadata(tmp_path):
    """NIR 1.0 has no signed neuron: an IF node with metadata signed=true, read back as signed (and
    the round trip gives the same outputs, -1 spikes included); Norse's check says why it skips."""
    g = _small(v_init=0.5, reset="subtract", residual=True)
    for n in g.neurons():
        n.signed = True
    path = write_nir(g, tmp_path / "s.nir")
    assert all(bool(node.metadata.get("signed")) for node in nir.read(path).nodes.values()
               if type(node).__name__ == "IF")
    back = read_nir_graph(path)
    assert all(n.signed for n in back.neurons())
    x = torch.rand(5, 1, 6, 6)
    assert float((_outputs(g, x, 10) - _outputs(back, x, 10)).abs().max()) < 1e-5
    unsigned = read_nir_graph(write_nir(_small(v_init=0.5, reset="subtract", residual=True), tmp_path / "u.nir"))
    assert float((_outputs(g, x, 10) - _outputs(unsigned, x, 10)).abs().max()) > 1e-3  # the sign matters here
    res = norse_check(g, path, 4)
    assert not res["ran"] and "signed neuron" in res["reason"]


def test_windowed_neurons_round_trip_through_their_metadata(tmp_path):
    """Nor a windowed one (integrates its whole window, then fires): an IF node with metadata
    windowed=true, read back as windowed with the same outputs; Norse's check says why it skips."""
    g = _small(v_init=0.5, reset="subtract", residual=True)
    for n in g.neurons():
        n.windowed = True
    path = write_nir(g, tmp_path / "w.nir")
    assert all(bool(node.metadata.get("windowed")) for node in nir.read(path).nodes.values()
               if type(node).__name__ == "IF")
    back = read_nir_graph(path)
    assert all(n.windowed for n in back.neurons())
    x = torch.rand(5, 1, 6, 6)
    assert float((_outputs(g, x, 10) - _outputs(back, x, 10)).abs().max()) < 1e-5
    plain = read_nir_graph(write_nir(_small(v_init=0.5, reset="subtract", residual=True), tmp_path / "p.nir"))
    assert float((_outputs(g, x, 10) - _outputs(plain, x, 10)).abs().max()) > 1e-3
    res = norse_check(g, path, 4)
    assert not res["ran"] and "windowed neuron" in res["reason"]
