"""Energy models (validation, hand-computed conventions) and `privsnn energy` end to end."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from privatesnn.hw_targets.energy_models import (CONVENTIONS, DEFAULT_PATH, EnergyModelError, compute_conventions,
                                      format_energy, load_energy_model, pj_to_joules, validate_energy_model)
from helpers import load_bench, save_test_snn
from privatesnn.cli import main
from privatesnn.graph import Flatten, Graph, Input, Linear, Neuron
from privatesnn.ops_count import count_ann, count_snn


def _hand_graph() -> Graph:
    nodes = [
        Input("x", [], shape=(1, 1, 3)),
        Flatten("f", ["x"]),
        Linear("l1", ["f"], weight=torch.diag(torch.tensor([2.0, 1.0, 1.0])), bias=None),
        Neuron("n1", ["l1"], threshold=1.0, v_init=0.0),
        Linear("out", ["n1"], weight=torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 2.0]]), bias=None),
    ]
    return Graph(nodes={n.name: n for n in nodes}, output="out", meta={"mean": [0.0], "std": [1.0], "num_classes": 2})


def test_default_table_has_a_citation_per_constant():
    m = load_energy_model()
    assert m["cmos45.fp32_mac_pj"] == 4.6 and m["cmos45.fp32_ac_pj"] == 0.9 and m["loihi.synop_pj"] == 23.6
    assert m["loihi.neuron_update_active_pj"] == 81 and m["loihi.neuron_update_inactive_pj"] == 52
    assert all(len(c) > 10 for c in m.citations.values())
    assert "Horowitz" in m.citations["cmos45.fp32_mac_pj"] and "Davies" in m.citations["loihi.synop_pj"]


def test_units():
    assert format_energy(1234.5) == "1.23 nJ" and format_energy(4.6) == "4.6 pJ"
    assert format_energy(2.5e6) == "2.5 uJ" and format_energy(None) == "n/a"
    assert pj_to_joules(4.6e12) == pytest.approx(4.6)


def test_conventions_by_hand():
    """The hand network of test_ops_count (T=6): 12 MACs, 10 ACs, 18 updates (12 active), 8 spikes;
    ANN: 15 dense MACs, 3 ReLUs."""
    g, x = _hand_graph(), torch.tensor([1.0, 0.0, 0.5]).view(1, 1, 1, 3)
    snn = count_snn(g, x, 6)[6].to_dict()
    ann = count_ann(g, x).to_dict()
    c = compute_conventions(snn, ann, load_energy_model())
    assert set(c) == set(CONVENTIONS)
    pt = c["per_timestep"]
    assert pt["snn_pj"] == pytest.approx((12 * 4.6 + 10 * 0.9) / 6)
    assert pt["ann_pj"] == pytest.approx(15 * 4.6)
    assert pt["ratio"] == pytest.approx(69 / 10.7)
    at = c["all_timesteps"]
    assert at["snn_pj"] == pytest.approx(12 * 4.6 + 10 * 0.9 + 18 * 0.9 + 8 * 0.9)
    assert at["ann_pj"] == pytest.approx(15 * 4.6 + 3 * 0.9)
    assert at["ratio_synaptic_only"] == pytest.approx(69 / (12 * 4.6 + 10 * 0.9))
    # the constant image current once: l1's 12 MACs (6 steps x 2 nonzero inputs) become 2
    assert at["snn_pj_input_once"] == pytest.approx(2 * 4.6 + 10 * 0.9 + 18 * 0.9 + 8 * 0.9)
    assert at["ratio_input_once"] == pytest.approx(at["ann_pj"] / at["snn_pj_input_once"])
    lo = c["loihi"]
    assert lo["snn_pj"] == pytest.approx(22 * 23.6 + 12 * 81 + 6 * 52 + 12 * 81 + 8 * (1.7 + 3.5))
    assert lo["ratio"] is None and lo["ann_pj"] is None and "not defined" in lo["ratio_note"]
    ma = c["memory_aware"]
    e = 10 / 64
    snn_exp = (12 * (0.2 + 0.1 + 8 * e) + 3 * 6 * 8 * e  # l1: MACs + weight reads + analog input reads
               + 10 * (0.1 + 8 * e) + 3 * 6 * 1 * e  # out: ACs + weight reads + spike-map reads
               + 18 * (0.1 + 2 * 16 * e + e) + 8 * 0.1  # n1: compare, membrane r/w, spike write; resets
               + 12 * 2 * 16 * e)  # readout membrane r/w
    ann_exp = (2 * (0.3 + 8 * e) + 3 * 8 * e + 3 * (0.3 + 8 * e) + 3 * 8 * e + 3 * (0.1 + 8 * e) + 2 * 8 * e)
    assert ma["snn_pj"] == pytest.approx(snn_exp) and ma["ann_pj"] == pytest.approx(ann_exp)
    for name in CONVENTIONS:  # per-layer energies add up to the total
        assert sum(c[name]["snn_per_layer_pj"].values()) == pytest.approx(c[name]["snn_pj"])
        if c[name]["ann_per_layer_pj"] is not None:
            assert sum(c[name]["ann_per_layer_pj"].values()) == pytest.approx(c[name]["ann_pj"])


def _table():
    return json.loads(DEFAULT_PATH.read_text())


@pytest.mark.parametrize("mutate, field", [
    (lambda t: t["loihi"].pop("synop_pj"), "loihi.synop_pj"),
    (lambda t: t["cmos45"]["fp32_mac_pj"].pop("citation"), "cmos45.fp32_mac_pj.citation"),
    (lambda t: t["cmos45"]["fp32_ac_pj"].update(value="0.9"), "cmos45.fp32_ac_pj.value"),
    (lambda t: t["memory_aware"]["weight_bits"].update(value=0), "memory_aware.weight_bits.value"),
    (lambda t: t.pop("memory_aware"), "memory_aware"),
])
def test_validation_names_the_field(mutate, field):
    t = copy.deepcopy(_table())
    mutate(t)
    with pytest.raises(EnergyModelError, match=field.replace(".", r"\.")):
        validate_energy_model(t, "user.json")


@pytest.fixture(scope="module")
def digits_snn(tmp_path_factory):
    from privatesnn.conversion import ConversionSettings, convert
    from privatesnn.models.loading import load_model

    torch.set_num_threads(1)
    images = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    graph = convert(load_model("digits"), images, ConversionSettings(timesteps=8))
    path = tmp_path_factory.mktemp("snn") / "snn.pt"
    save_test_snn(path, graph, 8)
    return path


def test_energy_command_on_digits(digits_snn, tmp_path, capsys):
    out = tmp_path / "energy"
    rc = main(["energy", "--snn", str(digits_snn), "--data", "digits", "--limit", "40", "--timesteps", "8",
               "--model", "digits", "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "energy.json").read_text())
    for key in ("accuracy", "ann", "layers", "neurons", "totals", "conventions", "energy_model"):
        assert key in res
    assert 0 <= res["accuracy"] <= 1 and res["timesteps"] == 8 and res["samples"] == 40
    assert res["ann"]["dense_macs"] > 0 and res["ann"]["energy_pj"]["all_timesteps"] > 0
    assert set(res["conventions"]) == {"per_timestep", "all_timesteps", "memory_aware", "loihi"}
    for name, c in res["conventions"].items():
        assert c["snn_pj"] > 0 and "ratio" in c
        if name != "loihi":
            assert c["ratio"] == pytest.approx(c["ann_pj"] / c["snn_pj"])
    assert res["conventions"]["loihi"]["ratio"] is None
    first = res["layers"][0]
    assert first["input"] == "analog" and first["constant_input"] and first["eff_macs"] > 0
    md = (out / "energy.md").read_text()
    assert "per timestep" in md.lower() and "All timesteps" in md and "Loihi" in md and "Memory-aware" in md
    for png in ("spike_rate.png", "energy_per_layer.png", "ann_vs_snn.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert "ANN/SNN" in capsys.readouterr().out


def test_energy_command_on_synthetic_images(digits_snn, tmp_path):
    from privatesnn.synthesis.store import save_synthetic

    npz = tmp_path / "synth.npz"
    save_synthetic(npz, torch.rand(12, 1, 8, 8, generator=torch.Generator().manual_seed(5)),
                   torch.zeros(12, dtype=torch.long), {"input_shape": [1, 8, 8]})
    out = tmp_path / "e"
    assert main(["energy", "--snn", str(digits_snn), "--synthetic", str(npz), "--out", str(out)]) == 0
    res = json.loads((out / "energy.json").read_text())
    assert res["accuracy"] is None and res["samples"] == 12 and res["timesteps"] == 8
    assert res["conventions"]["all_timesteps"]["ratio"] > 0


def test_user_energy_model_with_missing_field_exits_2(digits_snn, tmp_path, capsys):
    t = _table()
    del t["loihi"]["neuron_update_active_pj"]
    bad = tmp_path / "mine.json"
    bad.write_text(json.dumps(t))
    rc = main(["energy", "--snn", str(digits_snn), "--data", "digits", "--limit", "5", "--energy-model", str(bad),
               "--out", str(tmp_path / "x")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "loihi.neuron_update_active_pj" in err and "mine.json" in err and "Traceback" not in err
    assert not (tmp_path / "x" / "energy.json").exists()


def test_user_energy_model_changes_the_energy(digits_snn, tmp_path):
    t = _table()
    t["cmos45"]["fp32_ac_pj"]["value"] = 0.45
    mine = tmp_path / "half_ac.json"
    mine.write_text(json.dumps(t))
    runs = {}
    for name, extra in (("default", []), ("mine", ["--energy-model", str(mine)])):
        out = tmp_path / name
        assert main(["energy", "--snn", str(digits_snn), "--data", "digits", "--limit", "10", "--out", str(out),
                     *extra]) == 0
        runs[name] = json.loads((out / "energy.json").read_text())["conventions"]["per_timestep"]
    assert runs["mine"]["snn_pj"] < runs["default"]["snn_pj"]
    assert runs["mine"]["ann_pj"] == pytest.approx(runs["default"]["ann_pj"])


def test_energy_bench_entries_keep_the_ratios_it_reports():
    """bench/energy.py's per-T entry keeps every ratio its within-ANN summary reads (a missing key
    would only surface after minutes of counting)."""
    from privatesnn.energy_report import make_result

    bench = load_bench("energy")
    g, x = _hand_graph(), torch.tensor([1.0, 0.0, 0.5]).view(1, 1, 1, 3)
    counts = count_snn(g, x, [2, 6])
    entries = []
    for t, acc in ((2, 0.5), (6, 0.9)):
        res = make_result(counts[t], count_ann(g, x), load_energy_model(), {"snn": "hand"}, graph=g)
        res["accuracy"] = acc
        entries.append(bench.compact(res))
    hit = bench.within_ann(entries, 0.905)["1_point"]
    assert hit["timesteps"] == 6 and hit["accuracy"] == 0.9
    at = entries[1]["conventions"]["all_timesteps"]
    assert hit["all_timesteps_ratio"] == at["ratio"] and hit["all_timesteps_input_once_ratio"] == at["ratio_input_once"]
    assert at["ratio_input_once"] > at["ratio"]  # the image layer's 6 passes become one
    assert bench.within_ann(entries, 0.99)["2_point"] is None
