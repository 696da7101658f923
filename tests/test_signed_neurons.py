"""Signed neurons (a -1 spike takes back an early +1): their dynamics, the training and inference
paths, the streaming simulator, the op counter and the commands that make them."""

from __future__ import annotations

import json

import pytest
import torch

from privatesnn.cli import main
from privatesnn.conversion import ConversionSettings, convert
from privatesnn.graph import Graph, GraphError
from privatesnn.models import load_model
from privatesnn.models.registry import create_model
from privatesnn.neurons import SpikingNeuron, signed_neuron_step
from privatesnn.ops_count import count_snn
from privatesnn.snn import SpikingNetwork
from privatesnn.streaming import run_streaming

from helpers import randomize_bn


def test_a_negative_spike_takes_back_an_early_positive_one():
    """Input +1 then -1 (threshold 1, v_init 1/2): an IF neuron keeps the spike of the first step, a
    signed neuron takes it back (net 0 spikes = floor(1/2 + 0)), and fires no -1 before a +1."""
    cur = torch.tensor([1.0, -1.0, 0.0, -1.0]).view(4, 1)
    plain = SpikingNeuron(1.0)(cur, timesteps=4)
    signed = SpikingNeuron(1.0, signed=True)(cur, timesteps=4)
    assert plain.flatten().tolist() == [1.0, 0.0, 0.0, 0.0]
    assert signed.flatten().tolist() == [1.0, -1.0, 0.0, 0.0]


def test_net_count_is_the_rounded_total_input_whatever_the_order():
    """For inputs |I| < threshold, the net count after T steps is max(0, floor(v_init + sum(I)/theta)):
    it does not depend on the order of the inputs (the unevenness error is gone). Inputs on a 1/64
    grid keep the float arithmetic exact, and a threshold of 49/64 keeps the membrane off the
    thresholds' ties (v = (k + 1/2) / 64)."""
    gen = torch.Generator().manual_seed(0)
    th, T, n = 49 / 64, 8, 4000
    cur = (torch.randint(-48, 49, (T, n), generator=gen) / 64.0)  # |I| < 49/64
    want = torch.floor(0.5 + cur.sum(0) / th).clamp(min=0)
    for order in (torch.arange(T), torch.arange(T - 1, -1, -1), torch.randperm(T, generator=gen)):
        got = SpikingNeuron(th, signed=True)(cur[order], timesteps=T).sum(0)
        assert torch.equal(got, want)
    plain = SpikingNeuron(th)(cur, timesteps=T).sum(0)
    assert not torch.equal(plain, want)  # an IF neuron does depend on the order


def test_training_and_inference_paths_agree_and_gradients_flow():
    gen = torch.Generator().manual_seed(1)
    cur = torch.randn(6, 50, generator=gen) * 0.8
    cell = SpikingNeuron(0.9, signed=True)
    with torch.no_grad():
        fast = cell(cur, timesteps=6)
    x = cur.clone().requires_grad_(True)
    slow = cell(x, timesteps=6)
    assert torch.equal(slow.detach(), fast)
    assert (fast == -1).any() and (fast == 1).any()
    slow.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_signed_step_refuses_reset_to_zero_and_the_graph_checks_it():
    with pytest.raises(ValueError, match="subtraction"):
        SpikingNeuron(1.0, reset="zero", signed=True)
    z, v, c = signed_neuron_step(torch.tensor([-0.7]), torch.tensor([0.5]), torch.tensor([1.0]), 1.0)
    assert z.item() == -1.0 and v.item() == pytest.approx(0.8) and c.item() == 0.0


def _signed_resnet(tmp_path, signed: bool = True):
    net = randomize_bn(create_model("resnet20"))
    path = tmp_path / "resnet20.pt"
    torch.save(net.state_dict(), path)
    loaded = load_model(f"resnet20:{path}")
    images = torch.rand(16, *loaded.input_shape, generator=torch.Generator().manual_seed(0))
    graph = convert(loaded, images, ConversionSettings(timesteps=4, signed=signed), progress=False)
    return graph, loaded


