"""The low-latency path: QCFS fine-tuning, bias calibration, choosing T on synthetic images."""

from __future__ import annotations

import json

import pytest
import torch

from privatesnn.calibration import _channel_mean, calibrate_biases
from privatesnn.choose_t import smallest_t
from privatesnn.cli import main
from privatesnn.errors import PrivsnnError
from privatesnn.graph import Flatten, Graph, Linear
from privatesnn.manifest import read_manifest
from privatesnn.neurons import SpikingNeuron
from privatesnn.qcfs import QCFSNetwork, QCFSSettings, finetune_qcfs, qcfs
from privatesnn.snn import SpikingNetwork, static_forward
from privatesnn.layers import build_synapses

from helpers import tiny_graph


@pytest.mark.parametrize("levels", [1, 2, 4, 8])
def test_qcfs_equals_if_neuron_at_t_equals_l_on_constant_input(levels):
    gen = torch.Generator().manual_seed(levels)
    current = (torch.rand(4000, generator=gen, dtype=torch.float64) * 1.6 - 0.3)
    threshold = 0.7
    spikes = SpikingNeuron(threshold, v_init=0.5)(current.unsqueeze(0), timesteps=levels)
    rate = spikes.mean(0)
    expected = qcfs(current, torch.tensor(threshold, dtype=torch.float64), levels)
    # exact, except at staircase edges where '>' (no spike at equality) and floor disagree
    edge = ((current * levels / threshold + 0.5) - (current * levels / threshold + 0.5).round()).abs() < 1e-9
    assert edge.sum() < 5
    assert torch.equal(rate[~edge], expected[~edge])


def test_qcfs_gradient_reaches_input_and_threshold():
    x = torch.tensor([-0.5, 0.3, 0.62, 2.0], requires_grad=True)
    th = torch.tensor(1.0, requires_grad=True)
    qcfs(x, th, 4).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 0.0]  # straight through inside the clip only
    assert th.grad is not None and th.grad != 0


def test_qcfs_network_is_the_snn_at_t_equals_l_for_a_constant_input_layer():
    """One neuron layer fed by the direct-coded input gets a constant current: the SNN's logits at
    T = L equal the QCFS network's exactly."""
    g = tiny_graph()
    one = Graph({k: g.nodes[k] for k in ("x", "c1", "n1")} | {"f": Flatten("f", ["n1"]),
                "fc": Linear("fc", ["f"], weight=torch.randn(3, 4 * 6 * 6), bias=torch.zeros(3))},
                output="fc", meta=g.meta)
    x = torch.rand(16, 1, 6, 6)
    with torch.no_grad():
        q = QCFSNetwork(one, levels=4)(x)
        s = SpikingNetwork(QCFSNetwork(one, levels=4).sync_graph())(x, timesteps=4)
    assert torch.allclose(q, s, atol=1e-5)


def test_staircase_rate_limit_is_the_qcfs_network_and_the_snn_at_t_equals_l():
    """``rate_limit(x, levels=L)`` (the anchor of ``train --anchor-levels L``) is the QCFS network;
    for a layer fed a constant current it is also the SNN at T = L."""
    g = tiny_graph()
    one = Graph({k: g.nodes[k] for k in ("x", "c1", "n1")} | {"f": Flatten("f", ["n1"]),
                "fc": Linear("fc", ["f"], weight=torch.randn(3, 4 * 6 * 6), bias=torch.zeros(3))},
                output="fc", meta=g.meta)
    snn_graph = QCFSNetwork(one, levels=4).sync_graph()
    x = torch.rand(16, 1, 6, 6)
    with torch.no_grad():
        net = SpikingNetwork(snn_graph)
        stair = net.rate_limit(x, levels=4)
        assert torch.allclose(stair, QCFSNetwork(snn_graph, levels=4)(x), atol=1e-6)
        assert torch.allclose(stair, net(x, timesteps=4), atol=1e-5)
        assert not torch.allclose(stair, net.rate_limit(x), atol=1e-3)  # the T -> infinity limit differs


