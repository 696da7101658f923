"""Privacy audit: weights-as-ANN, model inversion (ANN and SNN through time), the audit report and
its computed verdict, and clear errors. Small settings: the whole module runs in well under 90 s."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
import torch.nn as nn

from privatesnn.artifact import load_snn, save_snn
from privatesnn.cli import main
from privatesnn.conversion import ConversionSettings, ann_graph, convert
from privatesnn.errors import PrivsnnError
from privatesnn.exporters.onnx_export import torch_onnx_export
from privatesnn.manifest import Manifest, parent_entry
from privatesnn.privacy import (ArchitectureMismatchError, InversionSettings, RebuiltANN, attack_accuracy, invert,
                                reference_graph, snn_for_inversion, verdict, weight_cosine)
from privatesnn.privacy.audit import GOAL_INVERSION, GOAL_WEIGHTS_AS_ANN
from privatesnn.training import TrainSettings, train_snn

SMALL = ["--per-class", "4", "--iterations", "60"]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """A converted digits SNN and a briefly trained child (manifest parent = the converted one).

    Calibration/training images here are the digits *training* split: a test fixture, not the
    private path (which uses synthetic images; see test_pipeline.py)."""
    from privatesnn.data import digits_split
    from privatesnn.models import load_model

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("privacy")
    loaded = load_model("digits")
    xtr, ytr, _, _ = digits_split()
    images, labels = torch.from_numpy(xtr[:256]), torch.from_numpy(ytr[:256])
    graph = convert(loaded, images, ConversionSettings(timesteps=8))
    snn = save_snn(out / "snn.pt", graph, {"timesteps": 8},
                   Manifest(kind="snn", command="convert", settings={"timesteps": 8},
                            parents=[{"role": "model", **loaded.describe()}]))
    trained = train_snn(graph, loaded.module(), images, labels, TrainSettings(epochs=1, timesteps=8, lr=1e-4),
                        out / "ckpt.pt", progress=False)
    private = save_snn(out / "private.pt", trained, {"timesteps": 8, "epochs": 1},
                       Manifest(kind="private-snn", command="train", settings={"epochs": 1},
                                parents=[parent_entry(snn, "snn")]))
    return {"dir": out, "snn": snn, "private": private, "loaded": loaded}


def test_converted_snn_weights_are_the_ann(artifacts):
    """Conversion only rescales layers: the SNN read as a ReLU ANN computes the ANN's logits."""
    art, loaded = load_snn(artifacts["snn"]), artifacts["loaded"]
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(RebuiltANN(art.graph, "relu")(x), loaded.module()(x), atol=1e-4)
    cos = weight_cosine(art.graph, reference_graph(ann_graph(loaded), art.graph))
    assert list(cos) == ["conv1", "conv2", "conv3", "fc1", "fc2"]
    assert all(abs(c - 1) < 1e-6 for c in cos.values())


def test_architecture_mismatch_is_a_clear_error(artifacts):
    art = load_snn(artifacts["snn"])
    other = art.graph.copy()
    fc = other["fc1"]
    fc.weight = fc.weight[:, :-1]
    with pytest.raises(ArchitectureMismatchError, match="shapes differ at fc1"):
        weight_cosine(art.graph, other)


def test_inversion_is_seeded_and_batched():
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    for p in net.parameters():
        p.requires_grad_(False)
    s = InversionSettings(per_class=3, iterations=5, batch_size=4, seed=3)
    a, ya = invert(net, [0, 2], (1, 4, 4), s, progress=False)
    b, yb = invert(net, [0, 2], (1, 4, 4), s, progress=False)
    c, _ = invert(net, [0, 2], (1, 4, 4), InversionSettings(per_class=3, iterations=5, batch_size=4, seed=4),
                  progress=False)
    assert a.shape == (6, 1, 4, 4) and ya.tolist() == [0, 0, 0, 2, 2, 2]
    assert torch.equal(a, b) and torch.equal(ya, yb) and not torch.equal(a, c)
    assert float(a.min()) >= 0 and float(a.max()) <= 1


