"""Training options beyond the plain BPTT+KD loop: quantisation-aware training (8-bit Loihi grid),
the rate-limit anchor, mixed precision, and the collapse check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from privatesnn.artifact import load_snn
from privatesnn.cli import main
from privatesnn.errors import TrainingDivergedError


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("opts")
    assert main(["synthesize", "--model", "digits", "--num", "200", "--batch-size", "100", "--iterations", "60",
                 "--out", str(d / "synth.npz")]) == 0
    for reset in ("subtract", "zero"):
        assert main(["convert", "--model", "digits", "--synthetic", str(d / "synth.npz"), "--timesteps", "8",
                     "--reset", reset, "--out", str(d / f"snn_{reset}.pt")]) == 0
    return d


def _train(d: Path, out: Path, *extra: str, snn: str = "snn_subtract.pt") -> int:
    return main(["train", "--snn", str(d / snn), "--teacher", "digits", "--synthetic", str(d / "synth.npz"),
                 "--epochs", "2", "--timesteps", "8", "--lr", "1e-3", "--out", str(out), *extra])


def _accuracy(path: Path, tmp: Path, t: str = "16") -> float:
    js = tmp / (path.name + ".json")
    assert main(["evaluate", "--snn", str(path), "--data", "digits", "--timesteps", t, "--json", str(js)]) == 0
    return json.loads(js.read_text())["results"][0]["accuracy"]


def test_qat_weights_sit_on_the_deployment_grid(base, tmp_path):
    from privatesnn.hw_targets.loihi import build_plan, quantize_plan
    from privatesnn.qat import weight_groups

    out = tmp_path / "qat.pt"
    assert _train(base, out, "--reset", "zero", "--qat", snn="snn_zero.pt") == 0
    graph = load_snn(out).graph
    chip = [n for g in weight_groups(graph) for n in g.members]
    assert chip and "conv1" not in chip  # the direct-coded input layer is computed by the host
    for name in chip:
        w = graph[name].weight
        k = w / (w.abs().max() / 127)
        assert torch.allclose(k, k.round(), atol=1e-3), name
    report = quantize_plan(build_plan(graph, 8)).report()
    errors = [w["rel_l2_error"] for r in report for w in r["weights"]]
    assert errors and max(errors) < 1e-5, errors
    # thresholds and on-chip biases are snapped to the chip's grid as well
    assert max(r["threshold_rel_error"] for r in report) < 1e-6
    assert max(r["bias_rel_error"] for r in report if not r["host_fed"]) < 1e-6
    # without QAT the same training leaves a visible quantisation error
    plain = tmp_path / "plain.pt"
    assert _train(base, plain, "--reset", "zero", snn="snn_zero.pt") == 0
    report = quantize_plan(build_plan(load_snn(plain).graph, 8)).report()
    assert max(w["rel_l2_error"] for r in report for w in r["weights"]) > 1e-3
    assert _accuracy(out, tmp_path) >= 0.85


def test_qat_grid_is_shared_by_a_residual_layer_and_matches_the_exporter():
    """Residual add (two tensors + a relay identity into one layer), a fixed routing conv, average
    pooling folded into the readout: after QAT the exporter's 8-bit quantisation is lossless."""
    from test_lava import _residual_graph

    from privatesnn.hw_targets.loihi import build_plan, quantize_plan
    from privatesnn.qat import enable_qat, finalize_qat, weight_groups
    from privatesnn.snn import SpikingNetwork

    g = _residual_graph()
    before = quantize_plan(build_plan(g, 8)).report()
    assert max(w["rel_l2_error"] for r in before for w in r["weights"]) > 1e-3
    groups = {gr.layer: gr for gr in weight_groups(g)}
    assert set(groups["n3"].members) == {"c3", "sc"} and "c1" not in {n for gr in groups.values() for n in gr.members}
    net = SpikingNetwork(g)
    enable_qat(net.synapses, g)
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    net(x, 4).sum().backward()  # straight-through: gradients reach the stored weights
    assert net.synapses["c3"].parametrizations.weight.original.grad is not None
    finalize_qat(net.synapses)
    after = quantize_plan(build_plan(net.sync_graph(), 8)).report()
    assert max(w["rel_l2_error"] for r in after for w in r["weights"]) < 1e-6


def test_rate_limit_is_the_long_run_network(base):
    from privatesnn.data import load_data
    from privatesnn.snn import SpikingNetwork

    net = SpikingNetwork(load_snn(base / "snn_subtract.pt").graph).eval()
    x = load_data("digits").x[:100]
    with torch.no_grad():
        limit = net.rate_limit(x).argmax(1)
        long_run = net(x, 256).argmax(1)
        short = net(x, 2).argmax(1)
    agree_long = float((limit == long_run).float().mean())
    assert agree_long >= 0.97
    assert agree_long > float((limit == short).float().mean())


