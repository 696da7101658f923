"""The op counter against brute-force counts (every input element, every weight) on tiny networks."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from privatesnn.graph import Add, AvgPool, Conv, Flatten, Graph, Input, Linear, Neuron
from privatesnn.ops_count import count_ann, count_snn, fanout_maps, is_binary, synop_weights, weighted_rate
from privatesnn.snn import SpikingNetwork, _normalize


def _graph(nodes, meta_c: int = 1) -> Graph:
    return Graph(nodes={n.name: n for n in nodes}, output=nodes[-1].name,
                 meta={"mean": [0.0] * meta_c, "std": [1.0] * meta_c, "num_classes": nodes[-1].weight.shape[0]})


def _w(gen, *shape, zero_frac=0.3, scale=0.6, shift=0.15):
    w = (torch.rand(*shape, generator=gen) - 0.5 + shift) * 2 * scale
    return w * (torch.rand(*shape, generator=gen) > zero_frac)


# --- brute force ---------------------------------------------------------------------------------

def brute_conv(x: torch.Tensor, w: torch.Tensor, stride, padding, groups: int = 1) -> tuple[float, float]:
    """(effective, dense) ops for x (S, N, C, H, W): loop over every input element and weight
    (with ``groups``, input channel c reaches only the output channels of its group)."""
    S, N, C, H, W = x.shape
    co_n, ci_n, kh_n, kw_n = w.shape
    ci_per, co_per = C // groups, co_n // groups
    Ho = (H + 2 * padding[0] - kh_n) // stride[0] + 1
    Wo = (W + 2 * padding[1] - kw_n) // stride[1] + 1
    eff = dense = 0
    for s, n, c, h, ww in itertools.product(range(S), range(N), range(C), range(H), range(W)):
        active = x[s, n, c, h, ww] != 0
        g = c // ci_per
        for co, kh, kw in itertools.product(range(g * co_per, (g + 1) * co_per), range(kh_n), range(kw_n)):
            oh, rh = divmod(h + padding[0] - kh, stride[0])
            ow, rw = divmod(ww + padding[1] - kw, stride[1])
            if rh or rw or not (0 <= oh < Ho and 0 <= ow < Wo):
                continue
            dense += 1
            if active and w[co, c - g * ci_per, kh, kw] != 0:
                eff += 1
    return float(eff), float(dense)


def brute_linear(x: torch.Tensor, w: torch.Tensor) -> tuple[float, float]:
    x = x.reshape(-1, x.shape[-1])
    eff = dense = 0
    for row in x:
        for j in range(w.shape[1]):
            for i in range(w.shape[0]):
                dense += 1
                eff += int(row[j] != 0 and w[i, j] != 0)
    return float(eff), float(dense)


def brute_pool(x: torch.Tensor, k, s, p) -> float:
    S, N, C, H, W = x.shape
    Ho, Wo = (H + 2 * p[0] - k[0]) // s[0] + 1, (W + 2 * p[1] - k[1]) // s[1] + 1
    adds = 0
    for oh, ow in itertools.product(range(Ho), range(Wo)):
        for dh, dw in itertools.product(range(k[0]), range(k[1])):
            h, ww = oh * s[0] - p[0] + dh, ow * s[1] - p[1] + dw
            if 0 <= h < H and 0 <= ww < W:
                adds += int((x[:, :, :, h, ww] != 0).sum())
    return float(adds)


def layer_inputs(graph: Graph, x: torch.Tensor, T: int, seed: int = 0) -> tuple[dict, dict]:
    """Re-run the SNN and rebuild every synaptic layer's input (S, N, ...) from the recorded spikes."""
    torch.manual_seed(seed)
    net = SpikingNetwork(graph, T).eval()
    recorded = {}
    encode = net.encode

    def spy(xx, t):  # keep the encoded input (rate-coded spikes are random)
        recorded["enc"] = encode(xx, t)
        return recorded["enc"]

    net.encode = spy
    with torch.no_grad():
        _, spikes = net.run(x, T, return_spikes=True)
    enc = recorded["enc"]
    if graph.input.encoding == "direct":
        assert torch.equal(enc, _normalize(graph, x).unsqueeze(0))

    def value(name):
        node = graph[name]
        if isinstance(node, Input):
            return enc
        if isinstance(node, Neuron):
            return spikes[name]
        if isinstance(node, Flatten):
            v = value(node.inputs[0])
            return v.reshape(v.shape[0], v.shape[1], -1)
        if isinstance(node, AvgPool):
            v = value(node.inputs[0])
            return F.avg_pool2d(v.flatten(0, 1), node.kernel, node.stride, node.padding).reshape(
                v.shape[0], v.shape[1], -1, *F.avg_pool2d(v[0], node.kernel, node.stride, node.padding).shape[-2:])
        raise AssertionError(f"no brute-force rule for {node.TYPE}")

    return {n.name: value(n.inputs[0]) for n in graph if isinstance(n, (Conv, Linear, AvgPool))}, spikes