@pytest.mark.parametrize("encoding", ["direct", "rate"])
def test_snn_inversion_has_gradients_through_time(artifacts, encoding):
    g = load_snn(artifacts["snn"]).graph
    if encoding == "rate":
        g.input.encoding, g.input.input_scale = "rate", 1.0
    net = snn_for_inversion(g, 4)
    x = torch.rand(2, 1, 8, 8, requires_grad=True)
    net(x)[:, 3].sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_audit_discriminates_on_digits(artifacts, tmp_path):
    """The attacks work where there is something to find: on the ANN and the plainly converted SNN
    the inverted images are recognised by the independent evaluator far above chance, and the
    converted SNN's weights-as-ANN accuracy is the ANN's."""
    out = tmp_path / "audit"
    rc = main(["attack", "--snn", str(artifacts["private"]), "--data", "digits", "--out", str(out),
               "--json", str(tmp_path / "r.json"), *SMALL])
    assert rc == 0
    r = json.loads((out / "privacy.json").read_text())
    assert json.loads((tmp_path / "r.json").read_text()) == r
    for key in ("weights_as_ann_accuracy", "inversion_accuracy", "snn_inversion_accuracy", "chance", "ann_accuracy",
                "weight_cosine"):
        assert key in r
    assert r["variant"] == "encrypted_snn" and list(r["variants"]) == ["ann", "converted_snn", "encrypted_snn"]
    assert r["chance"] == pytest.approx(0.1)
    ann, conv = r["variants"]["ann"], r["variants"]["converted_snn"]
    assert ann["inversion_accuracy"] >= r["chance"] + 0.3
    assert conv["inversion_accuracy"] >= r["chance"] + 0.3
    assert conv["snn_inversion_accuracy"] >= r["chance"] + 0.2
    assert abs(conv["weights_as_ann_accuracy"] - ann["accuracy"]) <= 0.02
    assert min(conv["weight_cosine"].values()) > 0.999999
    assert r["verdict"].startswith(("LEAK NOT REDUCED", "LEAK REDUCED", "PRIVATE"))
    for e in r["variants"].values():
        assert (out / e["inversion_png"]).is_file()
    assert (out / conv["snn_inversion_png"]).is_file()
    md = (out / "privacy.md").read_text()
    assert r["verdict"] in md and "| converted SNN |" in md
    # the four threat models side by side, (d) with a prior from public images of the other classes
    tm = r["threat_models"]
    assert set(tm) == {"ann", "converted_snn", "encrypted_snn"} and set("abcd") <= set(tm["encrypted_snn"])
    assert r["prior"]["data"] == "digits-train" and r["prior"]["public_classes"] == [5, 6, 7, 8, 9]
    assert tm["ann"]["d"]["accuracy"] >= r["chance"] + 0.3  # the prior-aided attacker finds the ANN's classes
    assert set(tm["encrypted_snn"]["bars_met"]) == set("abcd")
    assert all(0.0 <= tm[v][t]["self"] <= 1.0 for v in tm for t in "abcd" if tm[v][t] is not None)
    assert (out / r["variants"]["encrypted_snn"]["prior_inversion_png"]).is_file()
    assert "(d) prior from public data" in md


def test_audit_is_deterministic_and_limits_classes(artifacts, tmp_path):
    from privatesnn.privacy import run_audit

    kw = dict(limit_classes=3, iterations=20, per_class=2, seed=5, snn_inversion=False, progress=False,
              log=lambda *a: None)
    r1 = run_audit(artifacts["snn"], "digits", "digits", tmp_path / "a", **kw)
    r2 = run_audit(artifacts["snn"], "digits", "digits", tmp_path / "b", **kw)
    assert r1["classes"] == [0, 1, 2] and r1["n_inverted"] == 6
    for k in ("inversion_accuracy", "weights_as_ann_accuracy", "accuracy"):
        assert r1[k] == r2[k]
    assert r1["variant"] == "converted_snn" and r1["snn_inversion_accuracy"] is None
    assert r1["verdict"].startswith("NOT PRIVATE")