def test_conversion_marks_every_neuron_and_the_graph_round_trips(tmp_path):
    graph, _ = _signed_resnet(tmp_path)
    assert graph.neurons() and all(n.signed for n in graph.neurons())
    again = Graph.from_dict(graph.to_dict())
    assert all(n.signed for n in again.neurons())
    d = graph.to_dict()
    node = next(nd for nd in d["nodes"] if nd["type"] == "neuron")
    node["reset"] = "zero"
    with pytest.raises(GraphError, match=f"neuron {node['name']!r}: signed"):
        Graph.from_dict(d)


def test_streaming_gives_the_layer_by_layer_spikes_for_signed_neurons(tmp_path):
    graph, loaded = _signed_resnet(tmp_path)
    net = SpikingNetwork(graph).eval()
    x = torch.rand(3, *loaded.input_shape, generator=torch.Generator().manual_seed(1))
    T = 7
    ref_out, ref = net.run(x, T, return_spikes=True)
    assert sum(int((s == -1).sum()) for s in ref.values()) > 0  # negative spikes occur
    for chunk in (1, 3, T):
        got: dict[str, list] = {}
        out = run_streaming(net, x, T, chunk, observer=lambda name, t0, s: got.setdefault(name, []).append(s.clone()))
        for layer in ref:
            assert torch.equal(torch.cat(got[layer]), ref[layer]), (chunk, layer)
        torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-4)  # readout: GEMM rounding


def test_op_counter_counts_negative_spikes_as_events(tmp_path):
    """Every spike, +1 or -1, is one event: the counter's spikes are the sum of |s|, and the synaptic
    layers that read them count accumulates (ACs), not multiply-accumulates."""
    graph, loaded = _signed_resnet(tmp_path)
    x = torch.rand(4, *loaded.input_shape, generator=torch.Generator().manual_seed(2))
    T = 4
    _, spikes = SpikingNetwork(graph).eval().run(x, T, return_spikes=True)
    want = sum(float(s.abs().sum()) for s in spikes.values()) / 4
    assert want > sum(float(s.sum()) for s in spikes.values()) / 4  # -1s present: |s| and s differ
    counts = count_snn(graph, x, [T], batch_size=4)[T]
    assert counts.totals()["spikes"] == pytest.approx(want, rel=1e-6)
    spiking_inputs = [s for s in counts.layers if s.input != "analog"]
    assert spiking_inputs and all(s.eff_macs == 0 for s in spiking_inputs)


def test_convert_and_train_commands_make_signed_neurons(tmp_path, capsys):
    out = tmp_path / "snn.pt"
    synth = tmp_path / "synth.npz"
    assert main(["synthesize", "--model", "digits", "--num", "40", "--iterations", "5", "--batch-size", "20",
                 "--out", str(synth)]) == 0
    assert main(["convert", "--model", "digits", "--synthetic", str(synth), "--timesteps", "4", "--signed",
                 "--out", str(out)]) == 0
    graph = json.loads(json.dumps(torch.load(out, weights_only=True)["graph"], default=str))
    assert all(nd["signed"] for nd in graph["nodes"] if nd["type"] == "neuron")
    capsys.readouterr()
    bad = tmp_path / "bad.pt"
    assert main(["convert", "--model", "digits", "--synthetic", str(synth), "--signed", "--reset", "zero",
                 "--out", str(bad)]) == 2
    assert "--signed neurons reset by subtraction" in capsys.readouterr().err and not bad.exists()
    assert main(["train", "--snn", str(out), "--teacher", "digits", "--synthetic", str(synth), "--epochs", "1",
                 "--reset", "zero", "--out", str(bad)]) == 2
    assert "signed" in capsys.readouterr().err and not bad.exists()