def check_against_brute_force(graph: Graph, x: torch.Tensor, T: int):
    counts = count_snn(graph, x, T)[T]
    inputs, spikes = layer_inputs(graph, x, T)
    N = x.shape[0]
    by_name = {l.name: l for l in counts.layers}
    for node in graph:
        if not isinstance(node, (Conv, Linear, AvgPool)):
            continue
        inp = inputs[node.name]
        reps = T if inp.shape[0] == 1 else 1  # constant direct input stands for T steps
        got = by_name[node.name]
        if isinstance(node, AvgPool):
            exp = brute_pool(inp, node.kernel, node.stride, node.padding) * reps / N
            assert got.eff_acs == pytest.approx(exp), node.name
            continue
        if isinstance(node, Conv):
            eff, dense = brute_conv(inp, node.weight, node.stride, node.padding, node.groups)
        else:
            eff, dense = brute_linear(inp, node.weight)
        eff, dense = eff * reps / N, dense * reps / N
        if not node.trainable:  # fixed routing: only its nonzero entries are synapses
            dense = brute_conv(torch.ones_like(inp), node.weight, node.stride, node.padding, node.groups)[0] * reps / N
        binary = bool(((inp == 0) | (inp.abs() == 1)).all())
        assert got.dense == pytest.approx(dense), node.name
        assert (got.eff_acs if binary else got.eff_macs) == pytest.approx(eff), node.name
        assert (got.eff_macs if binary else got.eff_acs) == 0.0, node.name
        assert got.input == ("spikes" if binary else "analog"), node.name
        assert got.input_events == pytest.approx(float((inp != 0).sum()) * reps / N)
        assert eff > 0, f"{node.name}: the test network should be active"
    for n in counts.neurons:
        if n.readout:
            assert n.updates == math.prod(graph[n.name].shape) * T  # a Linear, or a sum of them
            continue
        assert n.spikes == pytest.approx(float(spikes[n.name].sum()) / N)
        assert n.updates == pytest.approx(spikes[n.name][0, 0].numel() * T)
    return counts


# --- tests ---------------------------------------------------------------------------------------

def test_binary_rule():
    assert is_binary(torch.tensor([0.0, 1.0, -1.0, 1.0]))
    assert not is_binary(torch.tensor([0.0, 0.5]))
    assert is_binary(torch.zeros(3))


