"""`privsnn report`, the on-chip latency estimate, portable paths and the Python API."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from privatesnn.cli import main
from privatesnn.errors import PrivsnnError
from privatesnn.graph import Conv, Flatten, Graph, Input, Linear, Neuron
from privatesnn.hw_targets.energy_models import load_energy_model
from privatesnn.hw_targets.latency import barrier_ns, estimate_latency
from privatesnn.hw_targets.mapping import resource_map
from privatesnn.hw_targets.plan import build_plan
from privatesnn.hw_targets.targets import get_target
from privatesnn.html_report import SECTIONS, collect, render

ROOT = Path(__file__).resolve().parents[1]


def _tiny_graph() -> Graph:
    gen = torch.Generator().manual_seed(0)
    nodes = [Input("x", [], shape=(1, 6, 6)),
             Conv("c1", ["x"], weight=torch.randn(4, 1, 3, 3, generator=gen) * 0.6, bias=torch.zeros(4), padding=(1, 1)),
             Neuron("n1", ["c1"]),
             Conv("c2", ["n1"], weight=torch.randn(6, 4, 3, 3, generator=gen) * 0.4, bias=torch.zeros(6)),
             Neuron("n2", ["c2"]),
             Flatten("f", ["n2"]),
             Linear("fc", ["f"], weight=torch.randn(3, 6 * 4 * 4, generator=gen) * 0.2, bias=torch.zeros(3))]
    return Graph({n.name: n for n in nodes}, output="fc", meta={"mean": [0.0], "std": [1.0], "num_classes": 3,
                                                                "timesteps": 4})


# --- latency ----------------------------------------------------------------------------------

def test_barrier_interpolates_between_the_published_figures():
    m = load_energy_model()
    assert barrier_ns(1, m) == pytest.approx(113.0)
    assert barrier_ns(4, m) == pytest.approx(113.0)  # one tile of 4 cores
    assert barrier_ns(128, m) == pytest.approx(465.0)  # 32 tiles
    assert barrier_ns(1000, m) == pytest.approx(465.0)
    assert 113 < barrier_ns(64, m) < 465


def test_latency_is_the_busiest_core_plus_the_barrier_times_the_steps():
    m = load_energy_model()
    plan = build_plan(_tiny_graph(), 4)
    mapping = resource_map(plan, get_target("loihi1"), 1)
    neurons = [{"name": "n1", "spikes": 40.0, "updates": 4 * 144.0, "active_updates": 100.0},
               {"name": "n2", "spikes": 12.0, "updates": 4 * 96.0, "active_updates": 30.0}]
    lat = estimate_latency(plan, mapping, neurons, m)
    # by hand: layer n2 receives n1's spikes (40 / 4 per step) through its synapses, one core
    term = plan.layers["n2"].terms[0]
    fanout = term.synapse_count() / plan.layers["n1"].size
    n2_ns = 10.0 * fanout * 3.5 + 96 * (30 / 384 * 8.4 + (1 - 30 / 384) * 5.3)
    row = {r["layer"]: r for r in lat["layers"]}
    assert row["n2"]["core_ns_per_step"] == pytest.approx(n2_ns)
    step = max(r["core_ns_per_step"] for r in lat["layers"]) + barrier_ns(lat["cores"], m)
    assert lat["timestep_us"] == pytest.approx(step / 1e3)
    assert lat["steps_per_image"] == plan.period
    assert lat["latency_ms_per_image"] == pytest.approx(plan.period * step * 1e-6)
    assert lat["throughput_images_per_s"] == pytest.approx(1e3 / lat["latency_ms_per_image"])
    busier = estimate_latency(plan, mapping, [{**n, "spikes": 10 * n["spikes"]} for n in neurons], m)
    assert busier["latency_ms_per_image"] > lat["latency_ms_per_image"]  # more spikes, more synaptic work


def test_energy_json_reports_latency(tmp_path):
    from privatesnn.hw_targets.latency import latency_for_graph

    lat = latency_for_graph(_tiny_graph(), 4, [], load_energy_model())
    assert lat["available"] and lat["latency_ms_per_image"] > 0
    g = _tiny_graph()
    g.input.encoding = "rate"
    no = latency_for_graph(g, 4, [], load_energy_model())
    assert no["available"] is False and "rate-coded" in no["reason"]


# --- the report -------------------------------------------------------------------------------

def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def test_report_collects_by_content_and_says_what_is_missing(tmp_path):
    run = tmp_path / "run"
    _write(run / "ann.json", {"data": "digits", "n": 10, "model": "digits", "accuracy": 0.9, "ann_accuracy": 0.9})
    ev = {"data": "digits", "n": 10, "ann_accuracy": 0.9, "snn": "private.pt",
          "results": [{"timesteps": 2, "accuracy": 0.5}, {"timesteps": 4, "accuracy": 0.8}]}
    _write(run / "eval_encrypted.json", ev)
    _write(run / "zz" / "again.json", ev)  # the same file twice: kept once
    _write(run / "other.json", {"something": "else"})  # not ours: ignored
    (run / "broken.json").write_text("{not json")  # unreadable: ignored
    data = collect([run])
    assert len(data.accuracy) == 1 and len(data.ann) == 1 and not data.energy
    page = render(data)
    for s in SECTIONS:
        assert f'<section id="{s}">' in page
    assert "No energy report" in page and "privsnn energy" in page  # says how to make what is missing
    assert "encrypted" in page and "80.00%" in page and "T=4" in page
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=[\"']?https?:", page)  # nothing to fetch


def test_report_command_and_bad_folder(tmp_path, capsys):
    with pytest.raises(PrivsnnError, match="not a folder"):
        collect([tmp_path / "nope"])
    assert main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "r.html")]) != 0
    assert "not a folder" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()  # nothing half-written


# --- portable paths ---------------------------------------------------------------------------

def test_manifests_record_paths_relative_to_their_folder_and_survive_a_move(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["synthesize", "--model", "digits", "--num", "20", "--batch-size", "20", "--iterations", "5",
                 "--out", str(run / "synth.npz")]) == 0
    assert main(["convert", "--model", "digits", "--synthetic", str(run / "synth.npz"), "--timesteps", "4",
                 "--out", str(run / "snn.pt")]) == 0
    text = (run / "snn.pt.manifest.json").read_text()
    assert str(tmp_path) not in text
    assert json.loads(text)["parents"][1]["path"] == "synth.npz"
    moved = tmp_path / "elsewhere"
    shutil.move(run, moved)
    capsys.readouterr()
    assert main(["verify", str(moved / "snn.pt")]) == 0  # the chain still resolves after the move
    assert "real data read anywhere on the way: False" in capsys.readouterr().out


def test_shipped_energy_model_is_recorded_without_a_machine_path():
    d = load_energy_model().to_dict()
    assert not Path(d["path"].split(" ")[0]).is_absolute() and "hw_targets/energy_models.json" in d["path"]


def test_committed_results_and_docs_carry_no_absolute_paths():
    pat = re.compile(r"(/work/|/root/|/home/[a-z]|/tmp/[A-Za-z0-9_.-]+/)")
    files = [*ROOT.glob("bench/results/*.json"), *ROOT.glob("bench/results/*.md"), *ROOT.glob("docs/*.md"),
             ROOT / "README.md"]
    bad = [f"{f.relative_to(ROOT)}: {m.group(0)}" for f in files for m in [pat.search(f.read_text())] if m]
    assert bad == []


# --- the Python API ---------------------------------------------------------------------------

def test_readme_python_api_example_runs(tmp_path, monkeypatch):
    """The README's Python API example, executed as written (in a fresh folder)."""
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- api-example -->\s*```python\n(.*?)```", text, re.S)
    assert m, "README.md has no <!-- api-example --> python block"
    monkeypatch.chdir(tmp_path)
    exec(compile(m.group(1), "README.md (api example)", "exec"), {})
    assert (tmp_path / "run" / "report.html").stat().st_size > 100_000
    man = json.loads((tmp_path / "run" / "private.pt.manifest.json").read_text())
    assert man["real_data_read"] is False and man["command"] == "train"


def test_api_and_cli_are_one_code_path(tmp_path):
    """The same stage through the API and through the command gives the same artifact bytes."""
    import privatesnn as ps

    a, b = tmp_path / "a", tmp_path / "b"
    synth = ps.synthesize("digits", 20, a / "synth.npz", batch_size=20, iterations=5, log=lambda s: None)
    assert main(["synthesize", "--model", "digits", "--num", "20", "--batch-size", "20", "--iterations", "5",
                 "--out", str(b / "synth.npz")]) == 0
    assert torch.equal(synth.images, ps.api.load_synthetic(b / "synth.npz").images)
    ps.convert("digits", a / "snn.pt", synthetic=synth, timesteps=4, log=lambda s: None)
    assert main(["convert", "--model", "digits", "--synthetic", str(b / "synth.npz"), "--timesteps", "4",
                 "--out", str(b / "snn.pt")]) == 0
    ga, gb = ps.api.load_snn(a / "snn.pt").graph, ps.api.load_snn(b / "snn.pt").graph
    for na, nb in zip(ga.weighted(), gb.weighted()):
        assert torch.equal(na.weight, nb.weight)
