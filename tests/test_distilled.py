"""Distil-then-invert (attacker (c) where the ascent through the SNN stalls): the surrogate learns the
victim's function from the attacker's queries, its exploration rounds add the victim's answers on the
surrogate's own inversions, and the audit tries it only while the direct ascent does not converge."""

from __future__ import annotations

import pytest
import torch

from helpers import tiny_graph
from privatesnn.privacy import RebuiltANN
from privatesnn.privacy.distilled import agreement, distil_surrogate, query_images, trainable_reading


def _victim():
    """A fixed ReLU network of the tiny graph's architecture with other weights than the attacker's start."""
    victim = RebuiltANN(tiny_graph(seed=9), "relu").eval()  # outputs spread over its 3 classes
    return victim


def test_queries_are_public_images_their_mixtures_and_noise():
    gen = torch.Generator().manual_seed(0)
    public = torch.rand(10, 1, 6, 6)
    q, counts = query_images(public, (1, 6, 6), 20, gen)
    assert counts == {"public": 10, "mixtures": 10, "noise": 10, "blurred_noise": 10} and q.shape == (40, 1, 6, 6)
    assert torch.equal(q[:10], public) and float(q.min()) >= 0 and float(q.max()) <= 1
    q, counts = query_images(None, (1, 6, 6), 20, gen)  # no public data: noise only
    assert counts == {"noise": 10, "blurred_noise": 10} and len(q) == 20


@pytest.mark.parametrize("scratch", [False, True])
def test_the_surrogate_learns_the_victim_and_leaves_the_graph_alone(scratch):
    torch.manual_seed(0)
    graph = tiny_graph(seed=0)
    before = graph["fc"].weight.clone()
    victim = _victim()
    sur, rec = distil_surrogate(victim, graph, "relu", 4, torch.rand(300, 1, 6, 6), steps=1500, lr=3e-3,
                                progress=False, scratch=scratch)
    assert rec["start"] == ("scratch" if scratch else "relu") and rec["n_queries"] == 1600
    assert rec["fidelity"] >= 0.8 and rec["fidelity"] > rec["fidelity_before"] + 0.2
    assert rec["loss_last"] < rec["loss_first"]
    assert torch.equal(graph["fc"].weight, before)  # the attacked artifact's graph is not touched
    assert not any(p.requires_grad for p in sur.parameters()) and not sur.training
    x = torch.rand(200, 1, 6, 6)
    assert agreement(sur(x), victim(x)) >= 0.75  # also on fresh images


def test_exploration_rounds_query_the_victim_on_the_surrogates_own_images():
    torch.manual_seed(0)
    graph, victim = tiny_graph(seed=0), _victim()
    seen = []

    def explore(sur):
        assert not any(p.requires_grad for p in sur.parameters())  # frozen while it is attacked
        seen.append(len(seen))
        return torch.rand(16, 1, 6, 6)

    sur, rec = distil_surrogate(victim, graph, "relu", 4, None, steps=64, progress=False, rounds=3, explore=explore)
    assert seen == [0, 1] and rec["rounds"] == 3 and len(rec["explored_agreement"]) == 2
    assert rec["queries"]["explored"] == 32 and rec["n_queries"] == 1000 + 32
    assert all(0.0 <= a <= 1.0 for a in rec["explored_agreement"])


def test_only_trainable_layers_learn():
    graph = tiny_graph(seed=0)
    graph["c1"].trainable = False
    model = trainable_reading(graph, "relu", 4, scratch=True)
    assert torch.equal(model.synapses["c1"].weight, graph["c1"].weight)  # kept, frozen
    assert not model.synapses["c1"].weight.requires_grad and model.synapses["fc"].weight.requires_grad
    assert not torch.equal(model.synapses["fc"].weight, graph["fc"].weight)  # re-initialised