def test_finetune_qcfs_learns_and_returns_a_spiking_graph():
    g = tiny_graph()
    images = torch.rand(64, 1, 6, 6)
    out = finetune_qcfs(g, images, QCFSSettings(levels=2, epochs=3, batch_size=16, lr=0.05), progress=False)
    assert [n.v_init for n in out.neurons()] == [0.5, 0.5]
    assert out.meta["qcfs"]["levels"] == 2
    # the fine-tuned graph is a valid SNN and runs
    assert SpikingNetwork(out)(images[:4], timesteps=2).shape == (4, 3)
    assert any(not torch.equal(a.weight, b.weight) for a, b in zip(g.weighted(), out.weighted()))


def test_qcfs_mse_distillation_is_the_squared_logit_difference_and_is_recorded():
    from privatesnn.qcfs import kd_loss

    s, t = torch.randn(8, 3), torch.randn(8, 3)
    assert torch.equal(kd_loss(s, t, 4.0, "mse"), torch.nn.functional.mse_loss(s, t))
    assert not torch.equal(kd_loss(s, t, 4.0, "kl"), kd_loss(s, t, 4.0, "mse"))
    g, images = tiny_graph(), torch.rand(64, 1, 6, 6)
    runs = [finetune_qcfs(g, images, QCFSSettings(levels=2, epochs=2, batch_size=16, lr=0.05, kd_loss=kind),
                          progress=False) for kind in ("kl", "mse")]
    assert [r.meta["qcfs"]["kd_loss"] for r in runs] == ["kl", "mse"]
    with pytest.raises(PrivsnnError, match="--qcfs-kd-loss"):  # the CLI's choices catch it first
        QCFSSettings(kd_loss="l1").validate()
    assert any(not torch.equal(a.weight, b.weight) for a, b in zip(runs[0].weighted(), runs[1].weighted()))


def test_finetune_qcfs_learns_a_trapdoor_and_keeps_the_key_out_of_the_graph():
    """QCFS fine-tuning with --qcfs-trapdoor: stamped images go to their trigger's class (the
    ANN teacher knows nothing of triggers, so this is learnt), the key is not in the graph's meta."""
    from privatesnn.training import make_triggers, stamp_triggers

    g = tiny_graph(seed=1)
    images = torch.rand(256, 1, 6, 6)
    settings = QCFSSettings(levels=4, epochs=12, batch_size=32, lr=0.02, trapdoor=0.5, trapdoor_alpha=0.6,
                            trapdoor_key=11)
    out = finetune_qcfs(g, images, settings, progress=False)
    acc = [r["trigger_accuracy"] for r in out.meta["qcfs"]["history"]]
    assert acc[0] < 0.6 < 0.8 < acc[-1], acc
    assert out.meta["qcfs"]["trapdoor"] == 0.5 and "11" not in str(out.meta["qcfs"]["trapdoor_key"])
    x = torch.rand(300, 1, 6, 6)
    gen = lambda: torch.Generator().manual_seed(2)  # noqa: E731
    stamped, _, classes = stamp_triggers(x, make_triggers(3, (1, 6, 6), 11), 0.999, 0.6, gen())
    wrong, _, _ = stamp_triggers(x, make_triggers(3, (1, 6, 6), 12), 0.999, 0.6, gen())
    net = SpikingNetwork(out).eval()
    with torch.no_grad():
        hits = float((net(stamped, 8).argmax(1) == classes).float().mean())
        by_chance = float((net(wrong, 8).argmax(1) == classes).float().mean())
    assert hits > 0.7 and by_chance < 0.5, (hits, by_chance)