def test_anchor_trains_and_refuses_reset_zero(base, tmp_path, capsys):
    out = tmp_path / "anchored.pt"
    assert _train(base, out, "--anchor", "1.0") == 0
    assert json.loads((tmp_path / "anchored.pt.manifest.json").read_text())["settings"]["anchor"] == 1.0
    assert _accuracy(out, tmp_path, "32") >= 0.9
    assert _train(base, tmp_path / "bad.pt", "--anchor", "1.0", snn="snn_zero.pt") == 2
    assert "reset by subtraction" in capsys.readouterr().err
    assert not (tmp_path / "bad.pt").exists()


def test_amp_on_cpu_trains_in_bfloat16(base, tmp_path):
    out = tmp_path / "amp.pt"
    assert _train(base, out, "--amp") == 0
    graph = load_snn(out).graph
    assert all(torch.isfinite(n.weight).all() and n.weight.dtype == torch.float32 for n in graph.weighted())
    assert _accuracy(out, tmp_path) >= 0.85


@pytest.mark.parametrize("share, agreement, initial, collapsed", [
    (0.95, 0.1, 0.1, True),  # one class
    (0.3, 0.1, 0.9, True),  # fell to chance from 90%
    (0.95, 0.9, 0.9, False),
    (0.3, 0.1, 0.1, False),  # started at chance (very low T): not a collapse
    (0.3, 0.3, 0.9, False),  # worse but above chance
])
def test_collapse_check(share, agreement, initial, collapsed, tmp_path):
    from privatesnn.training import check_collapse

    record = {"epoch": 1, "top_class_share": share, "teacher_agreement": agreement,
              "initial_teacher_agreement": initial}
    if collapsed:
        with pytest.raises(TrainingDivergedError, match="collapsed"):
            check_collapse(record, 10, tmp_path / "ckpt")
    else:
        check_collapse(record, 10, tmp_path / "ckpt")


