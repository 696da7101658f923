"""Deployment to Lava with real Lava runs (Loihi2SimCfg, CPU) on small networks: bit-exact fixed
point against the integer reference, floating point against the SNN, residual paths, pooling
folded for netx, resource limits and clear errors.

Tests marked ``lava`` run Lava itself (the privsnn[lava] extra, Python 3.10 only) and are skipped
with the reason on a core install; the rest (the plan, the integer chip model, the netx file, the
export) need no Lava, and the core's clear "needs the extra" errors are checked on both stacks."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from helpers import save_test_snn
from privatesnn.cli import main
from privatesnn.conversion import ConversionSettings, convert
from privatesnn.errors import ArtifactError, MissingExtraError, UnsupportedLayerError
from privatesnn.exporters.netx import check_sequential, load_with_netx, read_net, write_netx
from privatesnn.hw_targets.loihi import (TARGETS, TargetLimitError, build_plan, check_fits, quantize_plan,
                                         reference_fixed, resource_map)
from privatesnn.lava_extra import lava_available
from privatesnn.graph import Add, AvgPool, Conv, Flatten, Graph, GraphError, Input, Linear, MaxPool, Neuron
from privatesnn.manifest import read_manifest
from privatesnn.snn import SpikingNetwork

T = 6


@pytest.fixture(scope="module")
def digits_graph():
    from privatesnn.models import load_model

    return convert(load_model("digits"), torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0)),
                   ConversionSettings(timesteps=T, reset="zero", fold_pooling=False))


@pytest.fixture(scope="module")
def digits_images():
    from privatesnn.data import load_data

    d = load_data("digits")
    return d.x[:6], d.y[:6]


def _residual_graph(reset="subtract") -> Graph:
    g = torch.Generator().manual_seed(1)
    nodes = [Input("x", [], (3, 8, 8)),
             Conv("c1", ["x"], weight=torch.randn(4, 3, 3, 3, generator=g) * 0.6, bias=torch.randn(4, generator=g) * 0.1,
                  padding=(1, 1)),
             Neuron("n1", ["c1"], threshold=1.0, reset=reset, v_init=0.5),
             Conv("c2", ["n1"], weight=torch.randn(4, 4, 3, 3, generator=g) * 0.4, bias=torch.randn(4, generator=g) * 0.1,
                  padding=(1, 1)),
             Neuron("n2", ["c2"], threshold=0.8, reset=reset, v_init=0.5),
             Conv("c3", ["n2"], weight=torch.randn(4, 4, 3, 3, generator=g) * 0.4, bias=None, padding=(1, 1)),
             Conv("sc", ["n1"], weight=torch.eye(4).view(4, 4, 1, 1) * 0.7, bias=None, trainable=False),
             Add("add", ["c3", "sc"]),
             Neuron("n3", ["add"], threshold=0.9, reset=reset, v_init=0.5, leak=0.9),
             AvgPool("pool", ["n3"], kernel=(2, 2), stride=(2, 2)),
             Flatten("f", ["pool"]),
             Linear("out", ["f"], weight=torch.randn(5, 64, generator=g), bias=torch.randn(5, generator=g) * 0.1)]
    return Graph({n.name: n for n in nodes}, "out", {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "num_classes": 5,
                                                      "timesteps": 8})


@pytest.mark.lava
def test_fixed_pt_is_bit_exact_and_floating_pt_matches_the_snn(digits_graph, digits_images):
    from privatesnn.hw_targets.lava_sim import run_lava

    x, _ = digits_images
    plan = build_plan(digits_graph)
    fixed = quantize_plan(plan)
    ref, counts = reference_fixed(fixed, x, return_spikes=True)
    res = run_lava(plan, fixed, x, "fixed_pt", chunk=3)  # two chunks: state reset and bias reload via Var.set
    assert np.array_equal(res.raw_sums, ref.numpy())
    for name in res.spikes:
        assert np.array_equal(res.spikes[name], counts[name].numpy())
    with torch.no_grad():
        snn = SpikingNetwork(digits_graph).eval()(x, T)
    flt = run_lava(plan, None, x, "floating_pt", chunk=6)
    assert float((flt.logits - snn).abs().max()) < 1e-4
    assert torch.equal(flt.predictions, snn.argmax(1))


@pytest.mark.lava
def test_residual_network_as_lava_processes(tmp_path):
    """Several connections into one port, relays for the shorter path, subtracting reset,
    a leak, average pooling folded into the readout."""
    from privatesnn.hw_targets.lava_sim import run_lava

    g = _residual_graph()
    plan = build_plan(g)
    assert [ly.kind for ly in plan.layers.values()].count("relay") == 1
    assert len(plan.layers["n3"].terms) == 2
    assert plan.output.terms[0].folded == ["f", "pool"]
    fixed = quantize_plan(plan)
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    res = run_lava(plan, fixed, x, "fixed_pt")
    assert np.array_equal(res.raw_sums, reference_fixed(fixed, x).numpy())
    with torch.no_grad():
        snn = SpikingNetwork(g).eval()(x, 8)
    flt = run_lava(plan, None, x, "floating_pt")
    assert float((flt.logits - snn).abs().max()) < 1e-4
    with pytest.raises(UnsupportedLayerError, match="residual"):
        check_sequential(plan)


@pytest.mark.lava
def test_fast_conv_is_bit_identical_to_lavas_conv():
    from lava.proc.conv import utils

    from privatesnn.hw_targets.lava_sim import fast_conv

    rng = np.random.default_rng(0)
    for stride, pad, groups, k in [((1, 1), (1, 1), 1, 3), ((2, 2), (2, 2), 1, 6), ((2, 1), (0, 1), 2, 3)]:
        x = (rng.random((9, 7, 4)) < 0.3).astype(np.int32)
        w = rng.integers(-128, 128, size=(6, k, k, 4 // groups)).astype(np.int32) * 2
        ref = utils.conv(x, w, (k, k), stride, pad, (1, 1), groups).astype(np.int32)
        got = fast_conv(x, w, stride, pad, (1, 1), groups).astype(np.int32)
        assert np.array_equal(ref, got)


def test_pool_folding_is_exact():
    g = _residual_graph()
    plan = build_plan(g)
    term = plan.output.terms[0]
    s = (torch.rand(4, 4, 8, 8) < 0.4).float()
    direct = torch.nn.functional.avg_pool2d(s, 2).flatten(1) @ g["out"].weight.t()
    assert torch.allclose(term.apply(s), direct, atol=1e-6)


def test_fixed_point_report_and_ranges(digits_graph):
    fixed = quantize_plan(build_plan(digits_graph))
    for row in fixed.report():
        for w in row["weights"]:
            assert -128 <= w["mant_min"] <= w["mant_max"] <= 127 and w["weight_exp"] >= 0
            assert w["rel_l2_error"] < 0.02
        if row["kind"] == "neuron":
            assert 0 < row["vth_mant"] < 2 ** 17 and row["du"] == 4095 and 0 <= row["dv"] < 4096
    for q in fixed.layers.values():
        if q.bias_mant is not None:
            assert np.abs(q.bias_mant).max() < 4096


def test_integer_chip_model_needs_no_lava(digits_graph, digits_images, monkeypatch):
    """The bit-exact integer model of Lava's fixed_pt arithmetic runs on a core install and
    predicts what the SNN predicts."""
    _without_lava(monkeypatch)
    x, _ = digits_images
    ref, counts = reference_fixed(quantize_plan(build_plan(digits_graph)), x, return_spikes=True)
    with torch.no_grad():
        snn_pred = SpikingNetwork(digits_graph).eval()(x, T).argmax(1)
    assert ref.dtype == torch.int64 and tuple(ref.shape) == (len(x), 10)
    assert int((ref.argmax(1) == snn_pred).sum()) >= len(x) - 1
    assert all(int(c.sum()) > 0 for c in counts.values())


def test_netx_file_is_written_and_reads_back_without_lava(digits_graph, tmp_path):
    """The netx HDF5 file is written and read with h5py alone (no Lava needed)."""
    path = write_netx(quantize_plan(build_plan(digits_graph)), tmp_path / "d.net")
    with h5py.File(path) as f:
        types = [f["layer"][k]["type"][0].decode() for k in sorted(f["layer"], key=int)]
        assert "pool" not in types and types[0] == "input"
        assert f["layer"]["2"]["weight"].shape[-1] == 6  # 3x3 conv after 2x2 avg pool -> 6x6 stride 2
    back = read_net(path)
    assert [n.name for n in back.neurons()] == [n.name for n in digits_graph.neurons()]


@pytest.mark.lava
def test_netx_file_loads_in_netx(digits_graph, tmp_path):
    plan = build_plan(digits_graph)
    path = write_netx(quantize_plan(plan), tmp_path / "d.net")
    net = load_with_netx(path, reset_interval=plan.period)
    assert [type(b).__name__ for b in net.layers] == ["Input", "Conv", "Conv", "Dense", "Dense"]
    dense = net.layers[3].synapse.weights.init
    assert np.abs(dense).max() <= 254


def test_netx_errors(digits_graph, tmp_path):
    fixed = quantize_plan(build_plan(digits_graph))
    path = write_netx(fixed, tmp_path / "d.net")
    cut = tmp_path / "cut.net"
    cut.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ArtifactError, match="truncated|not a readable"):
        read_net(cut)
    pool = tmp_path / "pool.net"
    pool.write_bytes(path.read_bytes())
    with h5py.File(pool, "a") as f:
        del f["layer"]["2"]["type"]
        f["layer"]["2"].create_dataset("type", (1,), "S10", [b"pool"])
    with pytest.raises(UnsupportedLayerError, match="layer 2.*'pool'"):
        read_net(pool)
    chain = tmp_path / "chain.net"
    chain.write_bytes(path.read_bytes())
    with h5py.File(chain, "a") as f:
        w = f["layer"]["4"]["weight"][()]
        del f["layer"]["4"]["weight"]
        f["layer"]["4"].create_dataset("weight", data=w[:, :100])
    with pytest.raises(GraphError, match="layer 4"):
        read_net(chain)


def test_unsupported_on_lava():
    g = _residual_graph()
    nodes = dict(g.nodes)
    nodes["pool"] = MaxPool("pool", ["n3"], kernel=(2, 2), stride=(2, 2))
    with pytest.raises(UnsupportedLayerError, match="maxpool 'pool'"):
        build_plan(Graph(nodes, "out", g.meta))


def test_signed_neurons_are_refused_by_the_lava_plan_with_the_layer_named():
    g = _residual_graph()
    for n in g.neurons():
        n.signed = True
    first = g.neurons()[0].name
    with pytest.raises(UnsupportedLayerError, match=f"neuron layer {first!r}.*signed"):
        build_plan(g)


def test_resource_limits_name_the_layer():
    gen = torch.Generator().manual_seed(0)
    nodes = [Input("x", [], (4096,)), Linear("l0", ["x"], weight=torch.randn(4096, 4096, generator=gen), bias=None),
             Neuron("n0", ["l0"]), Linear("big", ["n0"], weight=torch.randn(4096, 4096, generator=gen) * 0.01, bias=None),
             Neuron("n1", ["big"]), Linear("out", ["n1"], weight=torch.randn(2, 4096, generator=gen), bias=None)]
    g = Graph({n.name: n for n in nodes}, "out", {"mean": [0.0], "std": [1.0], "num_classes": 2, "timesteps": 4})
    plan = build_plan(g)
    m = resource_map(plan, TARGETS["loihi1"])
    assert not m["fits_one_chip"] and m["chips_needed"] == 2 and m["advice"]
    with pytest.raises(TargetLimitError, match=r"exceeds by 5 cores.*'n1' alone needs 128 cores"):
        check_fits(m)
    check_fits(resource_map(plan, TARGETS["loihi1"], chips=2))


def _export_digits(digits_graph, tmp_path):
    """`privsnn export --target lava` of the digits SNN; checks the files; returns (snn, out, manifest)."""
    snn = save_test_snn(tmp_path / "snn.pt", digits_graph, T)
    out = tmp_path / "lava"
    assert main(["export", "--snn", str(snn), "--target", "lava", "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"model.nir", "network.net", "fixed_point.json", "mapping.json",
                                                "manifest.json"}
    m = read_manifest(out)
    assert m.kind == "lava" and m.real_data_read is False and m.private is True and m.parents[0]["role"] == "snn"
    assert json.loads((out / "mapping.json").read_text())["fits_one_chip"] is True
    return snn, out, m


def _without_lava(monkeypatch) -> None:
    """Make this process look like a core install (no lava-nc / lava-dl distributions)."""
    import privatesnn.lava_extra as lx

    monkeypatch.setattr(lx, "_installed", lambda distribution: False)


def test_export_lava_without_the_extra_writes_every_file(digits_graph, tmp_path, monkeypatch, capsys):
    """Without Lava the export still writes NIR, the netx file, the fixed-point plan and the mapping;
    simulate then stops with one error line naming the extra and Python 3.10 (exit 2)."""
    _without_lava(monkeypatch)
    _, out, m = _export_digits(digits_graph, tmp_path)
    assert m.settings["netx"]["written"] is True and m.settings["netx"]["loaded_with"] is None
    assert "not installed" in m.settings["netx"]["not_loaded"]
    assert "privsnn[lava]" in capsys.readouterr().out
    assert read_net(out / "network.net").neurons()
    assert main(["simulate", "--artifact", str(out), "--data", "digits", "--limit", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: `privsnn simulate`"), err
    assert "privsnn[lava]" in err[0] and "Python 3.10" in err[0]
    with pytest.raises(MissingExtraError, match=r"privsnn\[lava\].*Python 3.10"):
        load_with_netx(out / "network.net")
    # a bad artifact is still diagnosed as such, before the Lava requirement
    assert main(["simulate", "--artifact", str(tmp_path), "--data", "digits"]) == 2
    assert "not a privsnn lava export" in capsys.readouterr().err


@pytest.mark.skipif(lava_available(), reason="Lava is installed: this checks the core install's import error")
def test_lava_sim_import_names_the_extra():
    with pytest.raises(ImportError, match=r"privsnn\[lava\].*Python 3.10"):
        import privatesnn.hw_targets.lava_sim  # noqa: F401


@pytest.mark.lava
def test_cli_export_lava_simulate(digits_graph, tmp_path):
    snn, out, m = _export_digits(digits_graph, tmp_path)
    assert m.settings["netx"]["loaded_with"] == "lava.lib.dl.netx.hdf5.Network"
    js = tmp_path / "sim.json"
    assert main(["simulate", "--artifact", str(out), "--target", "lava", "--data", "digits", "--limit", "4",
                 "--json", str(js)]) == 0
    r = json.loads(js.read_text())
    for k in ("n", "accuracy", "snn_accuracy", "agreement", "seconds_per_image", "tag"):
        assert k in r
    assert r["n"] == 4 and r["tag"] == "fixed_pt" and r["real_data_read"] is True
    assert set(r["spikes_per_layer"]) == {n.name for n in digits_graph.neurons()}
    # errors: a non-lava directory, too small a system, nothing half-written
    assert main(["simulate", "--artifact", str(tmp_path), "--data", "digits", "--limit", "2"]) == 2
    assert main(["export", "--snn", str(snn), "--target", "lava", "--out", str(tmp_path / "l1"), "--hw", "loihi1",
                 "--chips", "0"]) == 2
    assert not (tmp_path / "l1").exists()


@pytest.mark.lava
def test_cli_reset_zero_on_a_subtracting_snn_is_measured(tmp_path):
    g = _residual_graph(reset="subtract")
    snn = save_test_snn(tmp_path / "snn.pt", g, 8)
    out = tmp_path / "lava"
    assert main(["export", "--snn", str(snn), "--target", "lava", "--out", str(out), "--reset", "zero"]) == 0
    assert "network.net" not in {p.name for p in out.iterdir()}  # residual: processes only
    x = (torch.rand(3, 8, 8, 3, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8).numpy()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.array([0, 1, 2]))
    js = tmp_path / "sim.json"
    assert main(["simulate", "--artifact", str(out), "--data", f"npy:{tmp_path / 'x.npy'}:{tmp_path / 'y.npy'}",
                 "--json", str(js)]) == 0
    r = json.loads(js.read_text())
    assert r["reset_mode"] == "zero" and "agreement_with_zero_reset_snn" in r["runs"][0] and "note" in r


def _windowed_residual_graph() -> Graph:
    g = _residual_graph()
    for n in g.neurons():
        n.leak, n.windowed = 1.0, True
    g.validate()
    return g


@pytest.mark.lava
def test_windowed_network_as_lava_processes():
    """Windowed layers (integrate the whole window, then fire) on Lava: no relays, each layer fires T + 1
    steps after the last of its sources; the integer chip model is bit-exact with Lava's fixed_pt run
    (two chunks: state reset and bias reload), floating_pt gives the SNN's logits."""
    from privatesnn.hw_targets.lava_sim import run_lava

    g = _windowed_residual_graph()
    T = 4
    plan = build_plan(g, T)
    assert [ly.kind for ly in plan.layers.values()] == ["neuron"] * 3  # no relays
    assert [ly.lag for ly in plan.layers.values()] == [0, T + 1, 2 * (T + 1)] and plan.output.lag == 3 * (T + 1)
    assert plan.period == T + 3 * (T + 1)
    fixed = quantize_plan(plan)
    x = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    ref, counts = reference_fixed(fixed, x, return_spikes=True)
    res = run_lava(plan, fixed, x, "fixed_pt", chunk=3)
    assert np.array_equal(res.raw_sums, ref.numpy())
    for name in res.spikes:
        assert np.array_equal(res.spikes[name], counts[name].numpy())
    assert all(int(c.sum()) > 0 for c in counts.values())
    with torch.no_grad():
        snn = SpikingNetwork(g).eval()(x, T)
    flt = run_lava(plan, None, x, "floating_pt")
    assert float((flt.logits - snn).abs().max()) < 1e-4


def test_windowed_plans_are_all_or_nothing_and_keep_their_reset():
    g = _windowed_residual_graph()
    g.neurons()[1].windowed = False
    with pytest.raises(UnsupportedLayerError, match="'n2' is not windowed"):
        build_plan(g, 4)
    with pytest.raises(UnsupportedLayerError, match="reset 'match'"):
        build_plan(_windowed_residual_graph(), 4, reset="zero")
    plan = build_plan(_windowed_residual_graph(), 4)
    with pytest.raises(UnsupportedLayerError, match="windowed"):
        check_sequential(plan)


def test_the_chip_model_of_a_windowed_plan_says_which_code_runs():
    from privatesnn.hw_targets.chip_model import ChipModel

    plan = build_plan(_windowed_residual_graph(), 4)
    model = ChipModel(quantize_plan(plan))
    assert "windowed" in model.kernels()["convolutions"] and not hasattr(model, "terms")