def test_audit_tries_every_objective_and_counts_the_strongest_run(artifacts, tmp_path):
    """--objectives logit,ce: each attack runs once per objective; the one counted reached its class on
    the attacked model if any did, and among those scored highest with the evaluator."""
    from privatesnn.privacy import run_audit
    from privatesnn.privacy.audit import ATTACK_CONVERGED

    kw = dict(limit_classes=3, iterations=20, per_class=2, seed=5, snn_inversion=True, progress=False,
              log=lambda *a: None, timesteps=4)
    r = run_audit(artifacts["snn"], "digits", "digits", tmp_path / "a", objectives=("logit", "ce"), **kw)
    assert r["objectives"] == ["logit", "ce"]
    e = r["variants"]["converted_snn"]
    for kind in ("inversion", "snn_inversion", "prior_inversion"):
        runs = e[f"{kind}_by_objective"]
        assert set(runs) == {"logit", "ce"}
        rank = {o: (v["self"] >= ATTACK_CONVERGED, v["evaluator"]) for o, v in runs.items()}
        chosen = e[f"{kind}_objective"]
        assert rank[chosen] == max(rank.values())
        assert e[f"{kind}_accuracy"] == runs[chosen]["evaluator"]
    tried = e.get("inversion_readings_tried")  # (b) moves to the next reading only while none reached its class
    if tried:
        assert next(iter(tried)) == e["weights_as_ann_mode"] and e["inversion_reading"] in tried
        assert all(v["self"] < ATTACK_CONVERGED for v in list(tried.values())[:-1])
    single = run_audit(artifacts["snn"], "digits", "digits", tmp_path / "b", **kw)  # the default: one objective
    assert single["objectives"] == ["logit"] and set(single["variants"]["converted_snn"]["inversion_by_objective"]) == {"logit"}
    assert single["inversion_accuracy"] == e["inversion_by_objective"]["logit"]["evaluator"]
    with pytest.raises(PrivsnnError, match="--objectives"):
        run_audit(artifacts["snn"], "digits", "digits", tmp_path / "c", objectives=("margin",), **kw)


def test_rescaling_aware_attacker_moves_to_the_next_reading_while_it_does_not_converge(artifacts, tmp_path,
                                                                                       monkeypatch):
    """(b) and (d) attack the most accurate weights-as-ANN reading first; while no run reaches its class
    on the attacked model they try the next readings, most accurate first (never the plain ReLU one,
    which is attacker (a)'s); the strongest run counts."""
    import privatesnn.privacy.audit as audit_mod
    from privatesnn.privacy import run_audit

    real = audit_mod.score_inversion

    def stalled(*args, **kwargs):  # every attack "fails to converge": all readings get tried
        return {**real(*args, **kwargs), "self": 0.5}

    monkeypatch.setattr(audit_mod, "score_inversion", stalled)
    r = run_audit(artifacts["snn"], "digits", "digits", tmp_path / "a", limit_classes=2, iterations=5, per_class=1,
                  seed=1, snn_inversion=False, progress=False, log=lambda *a: None, timesteps=4)
    e = r["variants"]["converted_snn"]
    modes = e["weights_as_ann_modes"]
    expected = [e["weights_as_ann_mode"]] + sorted((m for m in modes if m not in (e["weights_as_ann_mode"], "relu")),
                                                   key=lambda m: -modes[m])
    for kind in ("inversion", "prior_inversion"):
        tried = e[f"{kind}_readings_tried"]
        assert list(tried) == expected
        assert e[f"{kind}_accuracy"] == max(v["evaluator"] for v in tried.values())
    assert r["threat_models"]["converted_snn"]["b"]["self"] == 0.5