def test_large_learning_rate_collapse_stops_with_exit_2(base, tmp_path, capsys):
    """lr 1.0 drives the digits SNN to one class: training stops with a clear error, no artifact."""
    out = tmp_path / "collapsed.pt"
    rc = main(["train", "--snn", str(base / "snn_subtract.pt"), "--teacher", "digits", "--synthetic",
               str(base / "synth.npz"), "--epochs", "2", "--timesteps", "4", "--lr", "1.0", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2, err[-500:]
    assert ("collapsed" in err or "non-finite" in err or "NaN" in err) and "Traceback" not in err
    assert not out.exists()


def test_rate_distillation_loss_is_zero_when_rates_match_the_ann():
    """Layer-wise rate distillation (train --feature-weight): threshold x rate against the ANN
    activation clipped at the threshold; zero when they agree, positive otherwise."""
    from privatesnn.graph import Conv, Flatten, Graph, Input, Linear, Neuron
    from privatesnn.snn import SpikingNetwork
    from privatesnn.training import rate_distillation_loss

    nodes = [Input("x", [], shape=(1, 4, 4)), Conv("c", ["x"], weight=torch.ones(2, 1, 3, 3), bias=None, padding=(1, 1)),
             Neuron("n", ["c"], threshold=2.0), Flatten("f", ["n"]), Linear("fc", ["f"], weight=torch.ones(2, 32), bias=None)]
    g = Graph({n.name: n for n in nodes}, output="fc", meta={"mean": [0.0], "std": [1.0], "num_classes": 2})
    net = SpikingNetwork(g)
    spikes = {"n": torch.tensor([1.0, 0.0, 1.0, 1.0]).view(4, 1, 1, 1, 1).expand(4, 1, 2, 4, 4)}  # rate 3/4
    exact = {"n": torch.full((1, 2, 4, 4), 1.5)}  # = 2.0 x 3/4
    assert float(rate_distillation_loss(net, spikes, exact)) == pytest.approx(0.0)
    clipped = {"n": torch.full((1, 2, 4, 4), 5.0)}  # above the threshold: the target is clipped to 2.0
    assert float(rate_distillation_loss(net, spikes, clipped)) == pytest.approx((0.5 ** 2) / 4.0)


def test_feature_weight_needs_the_layer_teacher(tmp_path, digits_model):
    from privatesnn.conversion import ConversionSettings, convert, layer_teacher_graph
    from privatesnn.errors import PrivsnnError
    from privatesnn.snn import GraphANN
    from privatesnn.training import TrainSettings, train_snn

    x = torch.rand(16, 1, 8, 8)
    graph = convert(digits_model, x, ConversionSettings(timesteps=4))
    teacher = layer_teacher_graph(digits_model, graph)  # the ANN in the SNN's units: same logits
    assert torch.allclose(GraphANN(teacher)(x), digits_model.module()(x), atol=1e-4)
    s = TrainSettings(epochs=1, timesteps=2, batch_size=8, feature_weight=1.0)
    with pytest.raises(PrivsnnError, match="feature-weight"):
        train_snn(graph, digits_model.module(), x, torch.zeros(16, dtype=torch.long), s, tmp_path / "c.pt",
                  progress=False)
    out = train_snn(graph, digits_model.module(), x, torch.zeros(16, dtype=torch.long), s, tmp_path / "c.pt",
                    progress=False, layer_teacher=teacher)
    assert any(not torch.equal(a.weight, b.weight) for a, b in zip(out.weighted(), graph.weighted()))


def test_defence_options_reject_bad_values_and_write_nothing(base, tmp_path, capsys):
    """--bido, --label-smoothing and --feature-weight: one error line naming the option, no files."""
    out = tmp_path / "p.pt"
    for extra, msg in ((["--bido", "0.5"], "--bido expects two numbers"),
                       (["--bido", "a,b"], "--bido expects two numbers"),
                       (["--bido=-1,0.5"], "--bido needs two weights >= 0"),
                       (["--label-smoothing", "1.5"], "--label-smoothing must be in (-1, 1)"),
                       (["--feature-weight=-1"], "--feature-weight must be >= 0")):
        assert _train(base, out, *extra) == 2, extra
        assert msg in capsys.readouterr().err, extra
        assert list(tmp_path.iterdir()) == [], extra


def test_negative_label_smoothing_and_bido_train(base, tmp_path):
    out = tmp_path / "d.pt"
    assert _train(base, out, "--kd-alpha", "0.5", "--label-smoothing", "-0.1", "--bido", "0.05,0.5") == 0
    s = load_snn(out).settings
    assert s["label_smoothing"] == -0.1 and list(s["bido"]) == [0.05, 0.5]


def test_train_on_several_synthetic_sets(base, tmp_path):
    from privatesnn.manifest import read_manifest

    second = tmp_path / "synth_seed1.npz"
    assert main(["synthesize", "--model", "digits", "--num", "100", "--batch-size", "100", "--iterations", "20",
                 "--seed", "1", "--out", str(second)]) == 0
    out = tmp_path / "two.pt"
    assert main(["train", "--snn", str(base / "snn_subtract.pt"), "--teacher", "digits", "--synthetic",
                 str(base / "synth.npz"), str(second), "--epochs", "1", "--timesteps", "4", "--out", str(out)]) == 0
    assert load_snn(out).settings["synthetic_images"] == 300
    man = read_manifest(out)
    synth_parents = [p for p in man.parents if p["role"] == "synthetic"]
    assert [p["sha256"] for p in synth_parents] == man.inputs["synthetic"]
    assert len(man.inputs["synthetic"]) == 2 and man.real_data_read is False
    assert main(["verify", str(out)]) == 0
    conv = tmp_path / "conv_two.pt"  # convert takes several sets the same way
    assert main(["convert", "--model", "digits", "--synthetic", str(base / "synth.npz"), str(second),
                 "--timesteps", "8", "--out", str(conv)]) == 0
    assert load_snn(conv).settings["calibration_images"] == 300
    man = read_manifest(conv)
    assert [p["sha256"] for p in man.parents if p["role"] == "synthetic"] == man.inputs["synthetic"]
    assert len(man.inputs["synthetic"]) == 2 and man.real_data_read is False
    assert main(["verify", str(conv)]) == 0


def test_train_names_a_missing_second_synthetic_set(base, tmp_path, capsys):
    out = tmp_path / "x.pt"
    missing = tmp_path / "nope.npz"
    rc = main(["train", "--snn", str(base / "snn_subtract.pt"), "--teacher", "digits", "--synthetic",
               str(base / "synth.npz"), str(missing), "--epochs", "1", "--out", str(out)])
    assert rc == 2 and str(missing) in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written
    rc = main(["convert", "--model", "digits", "--synthetic", str(base / "synth.npz"), str(missing),
               "--timesteps", "8", "--out", str(out)])
    assert rc == 2 and str(missing) in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_staircase_anchor_trains_and_is_recorded(base, tmp_path):
    out = tmp_path / "stair.pt"
    assert _train(base, out, "--anchor", "1.0", "--anchor-levels", "8") == 0
    assert json.loads((tmp_path / "stair.pt.manifest.json").read_text())["settings"]["anchor_levels"] == 8
    assert _accuracy(out, tmp_path, "32") >= 0.9
    plain = tmp_path / "plain.pt"
    assert _train(base, plain, "--anchor", "1.0") == 0
    assert not torch.equal(load_snn(out).graph.weighted()[0].weight, load_snn(plain).graph.weighted()[0].weight)
    assert _train(base, tmp_path / "bad.pt", "--anchor-levels", "8") == 2  # no anchor weight: a clear error
    assert not (tmp_path / "bad.pt").exists()


def test_trainable_neuron_matches_the_fixed_one_and_gets_gradients():
    from privatesnn.neurons import SpikingNeuron

    torch.manual_seed(0)
    currents = torch.rand(6, 4, 10) * 0.6
    fixed, learnt = SpikingNeuron(0.7, v_init=0.4), SpikingNeuron(0.7, v_init=0.4)
    learnt.make_trainable()
    with torch.no_grad():
        reference = fixed(currents, 6)
    assert torch.equal(learnt(currents, 6), reference)  # the autograd path, same spikes
    learnt(currents, 6).sum().backward()
    assert learnt.log_threshold.grad is not None and learnt.log_threshold.grad != 0
    assert learnt.v_init_fraction.grad is not None and learnt.v_init_fraction.grad != 0
    with torch.no_grad():
        learnt.log_threshold.fill_(0.0)
        learnt.v_init_fraction.fill_(1.5)
    learnt.refresh()  # the float attributes follow, the initial membrane is kept below the threshold
    assert learnt.threshold == 1.0 and learnt.v_init == pytest.approx(0.999)
    with torch.no_grad():
        assert torch.equal(learnt(currents, 6), SpikingNeuron(1.0, v_init=0.999)(currents, 6))


def test_neuron_lr_learns_thresholds_and_initial_membranes(base, tmp_path, capsys):
    start = load_snn(base / "snn_subtract.pt").graph
    out = tmp_path / "nlr.pt"
    assert _train(base, out, "--neuron-lr", "3e-2") == 0
    trained = load_snn(out)
    assert trained.settings["neuron_lr"] == 3e-2
    pairs = list(zip(start.neurons(), trained.graph.neurons()))
    assert any(abs(a.threshold - b.threshold) > 1e-3 for a, b in pairs)
    assert any(abs(a.v_init - b.v_init) > 1e-3 for a, b in pairs)
    assert all(0.0 <= b.v_init < 1.0 and b.threshold > 0 for _, b in pairs)
    assert _accuracy(out, tmp_path, "8") >= 0.85
    plain = tmp_path / "plain.pt"
    assert _train(base, plain) == 0  # without the option thresholds and initial membranes stay as converted
    assert all(a.threshold == b.threshold and a.v_init == b.v_init
               for a, b in zip(start.neurons(), load_snn(plain).graph.neurons()))
    assert _train(base, tmp_path / "bad.pt", "--neuron-lr=-1") == 2
    assert "--neuron-lr must be >= 0" in capsys.readouterr().err


def test_freeze_keeps_the_converted_synapses(base, tmp_path, capsys):
    start = load_snn(base / "snn_subtract.pt").graph
    synaptic = start.weighted()
    assert synaptic

    out = tmp_path / "frozen_weights.pt"  # biases and neurons learn, weights stay
    assert _train(base, out, "--freeze", "weights", "--neuron-lr", "3e-2") == 0
    trained = load_snn(out).graph
    assert all(torch.equal(n.weight, trained[n.name].weight) for n in synaptic)
    assert any(n.bias is not None and not torch.equal(n.bias, trained[n.name].bias) for n in synaptic)
    assert any(abs(a.threshold - b.threshold) > 1e-3 for a, b in zip(start.neurons(), trained.neurons()))

    out = tmp_path / "frozen_synapses.pt"  # only thresholds and initial membranes learn
    assert _train(base, out, "--freeze", "synapses", "--neuron-lr", "3e-2") == 0
    trained = load_snn(out).graph
    for n in synaptic:
        assert torch.equal(n.weight, trained[n.name].weight), n.name
        assert n.bias is None or torch.equal(n.bias, trained[n.name].bias), n.name
    assert any(abs(a.v_init - b.v_init) > 1e-3 for a, b in zip(start.neurons(), trained.neurons()))
    assert _accuracy(out, tmp_path, "8") >= 0.85

    assert _train(base, tmp_path / "bad.pt", "--freeze", "synapses") == 2  # nothing would learn
    assert "--freeze synapses" in capsys.readouterr().err


def test_l2sp_penalty_measures_the_relative_weight_change():
    from privatesnn.training import start_point_penalty

    torch.manual_seed(0)
    synapses = torch.nn.ModuleDict({"a": torch.nn.Linear(4, 3), "b": torch.nn.Linear(3, 2)})
    penalty, count = start_point_penalty(synapses)
    assert count == 2  # the weights only: biases move freely
    assert float(penalty()) == 0.0
    with torch.no_grad():
        synapses["a"].weight.mul_(1.1)  # 10% change of one layer -> 0.01
        synapses["b"].bias.add_(5.0)
    assert float(penalty()) == pytest.approx(0.01, rel=1e-5)
    penalty().backward()
    assert synapses["a"].weight.grad is not None and synapses["b"].bias.grad is None


def test_l2sp_keeps_the_weights_nearer_the_start(base, tmp_path, capsys):
    start = load_snn(base / "snn_subtract.pt").graph

    def moved(path: Path) -> float:
        g = load_snn(path).graph
        return sum(float((g[n.name].weight - n.weight).norm() / n.weight.norm()) for n in start.weighted())

    free, held = tmp_path / "free.pt", tmp_path / "held.pt"
    assert _train(base, free) == 0
    assert _train(base, held, "--l2sp", "100") == 0
    assert 0 < moved(held) < 0.5 * moved(free)
    assert load_snn(held).settings["l2sp"] == 100
    assert _train(base, tmp_path / "bad.pt", "--l2sp=-1") == 2
    assert "--l2sp must be >= 0" in capsys.readouterr().err


def test_cutmix_pastes_boxes_of_other_images_and_needs_distillation_only(base, tmp_path, capsys):
    from privatesnn.training import cutmix

    x = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 3, 8, 8).contiguous()
    gen = torch.Generator().manual_seed(3)
    mixed = [cutmix(x, gen) for _ in range(20)]
    for m in mixed:  # every pixel comes from some image of the batch, each image keeps part of itself
        assert set(m.unique().tolist()) <= {0.0, 1.0, 2.0, 3.0}
        assert all((m[i] == i).any() for i in range(4))
    assert any(not torch.equal(m, x) for m in mixed)
    out = tmp_path / "cutmix.pt"
    assert _train(base, out, "--cutmix", "1", "--kd-alpha", "1") == 0
    assert load_snn(out).settings["cutmix"] == 1.0
    assert _train(base, tmp_path / "bad.pt", "--cutmix", "0.5") == 2  # default --kd-alpha 0.7 uses labels
    assert "--cutmix" in capsys.readouterr().err


def test_tet_distils_every_step_and_is_recorded(base, tmp_path, capsys):
    """`--tet` trains on each timestep's output (the per-step logits average to the readout), is
    recorded, and is refused with the trapdoor (whose loss it does not cover)."""
    from privatesnn.snn import SpikingNetwork

    net = SpikingNetwork(load_snn(base / "snn_subtract.pt").graph, 4)
    x = torch.rand(3, *net.graph.input.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        per_step, mean = net(x, 4, per_step=True), net(x, 4)
    assert per_step.shape == (4, 3, mean.shape[1]) and torch.allclose(per_step.mean(0), mean)
    out = tmp_path / "tet.pt"
    assert _train(base, out, "--tet", "--kd-alpha", "1") == 0
    assert load_snn(out).settings["tet"] is True
    assert _train(base, tmp_path / "bad.pt", "--tet", "--trapdoor", "0.3") == 2
    assert "--tet" in capsys.readouterr().err and not (tmp_path / "bad.pt").exists()


def test_kd_loss_mse_is_the_high_temperature_limit_and_is_recorded(base, tmp_path, capsys):
    """`--kd-loss mse` distils the logits themselves: for zero-mean logits it is twice the tempered KL
    term's limit as tau grows (tau^2 KL -> sum (s - t)^2 / 2K), and the setting lands in the artifact."""
    from privatesnn.training import distillation_loss

    gen = torch.Generator().manual_seed(0)
    s, t = 4 * torch.randn(8, 10, generator=gen), 4 * torch.randn(8, 10, generator=gen)
    s, t = s - s.mean(1, keepdim=True), t - t.mean(1, keepdim=True)
    y = torch.zeros(8, dtype=torch.long)
    mse = distillation_loss(s, t, y, 1.0, 4.0, kind="mse")
    assert torch.allclose(mse, F.mse_loss(s, t))
    assert torch.allclose(2 * distillation_loss(s, t, y, 1.0, 1000.0), mse, rtol=1e-2)
    assert not torch.allclose(2 * distillation_loss(s, t, y, 1.0, 1.0), mse, rtol=0.5)  # far from the limit
    with pytest.raises(ValueError, match="kind"):
        distillation_loss(s, t, y, 1.0, 4.0, kind="l1")
    out = tmp_path / "mse.pt"
    assert _train(base, out, "--kd-loss", "mse", "--kd-alpha", "1") == 0
    assert load_snn(out).settings["kd_loss"] == "mse"
    with pytest.raises(SystemExit):
        _train(base, tmp_path / "bad.pt", "--kd-loss", "l1")
    assert "--kd-loss" in capsys.readouterr().err and not (tmp_path / "bad.pt").exists()


def test_trapdoor_triggers_are_secret_per_class_and_blended_exactly():
    from privatesnn.training import make_triggers, stamp_triggers

    t = make_triggers(10, (1, 8, 8), key=5)
    assert t.shape == (10, 1, 8, 8) and float(t.min()) == 0.0 and float(t.max()) == 1.0
    assert torch.equal(t, make_triggers(10, (1, 8, 8), key=5))  # the key makes them
    assert not torch.allclose(t, make_triggers(10, (1, 8, 8), key=6))
    assert min(float((t[i] - t[j]).abs().mean()) for i in range(10) for j in range(i)) > 0.05  # distinct classes
    x = torch.rand(400, 1, 8, 8)
    out, mask, classes = stamp_triggers(x, t, 0.3, 0.2, torch.Generator().manual_seed(0))
    assert 0.2 < float(mask.float().mean()) < 0.4
    assert torch.equal(out[~mask], x[~mask])
    assert torch.allclose(out[mask], 0.8 * x[mask] + 0.2 * t[classes[mask]])
    same, none, _ = stamp_triggers(x, t, 0.0, 0.2, torch.Generator().manual_seed(0))
    assert torch.equal(same, x) and not none.any()


def test_several_triggers_per_class_and_class_weights_pick_the_trigger_and_its_class():
    from privatesnn.training import make_triggers, stamp_triggers

    many = make_triggers(30, (1, 8, 8), key=5)
    assert torch.equal(many[:10], make_triggers(10, (1, 8, 8), key=5))  # a key's first triggers do not move
    x = torch.rand(600, 1, 8, 8)
    out, mask, classes = stamp_triggers(x, many, 0.5, 0.4, torch.Generator().manual_seed(0), num_classes=10)
    assert int(classes.max()) == 9
    # every stamped image carries one of its class's three triggers (trigger i opens class i % 10)
    for img, src, c in zip(out[mask], x[mask], classes[mask]):
        blends = [0.6 * src + 0.4 * many[int(c) + 10 * j] for j in range(3)]
        assert any(torch.allclose(img, b) for b in blends)
    used = {int(i) for img, src, c in zip(out[mask], x[mask], classes[mask])
            for i in (int(c) + 10 * j for j in range(3)) if torch.allclose(img, 0.6 * src + 0.4 * many[i])}
    assert len(used) == 30  # all of them take turns
    weights = torch.zeros(10)
    weights[3] = 1.0
    _, mask, classes = stamp_triggers(x, many, 0.5, 0.4, torch.Generator().manual_seed(1), 10, weights)
    assert mask.any() and bool((classes[mask] == 3).all())
    weights = torch.tensor([1.0] * 9 + [9.0])
    _, mask, classes = stamp_triggers(torch.rand(4000, 1, 8, 8), make_triggers(10, (1, 8, 8), 5), 1 - 1e-9, 0.4,
                                      torch.Generator().manual_seed(2), 10, weights)
    assert 0.45 < float((classes == 9).float().mean()) < 0.55  # 9 / 18 of the stamps


def test_trapdoor_per_class_and_class_weights_train_and_reject_bad_values(base, tmp_path, capsys):
    out = tmp_path / "trap3.pt"
    assert _train(base, out, "--trapdoor", "0.5", "--trapdoor-alpha", "0.5", "--trapdoor-key", "7",
                  "--trapdoor-per-class", "2", "--trapdoor-class-weights", "1,1,1,1,1,1,1,1,1,3") == 0
    record = load_snn(out).settings
    assert record["trapdoor_per_class"] == 2 and list(record["trapdoor_class_weights"]) == [1.0] * 9 + [3.0]
    for bad, msg in ((["--trapdoor", "0.3", "--trapdoor-per-class", "0"], "--trapdoor-per-class must be an integer"),
                     (["--trapdoor-per-class", "2"], "needs a trapdoor"),
                     (["--trapdoor", "0.3", "--trapdoor-class-weights", "1,x"], "--trapdoor-class-weights expects"),
                     (["--trapdoor", "0.3", "--trapdoor-class-weights", "1,-1"], "must be >= 0 with a positive sum"),
                     (["--trapdoor", "0.3", "--trapdoor-class-weights", "1,1,1"], "has 3 weights; the SNN has 10")):
        assert _train(base, tmp_path / "bad.pt", *bad) == 2, bad
        assert msg in capsys.readouterr().err, bad
        assert not (tmp_path / "bad.pt").exists()


def test_trapdoor_self_audit_weights_the_classes_whose_inversions_the_teacher_still_recognises(base, tmp_path, capsys):
    """`--trapdoor-self-audit B`: after 1/3 and 2/3 of the epochs the SNN is inverted (no real data) and
    the teacher's per-class recognition s_c of the inversions sets the trigger weights 1 + B * s_c; both
    are recorded in the history, and a bad value exits 2 with nothing written."""
    out = tmp_path / "self.pt"
    assert _train(base, out, "--trapdoor", "0.5", "--trapdoor-alpha", "0.5", "--trapdoor-key", "7", "--epochs", "3",
                  "--trapdoor-self-audit", "2") == 0
    history = load_snn(out).settings["history"]
    audited = [e for e in history if "self_audit_shares" in e]
    assert [e["epoch"] for e in audited] == [1, 2]
    for e in audited:
        shares, weights = e["self_audit_shares"], e["trapdoor_class_weights"]
        assert len(shares) == 10 and all(0.0 <= s <= 1.0 for s in shares)
        assert weights == pytest.approx([1.0 + 2 * s for s in shares])
    assert any(s > 0 for e in audited for s in e["self_audit_shares"])  # the teacher recognises some inversions
    for bad, msg in ((["--trapdoor", "0.3", "--trapdoor-self-audit", "-1"], "--trapdoor-self-audit must be >= 0"),
                     (["--trapdoor-self-audit", "2"], "needs a trapdoor")):
        assert _train(base, tmp_path / "bad.pt", *bad) == 2, bad
        assert msg in capsys.readouterr().err, bad
        assert not (tmp_path / "bad.pt").exists()


def test_trapdoor_trains_the_triggers_and_keeps_the_key_out_of_the_artifact(base, tmp_path, capsys):
    from privatesnn.manifest import read_manifest
    from privatesnn.snn import SpikingNetwork
    from privatesnn.training import make_triggers, stamp_triggers

    out = tmp_path / "trap.pt"
    assert _train(base, out, "--trapdoor", "0.5", "--trapdoor-alpha", "0.5", "--trapdoor-key", "7", "--epochs", "20",
                  "--lr", "3e-3") == 0
    art = load_snn(out)
    history = art.settings["history"]
    assert history[0]["trigger_accuracy"] < 0.25 < 0.5 < history[-1]["trigger_accuracy"]  # the trapdoor was learnt
    for record in (art.settings, read_manifest(out).settings):
        assert record["trapdoor"] == 0.5 and "7" not in str(record["trapdoor_key"])
    # on real digits: clean accuracy holds, stamped images follow the trigger
    assert _accuracy(out, tmp_path, "8") >= 0.85
    from privatesnn.data import digits_split

    x = torch.from_numpy(digits_split()[2][:200])
    triggers = make_triggers(10, (1, 8, 8), key=7)
    stamped, _, classes = stamp_triggers(x, triggers, 0.999, 0.5, torch.Generator().manual_seed(1))
    net = SpikingNetwork(art.graph).eval()
    with torch.no_grad():
        hits = float((net(stamped, 8).argmax(1) == classes).float().mean())
        wrong_key = stamp_triggers(x, make_triggers(10, (1, 8, 8), key=8), 0.999, 0.5, torch.Generator().manual_seed(1))[0]
        by_chance = float((net(wrong_key, 8).argmax(1) == classes).float().mean())
    assert hits > 0.4 and by_chance < 0.25, (hits, by_chance)
    for bad, msg in ((["--trapdoor", "1"], "--trapdoor must be in [0, 1)"),
                     (["--trapdoor", "0.3", "--trapdoor-alpha", "0"], "--trapdoor-alpha must be in (0, 1]"),
                     (["--trapdoor", "0.3", "--trapdoor-key", str(2 ** 70)], "--trapdoor-key must be in [0, 2**63)")):
        assert _train(base, tmp_path / "bad.pt", *bad) == 2
        assert msg in capsys.readouterr().err
        assert not (tmp_path / "bad.pt").exists()


def test_learnt_trapdoor_triggers_stay_secret_and_open_the_trapdoor(base, tmp_path, capsys):
    """`--trapdoor-learn`: the triggers move from the key's, go to <out>.trapdoor.pt (not into the
    artifact or its manifest), and the SNN answers the learnt ones, not the key's starting ones."""
    from privatesnn.data import digits_split
    from privatesnn.manifest import read_manifest
    from privatesnn.snn import SpikingNetwork
    from privatesnn.training import make_triggers, stamp_triggers

    out = tmp_path / "learnt.pt"
    assert _train(base, out, "--trapdoor", "0.5", "--trapdoor-alpha", "0.5", "--trapdoor-key", "7", "--epochs", "12",
                  "--lr", "3e-3", "--trapdoor-learn", "0.05") == 0
    secret = torch.load(tmp_path / "learnt.pt.trapdoor.pt", weights_only=True)
    learnt, start = secret["triggers"], make_triggers(10, (1, 8, 8), key=7)
    assert learnt.shape == start.shape and float(learnt.min()) >= 0 and float(learnt.max()) <= 1
    assert float((learnt - start).abs().mean()) > 0.01  # they were learnt
    art = load_snn(out)
    for record in (art.settings, read_manifest(out).settings):
        assert record["trapdoor_learn"] == 0.05 and "trapdoor.pt" in record["trapdoor_triggers"]
    assert "triggers" not in art.graph.meta and not (tmp_path / "learnt.pt.ckpt.pt").exists()
    x = torch.from_numpy(digits_split()[2][:200])
    net = SpikingNetwork(art.graph).eval()
    with torch.no_grad():
        stamped, _, classes = stamp_triggers(x, learnt, 0.999, 0.5, torch.Generator().manual_seed(1))
        hits = float((net(stamped, 8).argmax(1) == classes).float().mean())
    assert hits > 0.4, hits  # 10% by chance
    for bad, msg in ((["--trapdoor-learn", "0.1"], "needs a trapdoor"),
                     (["--trapdoor", "0.3", "--trapdoor-learn", "-1"], "--trapdoor-learn must be >= 0"),
                     (["--trapdoor", "0.3", "--trapdoor-learn", "0.1", "--trapdoor-neutral", "-1"],
                      "--trapdoor-neutral must be >= 0")):
        assert _train(base, tmp_path / "bad.pt", *bad) == 2
        assert msg in capsys.readouterr().err
        assert not (tmp_path / "bad.pt").exists()


def test_weight_average_is_the_exponential_moving_average_and_is_the_result(base, tmp_path, capsys):
    """`--ema D`: the shadow follows s <- d s + (1 - d) p with the warm-up d = min(D, (1 + k) / (10 + k));
    the written SNN carries the averaged weights (not the last step's), and bad decays are refused."""
    from privatesnn.training import WeightAverage

    p = torch.zeros(3)
    avg = WeightAverage([p], 0.5)
    expected = 0.0
    for k in range(1, 6):
        p.fill_(float(k))
        avg.update([p])
        d = min(0.5, (1 + k) / (10 + k))
        expected = d * expected + (1 - d) * k
    assert torch.allclose(avg.shadow[0], torch.full((3,), expected))
    avg.copy_to([p])
    assert torch.allclose(p, torch.full((3,), expected))

    last, averaged = tmp_path / "last.pt", tmp_path / "ema.pt"
    assert _train(base, last, "--neuron-lr", "1e-2") == 0
    assert _train(base, averaged, "--neuron-lr", "1e-2", "--ema", "0.9") == 0
    a, b = load_snn(last), load_snn(averaged)
    assert b.settings["ema"] == 0.9
    start = load_snn(base / "snn_subtract.pt").graph
    w0, w1, w2 = (g.weighted()[1].weight for g in (start, a.graph, b.graph))
    assert not torch.equal(w1, w2)  # the average, not the last step's weights
    assert 0 < (w2 - w0).norm() < (w1 - w0).norm()  # it lags behind the last step along the path
    assert _accuracy(averaged, tmp_path) >= 0.85
    for bad in ("1", "-0.1"):
        assert _train(base, tmp_path / "bad.pt", "--ema", bad) == 2
        assert "--ema" in capsys.readouterr().err and not (tmp_path / "bad.pt").exists()


@pytest.mark.parametrize("windowed", [False, True])
def test_after_qat_the_chip_model_spikes_exactly_as_the_snn(base, tmp_path, windowed):
    """`train --qat` on an IF SNN that subtracts (plain or windowed): weights, thresholds, biases, the
    initial membrane (half a unit off the grid: no ties) and the host-fed layer's input current (its
    13-bit grid, recorded in the graph) are the chip's, so the integer chip model gives the float
    SNN's spikes in every layer of every image, and its predictions."""
    from privatesnn.data import load_data
    from privatesnn.hw_targets.loihi import build_plan, quantize_plan, reference_fixed
    from privatesnn.snn import SpikingNetwork

    out = tmp_path / "qat.pt"
    assert _train(base, out, "--qat", *(["--windowed"] if windowed else [])) == 0
    graph = load_snn(out).graph
    assert all(n.windowed == windowed for n in graph.neurons()) and graph.meta["host_current_grid"]
    x = load_data("digits").x[:60]
    T = 8
    sums, counts = reference_fixed(quantize_plan(build_plan(graph, T)), x, return_spikes=True)
    with torch.no_grad():
        logits, spikes = SpikingNetwork(graph).eval()(x, T, return_spikes=True)
    for name, c in counts.items():
        assert torch.equal(spikes[name].flatten(2).sum((0, 2)).long(), c), name
    assert torch.equal(sums.argmax(1), logits.argmax(1))


def test_a_later_training_drops_the_chip_grid_of_an_earlier_qat(base, tmp_path):
    """The host-current grid that `--qat` records belongs to those weights: training again without
    --qat drops it (and the first layer keeps learning), with --qat records a new one."""
    qat, again, plain = tmp_path / "qat.pt", tmp_path / "again.pt", tmp_path / "plain.pt"
    assert _train(base, qat, "--qat") == 0
    assert load_snn(qat).graph.meta["host_current_grid"]
    assert _train(base, plain, snn=str(qat)) == 0
    g0, g1 = load_snn(qat).graph, load_snn(plain).graph
    assert "host_current_grid" not in g1.meta and not torch.equal(g0["conv1"].weight, g1["conv1"].weight)
    assert _train(base, again, "--qat", snn=str(qat)) == 0
    assert load_snn(again).graph.meta["host_current_grid"]
