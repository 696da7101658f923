"""The gradient-misalignment defence (convert --qcfs-misalign, train --misalign) and the audit's
attacker that tries several inversion objectives."""

from __future__ import annotations

import pytest
import torch

from privatesnn.errors import PrivsnnError
from privatesnn.gradient_alignment import gradient_alignment, misalignment_probe
from privatesnn.graph import Graph
from privatesnn.qcfs import QCFSNetwork, QCFSSettings, finetune_qcfs
from privatesnn.snn import GraphANN, SpikingNetwork
from privatesnn.training import TrainSettings, train_snn

from helpers import tiny_graph


def test_alignment_is_one_for_the_same_gradients_and_zero_for_opposite_ones():
    net = GraphANN(tiny_graph())
    x, c = torch.rand(8, 1, 6, 6), torch.randint(3, (8,))
    same = gradient_alignment(net, net, x, c)
    assert same.item() == pytest.approx(1.0, abs=1e-5)
    assert gradient_alignment(net, lambda v: -net(v), x, c).item() == pytest.approx(0.0, abs=1e-6)
    other = gradient_alignment(net, GraphANN(tiny_graph(seed=3)), x, c).item()
    assert 0.0 <= other < 0.9
    same.backward()  # double backpropagation: the penalty reaches the network's weights
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_probe_is_half_batch_half_noise_with_a_target_each():
    x = torch.full((10, 1, 6, 6), 7.0)
    probe, target = misalignment_probe(x, 16, 3, torch.Generator().manual_seed(0))
    assert probe.shape == (16, 1, 6, 6) and target.shape == (16,)
    assert bool((probe[:8] == 7.0).all()) and bool(((probe[8:] >= 0) & (probe[8:] < 1)).all())
    assert int(target.max()) < 3


def _alignment_after(graph: Graph, teacher: Graph, levels: int = 4) -> float:
    torch.manual_seed(1)
    x, c = torch.rand(64, 1, 6, 6), torch.randint(3, (64,))
    return gradient_alignment(QCFSNetwork(graph.copy(), levels), GraphANN(teacher), x, c).item()


def test_qcfs_misalign_turns_the_gradients_away_from_the_ann_and_records_it():
    g, images = tiny_graph(), torch.rand(128, 1, 6, 6)
    kw = dict(levels=4, epochs=6, batch_size=32, lr=0.02, cutmix=0.0)
    plain = finetune_qcfs(g, images, QCFSSettings(**kw), progress=False)
    defended = finetune_qcfs(g, images, QCFSSettings(**kw, misalign=5.0), progress=False)
    history = defended.meta["qcfs"]["history"]
    assert "gradient_alignment" in history[0] and "gradient_alignment" not in plain.meta["qcfs"]["history"][0]
    assert defended.meta["qcfs"]["misalign"] == 5.0
    before, after = _alignment_after(plain, g), _alignment_after(defended, g)
    assert after < before - 0.2, (before, after)
    with pytest.raises(PrivsnnError, match="--qcfs-misalign"):
        QCFSSettings(misalign=-1.0).validate()


def test_train_misalign_turns_the_snn_gradients_away_from_the_teacher(tmp_path):
    g, images = tiny_graph(), torch.rand(96, 1, 6, 6)
    teacher = GraphANN(g.copy())
    labels = torch.zeros(96, dtype=torch.long)
    kw = dict(epochs=4, timesteps=4, batch_size=32, lr=1e-2, kd_alpha=1.0, surrogate_alpha=1.0)
    runs = {w: train_snn(g, teacher, images, labels, TrainSettings(**kw, misalign=w), tmp_path / f"c{w}.pt",
                         progress=False) for w in (0.0, 5.0)}
    torch.manual_seed(1)
    x, c = torch.rand(64, 1, 6, 6), torch.randint(3, (64,))
    align = {w: gradient_alignment(SpikingNetwork(out, 4).rate_limit, teacher, x, c).item() for w, out in runs.items()}
    assert align[5.0] < align[0.0] - 0.2, align
    with pytest.raises(PrivsnnError, match="--misalign"):
        TrainSettings(misalign=float("nan")).validate()


def test_cli_refuses_misalign_without_qcfs(tmp_path, capsys):
    from privatesnn.cli import main

    rc = main(["convert", "--model", "digits", "--synthetic", str(tmp_path / "none.npz"), "--qcfs-misalign", "1",
               "--out", str(tmp_path / "s.pt")])
    assert rc == 2 and "--qcfs-misalign needs QCFS fine-tuning" in capsys.readouterr().err
    assert not (tmp_path / "s.pt").exists()


def test_privacy_bench_takes_the_bars_against_the_undefended_reference():
    """bench/privacy.py's misalignment study: (c), (d) are judged against the undefended converted SNN,
    not the defended SNN's own (already misaligned) parent."""
    from helpers import load_bench

    bench = load_bench("privacy")

    def entry(a, b, c, d, self_=1.0):
        out = {"accuracy": 0.97}
        for key, v in zip(("relu_inversion", "inversion", "snn_inversion", "prior_inversion"), (a, b, c, d)):
            out[f"{key}_accuracy"], out[f"{key}_accuracy_se"], out[f"{key}_self_accuracy"] = v, 0.05, self_
        return out

    report = {"chance": 0.1, "variants": {"converted_snn": entry(0.1, 0.1, 0.2, 0.2),  # the defended parent
                                          "encrypted_snn": entry(0.15, 0.2, 0.3, 0.3)}}
    own = bench.threat_models(report)["encrypted_snn"]["bars_met"]
    ref = bench.bars_against(report, entry(0.8, 0.8, 0.7, 0.8))["bars_met"]
    assert own == {"a": True, "b": True, "c": False, "d": False}
    assert ref == {"a": True, "b": True, "c": True, "d": True}
    stalled = {**report, "variants": {**report["variants"], "encrypted_snn": entry(0.15, 0.2, 0.3, 0.3, self_=0.5)}}
    assert not any(bench.bars_against(stalled, entry(0.8, 0.8, 0.7, 0.8))["bars_met"].values())


def test_attack_refuses_an_unknown_objective_before_reading_anything(tmp_path, capsys):
    from privatesnn.cli import main

    rc = main(["attack", "--snn", str(tmp_path / "missing.pt"), "--data", "digits", "--objectives", "logit,margin",
               "--out", str(tmp_path / "audit")])
    assert rc == 2 and "--objectives: 'margin' is not one of" in capsys.readouterr().err
    assert not (tmp_path / "audit").exists()
