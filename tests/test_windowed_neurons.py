"""Windowed IF neurons (integrate the whole window, then fire; binary spikes): their dynamics, the
training and inference paths, the simulators, the op counter and the commands that make them."""

from __future__ import annotations

import json

import pytest
import torch

from privatesnn.cli import main
from privatesnn.conversion import ConversionSettings, convert
from privatesnn.graph import Graph, GraphError
from privatesnn.models import load_model
from privatesnn.models.registry import create_model
from privatesnn.neurons import SpikingNeuron, neuron_step, windowed_spikes
from privatesnn.ops_count import count_snn
from privatesnn.snn import SpikingNetwork
from privatesnn.streaming import run_streaming

from helpers import randomize_bn


def test_spikes_are_the_step_rule_run_after_the_whole_window_and_do_not_depend_on_the_order():
    """Integrate every input first, then run ``v > theta: s = 1, v -= theta`` for T steps with no input:
    the spikes are those of :func:`windowed_spikes`, binary, the first ``count`` steps, and the count
    is the rounded total input clamped to [0, T], whatever the order the input came in (an IF neuron
    depends on the order). Inputs on a 1/64 grid and a threshold of 49/64 keep the arithmetic exact
    and off the ties."""
    gen = torch.Generator().manual_seed(0)
    th, T, n = 49 / 64, 8, 4000
    cur = torch.randint(-48, 49, (T, n), generator=gen) / 64.0
    got = SpikingNeuron(th, windowed=True)(cur, timesteps=T)
    v = 0.5 * th + cur.sum(0)
    steps = []
    for _ in range(T):
        z, v = neuron_step(torch.zeros(n), v, th)
        steps.append(z)
    assert torch.equal(got, torch.stack(steps))
    assert set(got.unique().tolist()) <= {0.0, 1.0}
    count = got.sum(0)
    assert torch.equal(count, torch.floor(0.5 + cur.sum(0) / th).clamp(0, T))
    assert torch.equal(got, (torch.arange(T).view(T, 1) < count).float())  # the first `count` steps spike
    for order in (torch.arange(T - 1, -1, -1), torch.randperm(T, generator=gen)):
        assert torch.equal(SpikingNeuron(th, windowed=True)(cur[order], timesteps=T), got)
    assert not torch.equal(SpikingNeuron(th)(cur, timesteps=T).sum(0), count)  # an IF neuron does depend on it
    # a constant (direct) current stands for T equal steps
    one = cur[:1]
    assert torch.equal(SpikingNeuron(th, windowed=True)(one, timesteps=T),
                       SpikingNeuron(th, windowed=True)(one.expand(T, n), timesteps=T))


def test_training_and_inference_paths_agree_and_gradients_flow():
    gen = torch.Generator().manual_seed(1)
    cur = torch.randn(6, 50, generator=gen) * 0.8
    cell = SpikingNeuron(0.9, windowed=True)
    with torch.no_grad():
        fast = cell(cur, timesteps=6)
    x = cur.clone().requires_grad_(True)
    slow = cell(x, timesteps=6)
    assert torch.equal(slow.detach(), fast)
    slow.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    cell.make_trainable()  # learnt threshold and initial membrane get gradients too
    out = cell(cur, timesteps=6)
    assert torch.equal(out.detach(), fast)
    out.sum().backward()
    assert cell.log_threshold.grad.abs() > 0 and cell.v_init_fraction.grad.abs() > 0
    with pytest.raises(ValueError, match="input steps"):
        windowed_spikes(cur[:3], 0.5, 0.9, 6)



def test_the_spike_counts_surrogate_slope_is_alpha_per_threshold_inside_the_staircase():
    """The count's surrogate is T triangles one threshold apart (height alpha, half-width one): its
    slope is alpha / threshold wherever the total input lies inside the staircase, so alpha = 1 is
    the QCFS staircase's straight-through slope and the default 0.3 shrinks every windowed layer's
    gradient to 0.3 of it (bench/surrogate_gradients.py measures what that does over 19 layers)."""
    th, T = 0.8, 6
    totals = torch.linspace(1.2, T - 0.2, 41) * th  # the window's summed input, inside the staircase
    for alpha in (0.3, 1.0):
        per_step = (totals / T).requires_grad_(True)  # a constant current: one step stands for T equal ones
        count = windowed_spikes(per_step.unsqueeze(0), 0.0, th, T, alpha=alpha).sum(0)
        count.sum().backward()
        assert torch.allclose(per_step.grad, torch.full_like(per_step, alpha * T / th), rtol=1e-5)
        outside = (torch.tensor([-2.0, T + 2.0]) * th / T).requires_grad_(True)  # below 0 or above T: flat
        windowed_spikes(outside.unsqueeze(0), 0.0, th, T, alpha=alpha).sum().backward()
        assert torch.equal(outside.grad, torch.zeros(2))
def test_windowed_neurons_must_be_if_neurons_and_the_graph_checks_it():
    for kwargs in ({"reset": "zero"}, {"leak": 0.9}, {"signed": True}):
        with pytest.raises(ValueError, match="windowed"):
            SpikingNeuron(1.0, windowed=True, **kwargs)


def _resnet(tmp_path, **settings):
    net = randomize_bn(create_model("resnet20"))
    path = tmp_path / "resnet20.pt"
    torch.save(net.state_dict(), path)
    loaded = load_model(f"resnet20:{path}")
    images = torch.rand(16, *loaded.input_shape, generator=torch.Generator().manual_seed(0))
    graph = convert(loaded, images, ConversionSettings(timesteps=4, **settings), progress=False)
    return graph, loaded