@pytest.mark.parametrize("stamp_first", [False, True])
def test_qcfs_trapdoor_augment_stamps_before_the_shift_and_flip(monkeypatch, stamp_first):
    """--qcfs-trapdoor-augment: the random shift/flip sees the stamped images (the trigger moves with
    the image); without it the triggers are stamped after, at their fixed place."""
    import privatesnn.qcfs as qcfs
    from privatesnn.training import augment, make_triggers

    seen = []
    monkeypatch.setattr(qcfs, "augment", lambda x, gen: seen.append(x.clone()) or augment(x, gen))
    images = torch.rand(32, 1, 6, 6)
    settings = QCFSSettings(levels=2, epochs=1, batch_size=32, lr=0.01, trapdoor=0.999, trapdoor_alpha=1.0,
                            trapdoor_key=5, trapdoor_augment=stamp_first, cutmix=0.0)
    finetune_qcfs(tiny_graph(), images, settings, progress=False)
    triggers = make_triggers(3, (1, 6, 6), 5)
    is_trigger = [any(torch.equal(x, t) for t in triggers) for x in seen[0]]
    assert (sum(is_trigger) > 25) if stamp_first else not any(is_trigger), sum(is_trigger)


def test_convert_seed_reaches_the_qcfs_fine_tuning(tmp_path):
    """`convert --seed` seeds the QCFS fine-tuning (batch order, shifts, CutMix): the same seed gives
    the same weights, another seed other weights."""
    from privatesnn.api import convert

    synth = tmp_path / "s.npz"
    assert main(["synthesize", "--model", "digits", "--num", "64", "--batch-size", "64", "--iterations", "2",
                 "--out", str(synth)]) == 0
    runs = [convert("digits", tmp_path / f"q{i}_{seed}.pt", synthetic=synth, timesteps=4, qcfs_levels=4, qcfs_epochs=1,
                    batch_size=16, seed=seed, log=lambda *a: None) for i, seed in enumerate((0, 0, 1))]
    weights = [[n.weight for n in r.graph.weighted()] for r in runs]
    assert all(torch.equal(a, b) for a, b in zip(weights[0], weights[1]))
    assert any(not torch.equal(a, b) for a, b in zip(weights[0], weights[2]))
    assert runs[2].settings["seed"] == 1


def test_qcfs_ema_keeps_the_weight_average(tmp_path):
    """`--qcfs-ema D` keeps the moving average of the weights: with a vanishing decay it is the last
    step's weights (the plain run), with 0.9 other weights; a decay outside [0, 1) is refused."""
    images = torch.rand(64, 1, 6, 6, generator=torch.Generator().manual_seed(0))

    def run(ema):
        out = finetune_qcfs(tiny_graph(), images, QCFSSettings(levels=4, epochs=2, batch_size=16, lr=1e-2, ema=ema),
                            progress=False)
        return [n.weight for n in out.weighted()]

    plain, tiny, averaged = run(0.0), run(1e-12), run(0.9)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain, tiny))
    assert any(not torch.allclose(a, b, atol=1e-4) for a, b in zip(plain, averaged))
    with pytest.raises(PrivsnnError, match="--qcfs-ema"):
        QCFSSettings(ema=1.0).validate()