def test_audit_can_say_no_leak(artifacts, tmp_path):
    """The measurement can come out the other way: an SNN whose weights were shuffled within each
    layer (same distributions, no structure) yields weights-as-ANN and inversion accuracies near
    chance, and the verdict reports the leak as reduced."""
    from privatesnn.privacy import run_audit

    art = load_snn(artifacts["snn"])
    g = art.graph.copy()
    gen = torch.Generator().manual_seed(0)
    for node in g.weighted():
        node.weight = node.weight.flatten()[torch.randperm(node.weight.numel(), generator=gen)].view_as(node.weight)
        if node.bias is not None:
            node.bias = node.bias[torch.randperm(node.bias.numel(), generator=gen)]
    shuffled = save_snn(tmp_path / "shuffled.pt", g, {"timesteps": 8, "epochs": 1},
                        Manifest(kind="private-snn", command="train", settings={},
                                 parents=[parent_entry(artifacts["snn"], "snn")]))
    r = run_audit(shuffled, None, "digits", tmp_path / "audit", iterations=60, per_class=4, snn_inversion=False,
                  progress=False, log=lambda *a: None)
    assert r["variant"] == "encrypted_snn"
    assert r["goals"]["weights_as_ann"] and r["weights_as_ann_accuracy"] <= r["chance"] + GOAL_WEIGHTS_AS_ANN
    conv = r["variants"]["converted_snn"]
    assert conv["inversion_accuracy"] >= r["chance"] + 0.3
    assert r["inversion_accuracy"] <= conv["inversion_accuracy"] - 0.25
    assert set(conv["inversion_accuracy_per_class"]) == set(range(10)) and conv["inversion_accuracy_se"] > 0
    assert r["verdict"].startswith(("PRIVATE", "LEAK REDUCED", "USELESS"))  # a shuffled SNN is also useless
    assert max(abs(c) for c in r["weight_cosine"].values()) < 0.5


def _report(wa, inv, sinv, ref_wa=0.98, ref_inv=0.7, acc=0.98):
    ref = {"accuracy": 0.97, "weights_as_ann_accuracy": ref_wa, "inversion_accuracy": ref_inv,
           "snn_inversion_accuracy": 0.7}
    return {"chance": 0.1, "variant": "encrypted_snn", "n_test": 450, "n_inverted": 80,
            "variants": {"ann": {"accuracy": 0.984, "weights_as_ann_accuracy": 0.984, "inversion_accuracy": 0.7,
                                 "snn_inversion_accuracy": None},
                         "converted_snn": ref,
                         "encrypted_snn": {"accuracy": acc, "weights_as_ann_accuracy": wa, "inversion_accuracy": inv,
                                           "snn_inversion_accuracy": sinv}}}


def test_verdict_is_computed_from_the_numbers():
    v, goals = verdict(_report(0.12, 0.15, 0.18))
    assert v.startswith("PRIVATE") and goals["weights_as_ann"] and goals["inversion"]
    v, goals = verdict(_report(0.6, 0.4, 0.5))
    assert v.startswith("LEAK REDUCED") and not goals["weights_as_ann"]
    v, _ = verdict(_report(0.98, 0.69, 0.7))
    assert v.startswith("LEAK NOT REDUCED")
    v, goals = verdict(_report(0.1, 0.1, 0.1, acc=0.1))  # collapsed training: no leak, no classifier
    assert v.startswith("USELESS") and goals["weights_as_ann"]
    # every attacker's bar met (threat_models) within 2 points of the ANN: its own verdict, not "PRIVATE"
    r = _report(0.97, 0.15, 0.3)
    r["threat_models"] = {"encrypted_snn": {"bars_met": {"a": True, "b": True, "c": True, "d": True}}}
    v, goals = verdict(r)
    assert v.startswith("INVERSION-RESISTANT") and goals["attacker_bars"] and "(a), (b), (c), (d)" in v
    r["threat_models"]["encrypted_snn"]["bars_met"]["c"] = False
    assert verdict(r)[0].startswith("LEAK REDUCED") and not verdict(r)[1]["attacker_bars"]
    r = _report(0.97, 0.15, 0.3, acc=0.95)  # bars met but 3.4 points below the ANN: not enough
    r["threat_models"] = {"encrypted_snn": {"bars_met": {"a": True, "b": True, "c": True, "d": True}}}
    assert verdict(r)[0].startswith("LEAK REDUCED")
    edge = 0.1 + GOAL_WEIGHTS_AS_ANN + 1e-4  # one image in 10000 above the goal: not met
    assert not verdict(_report(edge, 0.1, 0.1))[1]["weights_as_ann"]
    assert not verdict(_report(0.1, 0.1 + GOAL_INVERSION + 1e-4, 0.1))[1]["inversion"]
    at_goal = float(torch.tensor(0.2, dtype=torch.float32))  # exactly chance + 10 points as a float32 mean
    assert at_goal > 0.1 + GOAL_INVERSION and verdict(_report(0.1, at_goal, 0.1))[1]["inversion"]