def test_a_windowed_snn_at_t_steps_is_the_qcfs_network_with_t_levels(tmp_path):
    """With windowed neurons there is no temporal error left: the SNN's logits at T are those of the
    QCFS staircase with L = T levels (``rate_limit(levels=T)``), through residual blocks."""
    graph, loaded = _resnet(tmp_path, windowed=True)
    assert graph.neurons() and all(n.windowed for n in graph.neurons())
    again = Graph.from_dict(graph.to_dict())
    assert all(n.windowed for n in again.neurons())
    # float64: the two sum in different orders, and in float32 a total within rounding of a step of the
    # staircase can round either way (one spike more or less moves a logit by a weight)
    net = SpikingNetwork(graph).double().eval()
    x = torch.rand(8, *loaded.input_shape, generator=torch.Generator().manual_seed(1)).double()
    with torch.no_grad():
        for T in (2, 4, 8):
            assert torch.allclose(net(x, T), net.rate_limit(x, levels=T), rtol=1e-9, atol=1e-9), T
        x = x.float()
        plain = SpikingNetwork(_resnet(tmp_path)[0]).eval()
        assert not torch.allclose(plain(x, 4), plain.rate_limit(x, levels=4), atol=1e-2)  # IF neurons: temporal error
    d = graph.to_dict()
    node = next(nd for nd in d["nodes"] if nd["type"] == "neuron")
    node["leak"] = 0.9
    with pytest.raises(GraphError, match=f"neuron {node['name']!r}: windowed"):
        Graph.from_dict(d)


def test_over_time_streaming_and_counting_run_each_t_on_its_own(tmp_path):
    """A windowed layer's spikes depend on T (not causal): logits over several T, the streaming
    simulator and the op counter give what a T-step run gives, and a windowed neuron updates 2T times."""
    graph, loaded = _resnet(tmp_path, windowed=True)
    net = SpikingNetwork(graph).eval()
    x = torch.rand(3, *loaded.input_shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        over = net.logits_over_time(x, [2, 4])
        for T in (2, 4):
            assert torch.equal(over[T], net(x, T))
        ref_out, ref = net.run(x, 4, return_spikes=True)
        got: dict[str, torch.Tensor] = {}
        out = run_streaming(net, x, 4, 1, observer=lambda name, t0, s: got.__setitem__(name, s.clone()))
    assert torch.equal(out, ref_out) and all(torch.equal(got[k], ref[k]) for k in ref)
    counts = count_snn(graph, x, [2, 4], batch_size=3)
    for T in (2, 4):
        alone = count_snn(graph, x, [T], batch_size=3)[T]
        assert counts[T].totals() == alone.totals()
        neurons = [n for n in alone.neurons if not n.readout]
        assert all(n.updates == 2 * T * n.neurons for n in neurons)
    _, spikes4 = net.run(x, 4, return_spikes=True)
    assert counts[4].totals()["spikes"] == pytest.approx(sum(float(s.sum()) for s in spikes4.values()) / 3, rel=1e-6)


def test_convert_and_train_commands_make_windowed_neurons(tmp_path, capsys):
    out = tmp_path / "snn.pt"
    synth = tmp_path / "synth.npz"
    assert main(["synthesize", "--model", "digits", "--num", "40", "--iterations", "5", "--batch-size", "20",
                 "--out", str(synth)]) == 0
    assert main(["convert", "--model", "digits", "--synthetic", str(synth), "--timesteps", "4", "--windowed",
                 "--out", str(out)]) == 0
    graph = json.loads(json.dumps(torch.load(out, weights_only=True)["graph"], default=str))
    assert all(nd["windowed"] for nd in graph["nodes"] if nd["type"] == "neuron")
    capsys.readouterr()
    bad = tmp_path / "bad.pt"
    for extra in (["--reset", "zero"], ["--signed"], ["--leak", "0.9"]):
        assert main(["convert", "--model", "digits", "--synthetic", str(synth), "--windowed", *extra,
                     "--out", str(bad)]) == 2
        assert "--windowed neurons are IF neurons" in capsys.readouterr().err and not bad.exists()
    assert main(["train", "--snn", str(out), "--teacher", "digits", "--synthetic", str(synth), "--epochs", "1",
                 "--reset", "zero", "--out", str(bad)]) == 2
    assert "windowed" in capsys.readouterr().err and not bad.exists()
    trained = tmp_path / "trained.pt"
    assert main(["train", "--snn", str(out), "--teacher", "digits", "--synthetic", str(synth), "--epochs", "1",
                 "--timesteps", "4", "--batch-size", "20", "--out", str(trained)]) == 0
    graph = json.loads(json.dumps(torch.load(trained, weights_only=True)["graph"], default=str))
    assert all(nd["windowed"] for nd in graph["nodes"] if nd["type"] == "neuron")
    plain = tmp_path / "plain.pt"
    assert main(["convert", "--model", "digits", "--synthetic", str(synth), "--timesteps", "4", "--signed",
                 "--out", str(plain)]) == 0
    assert main(["train", "--snn", str(plain), "--teacher", "digits", "--synthetic", str(synth), "--epochs", "1",
                 "--windowed", "--out", str(bad)]) == 2
    assert "signed" in capsys.readouterr().err and not bad.exists()