def test_fanout_exact_at_borders():
    conv = torch.nn.Conv2d(1, 1, 3, stride=2, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    eff, dense = fanout_maps(conv, (1, 5, 5))
    # output 3x3 at rows/cols {0,2,4} +- 1: corner input (0,0) reaches only output (0,0)
    assert eff[0, 0, 0] == 1 and eff[0, 1, 1] == 4 and eff[0, 2, 2] == 1 and eff[0, 1, 2] == 2
    assert torch.equal(eff, dense)
    # every real synapse is counted once: sum of fan-outs == sum over outputs of in-bounds taps
    ones = torch.ones(1, 1, 5, 5)
    assert float(dense.sum()) == float(F.conv2d(ones, torch.ones(1, 1, 3, 3), stride=2, padding=1).sum())


def test_hand_computed_network():
    """x = [1, 0, 0.5] -> Linear diag(2,1,1) -> IF (v0 = 0) -> Linear [[1,0,1],[0,1,2]], T = 6.

    Currents [2, 0, 0.5]: neuron 0 spikes at every step (6), neuron 1 never, neuron 2 at steps 3 and
    6 (2). First layer: 2 nonzero analog inputs x 1 nonzero weight each x 6 steps = 12 MACs (dense
    9 x 6 = 54). Output: neuron 0's spikes reach 1 nonzero weight, neuron 2's reach 2: 6*1 + 2*2 =
    10 ACs (dense 3 x 2 x 6 = 36)."""
    g = _graph([
        Input("x", [], shape=(1, 1, 3)),
        Flatten("f", ["x"]),
        Linear("l1", ["f"], weight=torch.diag(torch.tensor([2.0, 1.0, 1.0])), bias=None),
        Neuron("n1", ["l1"], threshold=1.0, v_init=0.0),
        Linear("out", ["n1"], weight=torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 2.0]]), bias=None),
    ])
    x = torch.tensor([1.0, 0.0, 0.5]).view(1, 1, 1, 3)
    c = count_snn(g, x, 6)[6]
    l1, out = c.layers
    assert (l1.eff_macs, l1.eff_acs, l1.dense, l1.input, l1.constant_input) == (12, 0, 54, "analog", True)
    assert (out.eff_acs, out.eff_macs, out.dense, out.input) == (10, 0, 36, "spikes")
    n1, ro = c.neurons
    assert (n1.spikes, n1.updates, n1.active_updates) == (8, 18, 12)
    assert ro.readout and ro.updates == 12
    t = c.totals()
    assert (t["synops"], t["eff_macs"], t["eff_acs"], t["dense"], t["spikes"]) == (22, 12, 10, 90, 8)
    # prefixes of one run: T = 3 -> neuron 0 spikes 3 times, neuron 2 once
    c3 = count_snn(g, x, [3, 6])[3]
    assert c3.layers[0].eff_macs == 6 and c3.layers[1].eff_acs == 3 * 1 + 1 * 2 and c3.neurons[0].spikes == 4
    ann = count_ann(g, x)
    assert [(l.eff_macs, l.dense) for l in ann.layers] == [(2, 9), (3, 6)]
    assert ann.neurons == [{"name": "n1", "neurons": 3, "nonzero": 2.0}]


def test_conv_padding_stride_pool_linear_brute_force():
    gen = torch.Generator().manual_seed(1)
    g = _graph([
        Input("x", [], shape=(2, 5, 5)),
        Conv("c1", ["x"], weight=_w(gen, 3, 2, 3, 3), bias=torch.full((3,), 0.2), padding=(1, 1)),
        Neuron("n1", ["c1"], threshold=1.0),
        Conv("c2", ["n1"], weight=_w(gen, 4, 3, 3, 3), bias=None, stride=(2, 2), padding=(1, 1)),
        Neuron("n2", ["c2"], threshold=1.0),
        AvgPool("p", ["n2"], kernel=(2, 2), stride=(1, 1)),
        Flatten("f", ["p"]),
        Linear("fc", ["f"], weight=_w(gen, 5, 16), bias=torch.zeros(5)),
        Neuron("n3", ["fc"], threshold=1.0),
        Linear("out", ["n3"], weight=_w(gen, 3, 5), bias=None),
    ], meta_c=2)
    x = torch.rand(2, 2, 5, 5, generator=gen)
    c = check_against_brute_force(g, x, T=4)
    kinds = {l.name: l.input for l in c.layers}
    assert kinds["c1"] == "analog" and kinds["c2"] == "spikes" and kinds["fc"] == "analog"  # pooled spikes: MACs
    c1 = c.layers[0]
    assert c1.constant_input and c1.bias_adds == 3 * 5 * 5 * 4