def test_qcfs_anchor_keeps_the_weights_near_the_converted_ann():
    """`--qcfs-anchor W` (L2-SP) pulls the fine-tuned weights towards the converted ANN's: a strong
    pull leaves them closer than no pull does; a negative weight is refused."""
    from privatesnn.qcfs import weight_drift

    images = torch.rand(64, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    start = [n.weight.clone() for n in tiny_graph().weighted()]

    def drift(anchor):
        out = finetune_qcfs(tiny_graph(), images, QCFSSettings(levels=2, epochs=3, batch_size=16, lr=3e-2,
                                                                anchor=anchor), progress=False)
        return float(weight_drift([n.weight for n in out.weighted()], start))

    free, pulled = drift(0.0), drift(1e4)
    assert free > 0 and pulled < 0.5 * free, (free, pulled)
    with pytest.raises(PrivsnnError, match="--qcfs-anchor"):
        QCFSSettings(anchor=-1.0).validate()


def test_bias_calibration_moves_layer_means_onto_the_ann():
    """With membranes starting at 0 every layer under-fires by about 1/(2T) on average: a
    per-channel offset that bias calibration removes."""
    g = tiny_graph(seed=3)
    for n in g.neurons():
        n.v_init = 0.0
    images = torch.rand(128, 1, 6, 6)
    T = 4

    ref: dict[str, torch.Tensor] = {}  # the ANN activations of the uncalibrated graph
    static_forward(g, images, build_synapses(g), lambda n, i: (i / n.threshold).clamp(0, 1), record=ref)

    def errors(graph):
        _, spikes = SpikingNetwork(graph)(images, T, return_spikes=True)
        return {k: float((_channel_mean(ref[k]) - _channel_mean(spikes[k])).abs().mean()) for k in ref}

    before = errors(g)
    calibrated = g.copy()
    calibrate_biases(calibrated, images, T, iterations=2, progress=False)
    after = errors(calibrated)
    assert calibrated.meta["calibration"]["timesteps"] == T
    for k in before:
        assert after[k] < 0.5 * before[k], (k, before[k], after[k])


def test_smallest_t():
    agree = {1: 0.5, 2: 0.9, 4: 0.97, 8: 0.99, 16: 0.995}
    assert smallest_t(agree, 0.97) == 4
    assert smallest_t(agree, 0.99) == 8
    assert smallest_t(agree, 0.999) is None


def _boom(*args, **kwargs):
    raise AssertionError("a real-data reader was called on the private path")


def test_low_latency_cli_path_reads_no_real_data(tmp_path, monkeypatch):
    """synthesize -> convert --qcfs-levels --calibrate bias -> train at low T -> choose-t, with
    every real-data reader patched to raise."""
    import sklearn.datasets

    import privatesnn.data as data

    for name in ("load_data", "digits_split", "_read_npy", "_read_cifar", "_read_tinyimagenet"):
        monkeypatch.setattr(data, name, _boom)
    monkeypatch.setattr(sklearn.datasets, "load_digits", _boom)
    run = lambda *a: main([str(x) for x in a])  # noqa: E731
    assert run("synthesize", "--model", "digits", "--num", "100", "--batch-size", "100", "--iterations", "30",
               "--out", tmp_path / "synth.npz") == 0
    assert run("synthesize", "--model", "digits", "--num", "50", "--batch-size", "50", "--iterations", "30",
               "--seed", "1", "--out", tmp_path / "held.npz") == 0
    assert run("convert", "--model", "digits", "--synthetic", tmp_path / "synth.npz", "--timesteps", "4",
               "--qcfs-levels", "4", "--qcfs-epochs", "2", "--out", tmp_path / "qcfs.pt") == 0
    m = read_manifest(tmp_path / "qcfs.pt")
    assert m.real_data_read is False and m.private is True and m.settings["qcfs_levels"] == 4
    assert run("calibrate", "--snn", tmp_path / "qcfs.pt", "--synthetic", tmp_path / "synth.npz", "--timesteps", "4",
               "--images", "32", "--out", tmp_path / "snn.pt") == 0
    m = read_manifest(tmp_path / "snn.pt")
    assert m.real_data_read is False and m.private is True and m.command == "calibrate"
    assert m.inputs["snn"] == read_manifest(tmp_path / "qcfs.pt").sha256
    assert run("train", "--snn", tmp_path / "snn.pt", "--teacher", "digits", "--synthetic", tmp_path / "synth.npz",
               "--epochs", "1", "--timesteps", "4", "--anchor", "1", "--out", tmp_path / "private.pt") == 0
    assert run("choose-t", "--snn", tmp_path / "private.pt", "--model", "digits", "--synthetic", tmp_path / "held.npz",
               "--timesteps", "1,4,16", "--agreement", "0.5", "--json", tmp_path / "t.json") == 0
    res = json.loads((tmp_path / "t.json").read_text())
    assert res["real_data_read"] is False and set(res["agreement"]) == {"1", "4", "16"}
    assert res["chosen_timesteps"] in (1, 4, 16)
    assert res["agreement"]["16"] >= 0.5


def test_convert_qcfs_trapdoor_keeps_the_key_out_of_the_artifact_and_manifest(tmp_path):
    from privatesnn.artifact import load_snn

    assert main(["synthesize", "--model", "digits", "--num", "64", "--batch-size", "64", "--iterations", "5",
                 "--out", str(tmp_path / "s.npz")]) == 0
    out = tmp_path / "snn.pt"
    assert main(["convert", "--model", "digits", "--synthetic", str(tmp_path / "s.npz"), "--qcfs-levels", "4",
                 "--qcfs-epochs", "2", "--qcfs-trapdoor", "0.5", "--trapdoor-key", "9876543", "--out", str(out)]) == 0
    m = read_manifest(out)
    assert m.settings["qcfs_trapdoor"] == 0.5 and m.real_data_read is False
    art = load_snn(out)
    assert len(art.graph.meta["qcfs"]["history"]) == 2 and "trigger_accuracy" in art.graph.meta["qcfs"]["history"][0]
    for text in (json.dumps(m.settings), json.dumps(art.settings, default=str), json.dumps(art.graph.meta, default=str),
                 out.with_name(out.name + ".manifest.json").read_text()):
        assert "9876543" not in text


def test_qcfs_rate_penalty_is_the_mean_level_and_lowers_the_windowed_snns_spikes():
    """``rate_reg`` penalises the mean QCFS level, which is the spike rate of the windowed SNN at
    T = L: the same seed with the penalty ends with fewer spikes in that SNN."""
    from privatesnn.qcfs import level_rate

    acts = {"a": torch.tensor([[0.0, 1.0]]), "b": torch.full((3, 4), 0.25)}
    assert float(level_rate(acts)) == pytest.approx((0.5 + 0.25) / 2)
    torch.manual_seed(0)
    g, images = tiny_graph(), torch.rand(128, 1, 6, 6)
    rates = []
    for weight in (0.0, 5.0):
        out = finetune_qcfs(g, images, QCFSSettings(levels=4, epochs=4, batch_size=16, lr=0.02, rate_reg=weight),
                            progress=False)
        assert out.meta["qcfs"]["rate_reg"] == weight
        for n in out.neurons():
            n.windowed = True
        _, spikes = SpikingNetwork(out)(images, timesteps=4, return_spikes=True)
        rates.append(float(torch.stack([s.float().mean() for s in spikes.values()]).mean()))
    assert rates[1] < 0.8 * rates[0], rates
    with pytest.raises(PrivsnnError, match="--qcfs-rate-reg"):
        QCFSSettings(rate_reg=-1.0).validate()


@pytest.mark.parametrize("argv_tail, needle", [
    (["--qcfs-levels", "-1"], "--qcfs-levels"),
    (["--qcfs-levels", "4", "--qcfs-lr", "0"], "--qcfs-lr"),
    (["--qcfs-levels", "4", "--qcfs-feature-weight", "-1"], "--qcfs-feature-weight"),
    (["--qcfs-levels", "4", "--reset", "zero"], "reset by subtraction"),
    (["--qcfs-levels", "4", "--qcfs-rate-reg", "-1"], "--qcfs-rate-reg must be >= 0"),
    (["--qcfs-levels", "4", "--qcfs-rate-reg", "nan"], "--qcfs-rate-reg must be >= 0"),
    (["--qcfs-rate-reg", "1"], "--qcfs-rate-reg needs QCFS fine-tuning"),
    (["--qcfs-trapdoor", "0.5", "--trapdoor-key", "1"], "--qcfs-trapdoor needs QCFS fine-tuning"),
    (["--qcfs-levels", "4", "--qcfs-trapdoor", "0.5"], "needs --trapdoor-key"),
    (["--qcfs-levels", "4", "--qcfs-trapdoor", "1", "--trapdoor-key", "1"], "--trapdoor must be in [0, 1)"),
    (["--qcfs-levels", "4", "--qcfs-trapdoor", "0.5", "--qcfs-trapdoor-alpha", "0", "--trapdoor-key", "1"],
     "--trapdoor-alpha must be in (0, 1]"),
    (["--qcfs-levels", "4", "--qcfs-trapdoor-augment"], "--qcfs-trapdoor-augment needs --qcfs-trapdoor"),
    (["--qcfs-levels", "4", "--qcfs-prune", "1"], "--qcfs-prune must be in [0, 1)"),
    (["--qcfs-levels", "4", "--qcfs-prune-input", "-0.1"], "--qcfs-prune-input must be in [0, 1)"),
    (["--qcfs-prune", "0.5"], "--qcfs-prune needs QCFS fine-tuning"),
])
def test_low_latency_bad_settings(tmp_path, capsys, argv_tail, needle):
    """convert's QCFS options: one error line naming the option, nothing written."""
    assert main(["synthesize", "--model", "digits", "--num", "20", "--batch-size", "20", "--iterations", "2",
                 "--out", str(tmp_path / "s.npz")]) == 0
    out = tmp_path / "snn.pt"
    rc = main(["convert", "--model", "digits", "--synthetic", str(tmp_path / "s.npz"), "--qcfs-epochs", "1",
               "--out", str(out), *argv_tail])
    assert rc == 2 and needle in capsys.readouterr().err
    assert not out.exists()


def test_calibrate_and_choose_t_bad_inputs(tmp_path, capsys):
    run = lambda *a: main([str(x) for x in a])  # noqa: E731
    assert run("synthesize", "--model", "digits", "--num", "20", "--batch-size", "20", "--iterations", "2",
               "--out", tmp_path / "s.npz") == 0
    assert run("convert", "--model", "digits", "--synthetic", tmp_path / "s.npz", "--out", tmp_path / "snn.pt") == 0
    (tmp_path / "junk.pt").write_bytes(b"not an artifact")
    cases = [
        (["calibrate", "--snn", tmp_path / "snn.pt", "--synthetic", tmp_path / "s.npz", "--timesteps", "0"], "--timesteps"),
        (["calibrate", "--snn", tmp_path / "junk.pt", "--synthetic", tmp_path / "s.npz", "--timesteps", "4"], "junk.pt"),
        (["calibrate", "--snn", tmp_path / "snn.pt", "--synthetic", tmp_path / "nope.npz", "--timesteps", "4"], "nope.npz"),
        (["choose-t", "--snn", tmp_path / "snn.pt", "--model", "digits", "--synthetic", tmp_path / "s.npz",
          "--agreement", "1.5"], "--agreement"),
        (["choose-t", "--snn", tmp_path / "snn.pt", "--model", "digits", "--synthetic", tmp_path / "s.npz",
          "--timesteps", "0,4"], "--timesteps"),
        (["choose-t", "--snn", tmp_path / "junk.pt", "--model", "digits", "--synthetic", tmp_path / "s.npz"], "junk.pt"),
    ]
    capsys.readouterr()
    for argv, needle in cases:
        out = tmp_path / "out.pt"
        assert run(*argv, *(["--out", out] if argv[0] == "calibrate" else ["--json", out])) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("error:") and needle in err, (argv, err)
        assert not out.exists()


def _registry_model(name: str, tmp_path, onnx: bool = False):
    from helpers import randomize_bn
    from privatesnn.models import create_model, load_model, model_cfg

    net = randomize_bn(create_model(name))
    if onnx:
        from privatesnn.exporters.onnx_export import torch_onnx_export

        path = tmp_path / f"{name}.onnx"
        torch_onnx_export(net.eval(), (torch.zeros(1, *model_cfg(name).input_shape),), path, opset_version=13,
                          input_names=["x"], output_names=["y"])
        return load_model(str(path))
    path = tmp_path / f"{name}.pt"
    torch.save(net.state_dict(), path)
    return load_model(f"{name}:{path}")


@pytest.mark.parametrize("name, onnx", [("resnet32", False), ("vgg11", False), ("vgg16_nobn", False),
                                        ("digits_cnn", False), ("vgg11", True)])
def test_low_latency_path_runs_on_registry_and_onnx_models(name, onnx, tmp_path):
    """QCFS fine-tuning, bias calibration and the synthetic agreement work unchanged on residual,
    max-pooling, BN-free and ONNX-imported graphs."""
    from privatesnn.choose_t import agreement_over_time
    from privatesnn.conversion import ConversionSettings, convert

    loaded = _registry_model(name, tmp_path, onnx)
    images = torch.rand(8, *loaded.input_shape, generator=torch.Generator().manual_seed(0))
    graph = convert(loaded, images, ConversionSettings(timesteps=2, qcfs_levels=2, qcfs_epochs=1), progress=False)
    assert graph.meta["qcfs"]["levels"] == 2 and all(n.threshold > 0 for n in graph.neurons())
    calibrate_biases(graph, images[:4], 2, progress=False)
    graph.validate()
    agree = agreement_over_time(graph, loaded.module(), images[:4], [1, 2], progress=False)
    assert set(agree) == {1, 2} and all(0.0 <= a <= 1.0 for a in agree.values())


@pytest.mark.parametrize("name, onnx, prune", [("vgg11", False, 0.0), ("vgg11", True, 0.5),
                                               ("digits_maxpool_cnn", False, 0.0), ("resnet32", False, 0.5)])
def test_windowed_path_is_the_qcfs_network_on_registry_and_onnx_models(name, onnx, prune, tmp_path):
    """`convert --qcfs-levels L --windowed` on max-pooling, residual and ONNX-imported graphs: at T = L
    the SNN gives the QCFS network's logits (max pooling of windowed spike trains passes the largest
    count), and choose-t runs on it; with `--qcfs-prune` too (every learned layer but the readout pruned)."""
    from privatesnn.choose_t import agreement_over_time
    from privatesnn.conversion import ConversionSettings, convert
    from privatesnn.pruning import weight_sparsity
    from privatesnn.snn import SpikingNetwork

    loaded = _registry_model(name, tmp_path, onnx)
    images = torch.rand(8, *loaded.input_shape, generator=torch.Generator().manual_seed(0))
    graph = convert(loaded, images, ConversionSettings(timesteps=2, qcfs_levels=2, qcfs_epochs=1, windowed=True,
                                                       qcfs_prune=prune, qcfs_prune_input=prune), progress=False)
    assert all(n.windowed for n in graph.neurons())
    sparsity = weight_sparsity(graph)
    learned = [k for k in sparsity if k not in ("all", graph.output)]
    assert learned and all(sparsity[k] == pytest.approx(prune, abs=0.02) for k in learned), sparsity
    net = SpikingNetwork(graph).double().eval()  # float64: no total rounds across a step of the staircase
    x = images[:4].double()
    with torch.no_grad():
        for T in (2, 3):
            assert torch.allclose(net(x, T), net.rate_limit(x, levels=T), rtol=1e-9, atol=1e-9), T
    agree = agreement_over_time(graph, loaded.module(), images[:4], [1, 2], progress=False)
    assert set(agree) == {1, 2} and all(0.0 <= a <= 1.0 for a in agree.values())


def test_train_rate_penalty_weighted_by_synops_spares_the_cheap_layer(tmp_path):
    """``train --rate-weighting synops`` weighs each layer's rate by the synapses its spikes reach:
    on the tiny graph n1 feeds a 3x3 convolution (0.92 of the synapses) and n2 only the 3-way head,
    so the penalty leaves n2's spikes and takes n1's instead, compared with every layer alike."""
    from privatesnn.ops_count import synop_weights
    from privatesnn.snn import GraphANN
    from privatesnn.training import TrainSettings, train_snn

    g = tiny_graph()
    assert synop_weights(g)["n1"] > 0.9
    torch.manual_seed(0)
    images = torch.rand(96, 1, 6, 6)
    teacher = GraphANN(g.copy()).eval()
    rates = {}
    for weighting in ("layers", "synops"):
        s = TrainSettings(epochs=3, timesteps=4, batch_size=16, lr=0.02, kd_alpha=1.0, rate_reg=2.0,
                          rate_weighting=weighting, augment=False)
        out = train_snn(g, teacher, images, torch.zeros(96, dtype=torch.long), s, tmp_path / f"{weighting}.ckpt",
                        progress=False)
        _, spikes = SpikingNetwork(out)(images, timesteps=4, return_spikes=True)
        rates[weighting] = {k: float(v.float().mean()) for k, v in spikes.items()}
    assert rates["synops"]["n1"] < rates["layers"]["n1"] and rates["synops"]["n2"] > rates["layers"]["n2"], rates
    with pytest.raises(PrivsnnError, match="--rate-weighting"):
        TrainSettings(rate_weighting="energy").validate()
