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
    assert "encrypted SNN" in text and "bit-exact with the chip model" in text and "energy" in text
    for f in ("synth.npz", "snn.pt", "snn_cal.pt", "private.pt", "model.nir", "audit.json", "energy/energy.json",
              "chip_sim.json"):
        assert (out / f).exists(), f
    enc = {r["timesteps"]: r["accuracy"] for r in json.loads((out / "eval_encrypted.json").read_text())["results"]}
    assert enc[4] >= 0.9  # the low-latency path: QCFS + encryption at T=4
    sim = json.loads((out / "chip_sim.json").read_text())  # the whole test split on the chip model
    assert sim["n"] == 450 and sim["engine"] == "reference" and sim["agreement"] >= 0.95
    assert sim["lava_cross_check"] == {**sim["lava_cross_check"], "images": 10, "bit_exact": True}


@pytest.mark.slow
@pytest.mark.skipif(lava_available(), reason="Lava is installed: test_demo_quick_runs_every_stage runs the demo with it")
def test_demo_quick_on_a_core_install(tmp_path, capsys):
    """Without the privsnn[lava] extra the demo runs every stage (the chip model included) but the
    Lava cross-check, and says why."""
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "encrypted SNN" in text and "Lava cross-check skipped" in text and "privsnn[lava]" in text
    for f in ("synth.npz", "private.pt", "model.nir", "energy/energy.json", "lava/network.net", "lava/fixed_point.json",
              "chip_sim.json"):
        assert (out / f).exists(), f
    sim = json.loads((out / "chip_sim.json").read_text())
    assert sim["n"] == 450 and "not installed" in sim["lava_cross_check"]["skipped"]