def test_grouped_and_depthwise_conv_brute_force():
    gen = torch.Generator().manual_seed(3)
    g = _graph([
        Input("x", [], shape=(2, 5, 5)),
        Conv("c1", ["x"], weight=_w(gen, 4, 2, 3, 3), bias=None, padding=(1, 1)),
        Neuron("n1", ["c1"], threshold=1.0),
        Conv("dw", ["n1"], weight=_w(gen, 4, 1, 3, 3), bias=None, padding=(1, 1), groups=4),
        Neuron("n2", ["dw"], threshold=1.0),
        Conv("gc", ["n2"], weight=_w(gen, 6, 2, 3, 3), bias=None, stride=(2, 2), padding=(1, 1), groups=2),
        Neuron("n3", ["gc"], threshold=1.0),
        Flatten("f", ["n3"]),
        Linear("out", ["f"], weight=_w(gen, 3, 6 * 3 * 3), bias=None),
    ], meta_c=2)
    x = torch.rand(2, 2, 5, 5, generator=gen)
    check_against_brute_force(g, x, T=3)


def test_residual_add_brute_force():
    gen = torch.Generator().manual_seed(2)
    g = _graph([
        Input("x", [], shape=(1, 4, 4)),
        Conv("c1", ["x"], weight=_w(gen, 2, 1, 3, 3), bias=None, padding=(1, 1)),
        Neuron("n1", ["c1"], threshold=1.0),
        Conv("c2", ["n1"], weight=_w(gen, 2, 2, 3, 3), bias=None, padding=(1, 1)),
        Conv("sc", ["n1"], weight=torch.eye(2).view(2, 2, 1, 1) * 0.7, bias=None, trainable=False),
        Add("add", ["c2", "sc"]),
        Neuron("n2", ["add"], threshold=1.0),
        Flatten("f", ["n2"]),
        Linear("out", ["f"], weight=_w(gen, 3, 32), bias=None),
    ])
    x = torch.rand(3, 1, 4, 4, generator=gen)
    c = check_against_brute_force(g, x, T=5)
    by = {l.name: l for l in c.layers}
    # the 1x1 identity shortcut: one accumulate per input spike; its zero weights are not synapses
    assert by["sc"].routing and by["sc"].eff_acs == pytest.approx(by["sc"].input_events)
    assert by["sc"].dense == 2 * 4 * 4 * 5
    # in the ANN the shortcut is an addition per element, not 2 MACs per element
    ann = {l.name: l for l in count_ann(g, x).layers}
    assert ann["sc"].eff_macs == 0 and ann["sc"].dense == 2 * 4 * 4 and ann["sc"].eff_acs <= 32
    assert count_ann(g, x).totals()["dense_macs"] == sum(l.dense for l in ann.values() if not l.routing)


def test_synop_weights_are_each_layers_share_of_the_counters_dense_synapses():
    """The spike-rate penalty's synaptic-op weights: each neuron layer's share of the dense synapses
    its spikes reach (the counter's dense count of the layers it feeds, zero shortcut weights left
    out), summing to 1; the weighted rate is the share of those synapses a step uses."""
    gen = torch.Generator().manual_seed(2)
    g = _graph([
        Input("x", [], shape=(1, 4, 4)),
        Conv("c1", ["x"], weight=_w(gen, 2, 1, 3, 3), bias=None, padding=(1, 1)),
        Neuron("n1", ["c1"], threshold=1.0),
        Conv("c2", ["n1"], weight=_w(gen, 2, 2, 3, 3, zero_frac=0.0), bias=None, padding=(1, 1)),
        Conv("sc", ["n1"], weight=torch.eye(2).view(2, 2, 1, 1) * 0.7, bias=None, trainable=False),
        Add("add", ["c2", "sc"]),
        Neuron("n2", ["add"], threshold=1.0),
        Flatten("f", ["n2"]),
        Linear("out", ["f"], weight=_w(gen, 3, 32, zero_frac=0.0), bias=None),
    ])
    by = {l.name: l for l in count_snn(g, torch.rand(2, 1, 4, 4, generator=gen), 3)[3].layers}
    dense = {"n1": (by["c2"].dense + by["sc"].dense) / 3, "n2": by["out"].dense / 3}
    w = synop_weights(g)
    assert w == pytest.approx({k: v / sum(dense.values()) for k, v in dense.items()})
    assert sum(w.values()) == pytest.approx(1.0) and w["n1"] > 3 * w["n2"]
    g["c2"].weight[0] = 0.0  # a zero weight is no synapse (as the counter's effective fan-out)
    assert synop_weights(g)["n1"] < w["n1"]
    rates = {"n1": torch.tensor(0.2), "n2": torch.tensor(0.6)}
    assert float(weighted_rate(rates)) == pytest.approx(0.4)  # no weights: the layers' mean
    assert float(weighted_rate(rates, w)) == pytest.approx(0.2 * w["n1"] + 0.6 * w["n2"])