def _onnx_classifier(path, classes):
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, classes)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch_onnx_export(net, (torch.zeros(1, 1, 8, 8),), path, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    return path


def test_clear_errors(artifacts, tmp_path, capsys):
    pytest.importorskip("onnx")
    snn = str(artifacts["snn"])
    bad_eval = _onnx_classifier(tmp_path / "five.onnx", 5)
    cases = [
        (["--data", "digits", "--evaluator", str(bad_eval)], "has 5 classes but the SNN has 10"),
        (["--data", "digits", "--evaluator", "digits"], "is the victim model itself"),
        (["--data", "digits", "--model", "digits-evaluator"], "does not match the SNN's architecture"),
        (["--data", "npy:x.npy:y.npy"], "--evaluator SPEC is required"),
        (["--data", "digits", "--limit-classes", "3", "--out", str(tmp_path / "x.json")], "not a directory"),
    ]
    (tmp_path / "x.json").write_text("{}")
    for extra, msg in cases:
        assert main(["attack", "--snn", snn, "--out", str(tmp_path / "o"), *extra]) == 2
        assert msg in capsys.readouterr().err
    assert main(["attack", "--snn", str(tmp_path / "missing.pt"), "--data", "digits", "--out", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
    # threat model (d)'s public data: a missing file is one error line, before any attack writes anything
    assert main(["attack", "--snn", snn, "--data", "digits", "--prior-data", "npy:missing_x.npy:y.npy",
                 "--out", str(tmp_path / "o"), "--limit-classes", "2", "--per-class", "1", "--iterations", "2"]) == 2
    assert "missing_x.npy" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    with pytest.raises(SystemExit) as e:
        main(["attack", "--snn", snn, "--data", "digits", "--out", str(tmp_path / "o"), "--iterations", "0"])
    assert e.value.code == 2


def test_attack_accuracy_counts_target_hits():
    class Fixed(nn.Module):
        def forward(self, x):
            return torch.nn.functional.one_hot(x.flatten(1)[:, 0].long(), 3).float()

    imgs = torch.tensor([0.0, 1.0, 2.0, 1.0]).view(4, 1, 1, 1)
    assert attack_accuracy(Fixed(), imgs, torch.tensor([0, 1, 0, 1])) == 0.75


def test_negative_label_smoothing_targets():
    from privatesnn.training import smoothed_cross_entropy

    logits, y = torch.randn(6, 5), torch.tensor([0, 1, 2, 3, 4, 0])
    assert torch.allclose(smoothed_cross_entropy(logits, y, 0.1), torch.nn.functional.cross_entropy(logits, y, label_smoothing=0.1))
    assert torch.allclose(smoothed_cross_entropy(logits, y, 0.0), torch.nn.functional.cross_entropy(logits, y))
    # negative smoothing rewards pushing the wrong classes down: its gradient on a wrong logit is larger
    x = logits.clone().requires_grad_(True)
    smoothed_cross_entropy(x, y, -0.2).backward()
    g_neg = x.grad.clone()
    x.grad = None
    torch.nn.functional.cross_entropy(x, y).backward()
    wrong = torch.ones_like(logits, dtype=torch.bool).scatter_(1, y[:, None], False)
    assert (g_neg[wrong] > x.grad[wrong]).all()


def test_threat_model_bars():
    from privatesnn.privacy.audit import threat_models

    def entry(a, b, c, d):
        return {"relu_inversion_accuracy": a, "inversion_accuracy": b, "snn_inversion_accuracy": c,
                "prior_inversion_accuracy": d}
    r = {"chance": 0.1, "variants": {"converted_snn": entry(0.8, 0.8, 0.6, 0.7),
                                     "encrypted_snn": entry(0.15, 0.25, 0.3, 0.35)}}
    bars = threat_models(r)["encrypted_snn"]["bars_met"]
    assert bars == {"a": True, "b": False, "c": True, "d": True}
    # an attack whose images the attacked model itself does not put in their class failed at optimisation:
    # its low score does not meet a bar
    r["variants"]["encrypted_snn"].update(snn_inversion_self_accuracy=0.3, relu_inversion_self_accuracy=0.9)
    row = threat_models(r)["encrypted_snn"]
    assert row["bars_met"] == {"a": True, "b": False, "c": False, "d": True} and row["not_converged"] == ["c"]
    assert row["c"]["self"] == 0.3 and row["a"]["self"] == 0.9 and row["d"]["self"] is None
    # flagged also when there is no converted SNN to compare (c) against
    alone = {"chance": 0.1, "variants": {"encrypted_snn": {**entry(0.8, 0.8, 0.1, 0.7),
                                                           "snn_inversion_self_accuracy": 0.1}}}
    assert threat_models(alone)["encrypted_snn"]["not_converged"] == ["c"]
    # exactly at a bar counts as met, though float32 means of k / n land a hair above it
    at_bar = float(torch.tensor([1.0] * 16 + [0.0] * 64).mean())  # 16 of 80 = 20% = chance + 10 points
    assert at_bar > 0.2
    r["variants"]["encrypted_snn"] = entry(at_bar, at_bar + 0.0125, float(torch.tensor(0.3, dtype=torch.float32)), 0.35)
    r["variants"]["converted_snn"] = entry(0.8, 0.8, 0.6, 0.7)
    assert threat_models(r)["encrypted_snn"]["bars_met"] == {"a": True, "b": False, "c": True, "d": True}


def test_image_prior_learns_the_public_images():
    from privatesnn.privacy.prior import train_prior

    x = (torch.rand(64, 1, 8, 8) > 0.5).float()
    prior = train_prior(x, epochs=3, progress=False)
    recon, mu, logvar = prior(x)
    assert recon.shape == x.shape and float(recon.min()) >= 0 and float(recon.max()) <= 1
    assert mu.shape == (64, prior.latent)


def test_the_chip_grid_of_a_qat_snn_keeps_its_values_and_passes_the_gradient():
    """A `--qat` SNN rounds its host-fed currents to the chip's grid; the inversion through the SNN (c) needs
    the image's gradient through that rounding (straight-through), or it is blind (masked gradients)."""
    from types import SimpleNamespace

    from privatesnn.snn import SpikingNetwork

    net = SimpleNamespace(host_grid={"n1": (4.0, -8.0, 8.0)})
    current = torch.tensor([0.13, -0.4, 1.9, 3.0], requires_grad=True)
    out = SpikingNetwork.host_input(net, "n1", current)
    assert torch.equal(out.detach(), torch.tensor([0.25, -0.5, 2.0, 2.0]))  # round(4 x) clamped to [-8, 8], / 4
    (out * torch.arange(4.0)).sum().backward()
    assert torch.equal(current.grad, torch.arange(4.0))
