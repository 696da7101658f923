"""`privsnn demo --quick`: the whole pipeline on digits, as a new user runs it (every stage real)."""

from __future__ import annotations

import json

import pytest

from privatesnn.cli import main
from privatesnn.lava_extra import lava_available


@pytest.mark.lava
@pytest.mark.slow
def test_demo_quick_runs_every_stage(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "encrypted SNN" in text and "Lava fixed_pt" in text and "energy" in text
    for f in ("synth.npz", "snn.pt", "snn_cal.pt", "private.pt", "model.nir", "audit.json", "energy/energy.json",
              "lava_sim.json"):
        assert (out / f).exists(), f
    enc = {r["timesteps"]: r["accuracy"] for r in json.loads((out / "eval_encrypted.json").read_text())["results"]}
    assert enc[4] >= 0.9  # the low-latency path: QCFS + encryption at T=4
    sim = json.loads((out / "lava_sim.json").read_text())
    assert sim["n"] == 20 and sim["agreement"] >= 0.8


@pytest.mark.slow
@pytest.mark.skipif(lava_available(), reason="Lava is installed: test_demo_quick_runs_every_stage runs the demo with it")
def test_demo_quick_on_a_core_install(tmp_path, capsys):
    """Without the privsnn[lava] extra the demo runs every stage but the Lava run, and says why."""
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "encrypted SNN" in text and "Lava simulation skipped" in text and "privsnn[lava]" in text
    for f in ("synth.npz", "private.pt", "model.nir", "energy/energy.json", "lava/network.net", "lava/fixed_point.json"):
        assert (out / f).exists(), f
    assert not (out / "lava_sim.json").exists()