def test_rate_coded_input_counts_spikes_as_acs():
    gen = torch.Generator().manual_seed(3)
    g = _graph([
        Input("x", [], shape=(1, 4, 4), encoding="rate", input_scale=1.0),
        Conv("c1", ["x"], weight=_w(gen, 2, 1, 3, 3), bias=None, padding=(1, 1), stride=(2, 2)),
        Neuron("n1", ["c1"], threshold=1.0),
        Flatten("f", ["n1"]),
        Linear("out", ["f"], weight=_w(gen, 2, 8), bias=None),
    ])
    x = torch.rand(2, 1, 4, 4, generator=gen)
    c = check_against_brute_force(g, x, T=6)
    assert c.layers[0].input == "spikes" and c.layers[0].eff_macs == 0 and not c.layers[0].constant_input
    assert c.input_spikes == pytest.approx(c.layers[0].input_events) and c.input_spikes > 0


def test_ann_counts_dense_and_effective():
    gen = torch.Generator().manual_seed(4)
    w1 = _w(gen, 3, 1, 3, 3)
    g = _graph([
        Input("x", [], shape=(1, 5, 5)),
        Conv("c1", ["x"], weight=w1, bias=torch.zeros(3), padding=(1, 1), stride=(2, 2)),
        Neuron("n1", ["c1"]),
        Flatten("f", ["n1"]),
        Linear("out", ["f"], weight=_w(gen, 2, 27), bias=None),
    ])
    x = torch.rand(2, 1, 5, 5, generator=gen)
    ann = count_ann(g, x)
    c1, out = ann.layers
    eff, dense = brute_conv(x.unsqueeze(0), w1, (2, 2), (1, 1))
    assert (c1.eff_macs, c1.dense, c1.eff_acs) == (pytest.approx(eff / 2), dense / 2, 0)
    with torch.no_grad():
        h = torch.relu(F.conv2d(x, w1, torch.zeros(3), 2, 1)).flatten(1)
    e2, d2 = brute_linear(h, g["out"].weight)
    assert (out.eff_macs, out.dense) == (pytest.approx(e2 / 2), d2 / 2)
    assert c1.bias_adds == 27 and ann.totals()["dense_macs"] == c1.dense + out.dense


def test_accuracy_and_bad_images():
    g = _graph([
        Input("x", [], shape=(1, 1, 3)),
        Flatten("f", ["x"]),
        Linear("l1", ["f"], weight=torch.eye(3) * 2, bias=None),
        Neuron("n1", ["l1"]),
        Linear("out", ["n1"], weight=torch.eye(3), bias=None),
    ])
    x = torch.tensor([[1.0, 0, 0], [0, 0, 1.0]]).view(2, 1, 1, 3)
    c = count_snn(g, x, 4, labels=torch.tensor([0, 1]))[4]
    assert c.accuracy == 0.5
    from privatesnn.errors import PrivsnnError

    with pytest.raises(PrivsnnError, match="shape"):
        count_snn(g, torch.rand(2, 1, 3, 3), 4)