def test_audit_distils_only_while_the_snn_ascent_stalls(tmp_path, monkeypatch):
    """--distil auto: the surrogates are tried after the direct ascent only while no run reached its
    class on the SNN (forced here by a stub score), and their fidelity is recorded; the victim of every
    (c) run is the SNN, not the surrogate; always tries them also after a converged ascent; off never
    distils; bad values are refused."""
    import privatesnn.privacy.audit as audit_mod
    from privatesnn.artifact import save_snn
    from privatesnn.conversion import ConversionSettings, convert
    from privatesnn.data import digits_split
    from privatesnn.errors import PrivsnnError
    from privatesnn.manifest import Manifest
    from privatesnn.models import load_model

    torch.manual_seed(0)
    loaded = load_model("digits")
    xtr, _, _, _ = digits_split()
    snn = save_snn(tmp_path / "snn.pt", convert(loaded, torch.from_numpy(xtr[:128]), ConversionSettings(timesteps=4)),
                   {"timesteps": 4}, Manifest(kind="snn", command="convert", settings={"timesteps": 4},
                                              parents=[{"role": "model", **loaded.describe()}]))
    real = audit_mod.score_inversion
    victims = []

    def stalled(evaluator, victim, *args, **kwargs):
        victims.append(type(victim).__name__)
        return {**real(evaluator, victim, *args, **kwargs), "self": 0.5}

    kw = dict(limit_classes=2, iterations=5, per_class=1, seed=1, progress=False, log=lambda *a: None, timesteps=4)
    monkeypatch.setattr(audit_mod, "score_inversion", stalled)
    import privatesnn.privacy.distilled as distilled_mod

    full = distilled_mod.distil_surrogate  # a short fit: this test checks the wiring, not the fit
    monkeypatch.setattr(distilled_mod, "distil_surrogate", lambda *a, **k: full(*a, **{**k, "steps": 40}))
    r = audit_mod.run_audit(snn, "digits", "digits", tmp_path / "a", **kw)
    e = r["variants"]["converted_snn"]
    assert r["distil"] == "auto"
    assert list(e["snn_inversion_readings_tried"]) == ["surrogate gradients", *audit_mod.DISTIL_ROUTES]
    assert set(e["snn_inversion_distilled"]) == set(audit_mod.DISTIL_ROUTES)
    for rec in e["snn_inversion_distilled"].values():
        assert 0.0 <= rec["fidelity_real"] <= 1.0 and rec["public_data"] == "digits-train"
    assert e["snn_inversion_distilled"]["distilled from its weights"]["reading"] == e["weights_as_ann_mode"]
    assert e["snn_inversion_distilled"]["distilled from scratch"]["reading"] == "relu"  # no thresholds, no clamp
    assert victims[-2:] == ["SNNForInversion", "SNNForInversion"]  # scored on the SNN itself
    md = (tmp_path / "a" / "privacy.md").read_text()
    assert "distilled from scratch" in md and "of real test images" in md
    from privatesnn.html_report import _section_privacy, collect

    assert "every route tried" in _section_privacy(collect([tmp_path / "a"]))  # and `privsnn report` says so
    off = audit_mod.run_audit(snn, "digits", "digits", tmp_path / "b", distil="off", **kw)
    assert "snn_inversion_readings_tried" not in off["variants"]["converted_snn"]
    monkeypatch.setattr(audit_mod, "score_inversion",  # converging runs: auto stops after the first, always does not
                        lambda *a, **k: {**real(*a, **k), "self": 1.0})
    conv = audit_mod.run_audit(snn, "digits", "digits", tmp_path / "c", **kw)["variants"]["converted_snn"]
    assert list(conv["snn_inversion_readings_tried"]) == ["surrogate gradients"]
    assert "snn_inversion_distilled" not in conv
    every = audit_mod.run_audit(snn, "digits", "digits", tmp_path / "e", distil="always", **kw)["variants"]["converted_snn"]
    assert list(every["snn_inversion_readings_tried"]) == ["surrogate gradients", *audit_mod.DISTIL_ROUTES]
    with pytest.raises(PrivsnnError, match="--distil"):
        audit_mod.run_audit(snn, "digits", "digits", tmp_path / "d", distil="sometimes", **kw)



def test_privacy_bench_reuses_an_audit_only_with_the_same_distil_setting():
    """bench/privacy.py: an audit is reused for --distil X only if it ran so; an audit from before the
    option counts as "auto" only where no (c) ascent stalled (auto would have distilled there)."""
    from helpers import load_bench

    bench = load_bench("privacy")
    converged = {"variants": {"ann": {}, "encrypted_snn": {"snn_inversion_self_accuracy": 0.9}}}
    stalled = {"variants": {"encrypted_snn": {"snn_inversion_self_accuracy": 0.0}}}
    assert bench.same_distil(converged, []) and not bench.same_distil(stalled, [])
    assert not bench.same_distil(converged, ["--distil", "always"])
    assert bench.same_distil({**stalled, "distil": "auto"}, ["--data", "digits"])
    assert bench.same_distil({**stalled, "distil": "always"}, ["--distil", "always"])
    assert not bench.same_distil({**converged, "distil": "off"}, [])


def test_attack_refuses_an_unknown_distil_mode(tmp_path, capsys):
    from privatesnn.cli import main

    with pytest.raises(SystemExit) as e:
        main(["attack", "--snn", str(tmp_path / "x.pt"), "--data", "digits", "--distil", "sometimes",
              "--out", str(tmp_path / "audit")])
    assert e.value.code == 2 and "--distil" in capsys.readouterr().err
    assert not (tmp_path / "audit").exists()
