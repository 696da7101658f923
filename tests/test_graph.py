"""Layer graph: extraction (BN folding, residuals), serialisation, validation, conversion, neurons."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from helpers import randomize_bn as _randomize_bn
from privatesnn.conversion import ConversionSettings, ann_graph, convert
from privatesnn.data import load_data
from privatesnn.errors import ArtifactError, UnsupportedLayerError
from privatesnn.extract import extract_graph
from privatesnn.graph import (NODE_TYPES, Add, AvgPool, Conv, Flatten, Graph, GraphError, Input, Linear,
                              MaxPool, Neuron)
from privatesnn.models import Normalize, create_model, model_cfg
from privatesnn.neurons import SpikingMaxPool, SpikingNeuron, neuron_step
from privatesnn.snn import GraphANN, SpikingNetwork




def _extract(name: str):
    """(graph, reference module on pixels in [0, 1]) for a randomly initialised registry model."""
    cfg = model_cfg(name)
    net = _randomize_bn(create_model(name))
    graph = extract_graph(net, cfg.input_shape, {"mean": list(cfg.mean), "std": list(cfg.std)})
    return graph, nn.Sequential(Normalize(cfg.mean, cfg.std), net).eval()


@pytest.fixture(scope="module")
def graphs():
    torch.manual_seed(0)
    return {name: _extract(name) for name in ("digits_cnn", "resnet20", "vgg11")}


# --------------------------------------------------------------------------- extraction

def test_digits_ann_graph_reproduces_the_model(digits_model):
    graph = ann_graph(digits_model)
    x = load_data("digits").x[:64]
    with torch.no_grad():
        ref = digits_model.module()(x)
        got = GraphANN(graph).eval()(x)
    assert (ref - got).abs().max() < 1e-4
    assert graph.is_sequential()
    assert graph.meta["num_classes"] == 10 and graph.meta["model"]["arch"] == "digits_cnn"


@pytest.mark.parametrize("name", ["digits_cnn", "resnet20", "vgg11"])
def test_extracted_graph_equals_ann(name, graphs):
    graph, ref_module = graphs[name]
    cfg = model_cfg(name)
    x = torch.rand(4, *cfg.input_shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = ref_module(x)
        got = GraphANN(graph).eval()(x)
    assert got.shape == ref.shape == (4, cfg.num_classes)
    assert (ref - got).abs().max() < 1e-4
    # BatchNorm was folded away: no node carries it, and the graph ends in the logits layer
    assert isinstance(graph[graph.output], Linear)


def test_resnet20_graph_structure(graphs):
    graph, _ = graphs["resnet20"]
    assert not graph.is_sequential()
    adds = [n for n in graph if isinstance(n, Add)]
    assert len(adds) == 9  # 3 stages x 3 basic blocks
    routing = []
    for a in adds:
        assert len(a.inputs) == 2
        kinds = [graph[s] for s in a.inputs]
        assert all(isinstance(k, Conv) for k in kinds), [type(k).__name__ for k in kinds]
        fixed = [k for k in kinds if not k.trainable]
        assert len(fixed) == 1  # exactly one fixed shortcut per block
        routing += fixed
    for r in routing:
        assert r.weight.shape[2:] == (1, 1) and r.bias is None
        assert set(r.weight.unique().tolist()) <= {0.0, 1.0}
    strided = [r for r in routing if r.stride == (2, 2)]
    assert len(strided) == 2  # the two option-A downsampling shortcuts
    assert {tuple(r.weight.shape[:2]) for r in strided} == {(32, 16), (64, 32)}
    # the trainable convs are the 19 of the network
    assert sum(1 for n in graph if isinstance(n, Conv) and n.trainable) == 19
    assert len(graph.neurons()) == 19


def test_vgg11_graph_has_maxpool(graphs):
    graph, _ = graphs["vgg11"]
    assert sum(isinstance(n, MaxPool) for n in graph) == 5
    assert graph.is_sequential()


class _WithGELU(nn.Module):
    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(64, 16)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(self.flatten(x))))


class _WithSigmoid(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 16)
        self.fc2 = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc2(torch.sigmoid(self.fc1(torch.flatten(x, 1))))


class _WithLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(8, 8, batch_first=True)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        y, _ = self.rnn(x)  # x: (N, 8, 8) sequences
        return self.fc(torch.flatten(y, 1))


@pytest.mark.parametrize("net, shape, words", [
    (_WithGELU(), (1, 8, 8), ["'act'", "GELU"]),
    (_WithSigmoid(), (1, 8, 8), ["sigmoid"]),
    (_WithLSTM(), (8, 8), ["'rnn'", "LSTM"]),
])
def test_unsupported_layers_are_named(net, shape, words):
    with pytest.raises(UnsupportedLayerError) as ei:
        extract_graph(net, shape)
    for w in words:
        assert w in str(ei.value)


def test_graph_must_end_in_linear():
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.ReLU())
    with pytest.raises(UnsupportedLayerError, match="must end in a Linear"):
        extract_graph(net, (1, 8, 8))


# --------------------------------------------------------------------------- serialisation and validation

def _assert_same_graph(a: Graph, b: Graph) -> None:
    assert list(a.nodes) == list(b.nodes) and a.output == b.output and a.meta == b.meta
    for na, nb in zip(a, b):
        assert type(na) is type(nb)
        da, db = na.to_dict(), nb.to_dict()
        assert da.keys() == db.keys()
        for k in da:
            if isinstance(da[k], torch.Tensor):
                assert torch.equal(da[k], db[k]), (na.name, k)
            else:
                assert da[k] == db[k], (na.name, k)


def test_round_trip_covers_every_node_type(graphs, tmp_path):
    seen = set()
    for name, (graph, _) in graphs.items():
        seen |= {n.TYPE for n in graph}
        back = Graph.from_dict(graph.to_dict())
        _assert_same_graph(graph, back)
        # through a file, loadable without unpickling code
        p = tmp_path / f"{name}.pt"
        torch.save(graph.to_dict(), p)
        again = Graph.from_dict(torch.load(p, weights_only=True), str(p))
        _assert_same_graph(graph, again)
        x = torch.rand(2, *graph.input.shape, generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            assert torch.equal(GraphANN(graph)(x), GraphANN(again)(x))
        _assert_same_graph(graph, graph.copy())
    assert seen == set(NODE_TYPES), set(NODE_TYPES) - seen


def test_from_dict_rejects_foreign_data():
    with pytest.raises(ArtifactError, match="not a privsnn layer graph"):
        Graph.from_dict({"format": "something-else"})
    with pytest.raises(ArtifactError, match="unknown node type 'lstm'"):
        Graph.from_dict({"format": "privsnn-graph/1", "output": "x",
                         "nodes": [{"type": "lstm", "name": "x", "inputs": []}]})


def _small_nodes(conv_in: int = 1):
    return {
        "x": Input(name="x", inputs=[], shape=(1, 8, 8)),
        "badconv": Conv(name="badconv", inputs=["x"], weight=torch.randn(4, conv_in, 3, 3), padding=(1, 1)),
        "relu": Neuron(name="relu", inputs=["badconv"]),
        "flat": Flatten(name="flat", inputs=["relu"]),
        "fc": Linear(name="fc", inputs=["flat"], weight=torch.randn(10, 4 * 8 * 8)),
    }


def test_hand_built_graph_validates_and_fills_shapes():
    g = Graph(nodes=_small_nodes(), output="fc")
    assert g["badconv"].shape == (4, 8, 8) and g["flat"].shape == (256,) and g["fc"].shape == (10,)


def test_shape_mismatch_names_the_node():
    with pytest.raises(GraphError, match="badconv") as ei:
        Graph(nodes=_small_nodes(conv_in=3), output="fc")
    assert "3 input channels" in str(ei.value)
    nodes = _small_nodes()
    nodes["fc"] = Linear(name="fc", inputs=["flat"], weight=torch.randn(10, 100))
    with pytest.raises(GraphError, match="linear 'fc'"):
        Graph(nodes=nodes, output="fc")


@pytest.mark.parametrize("mutate, pattern", [
    (lambda n: n.__setitem__("relu", Neuron(name="relu", inputs=["nope"])), "relu"),
    (lambda n: setattr(n["relu"], "threshold", 0.0), "threshold"),
    (lambda n: setattr(n["relu"], "reset", "hard"), "reset"),
    (lambda n: n["badconv"].weight.__setitem__((0, 0, 0, 0), float("nan")), "badconv"),
    (lambda n: n.__setitem__("add", Add(name="add", inputs=["flat"])), "add 'add'"),
])
def test_invalid_graphs(mutate, pattern):
    nodes = _small_nodes()
    mutate(nodes)
    with pytest.raises(GraphError, match=pattern):
        Graph(nodes=nodes, output="fc")


# --------------------------------------------------------------------------- conversion

@pytest.fixture(scope="module")
def digits_converted():
    from privatesnn.models import load_model

    loaded = load_model("digits")
    calib = load_data("digits").x[:200]  # fine in a test; production calibrates on synthetic images
    torch.manual_seed(0)
    return {enc: convert(loaded, calib, ConversionSettings(timesteps=32, encoding=enc)) for enc in ("direct", "rate")}


def _snn_accuracy(graph: Graph, ts: list[int]) -> dict[int, float]:
    data = load_data("digits")
    out = SpikingNetwork(graph).eval().logits_over_time(data.x, ts)
    return {t: float((v.argmax(1) == data.y).float().mean()) for t, v in out.items()}


def test_direct_coded_digits_snn(digits_converted):
    g = digits_converted["direct"]
    assert all(n.threshold == 1.0 for n in g.neurons())
    assert g.meta["timesteps"] == 32 and set(g.meta["activation_scales"]) == {n.name for n in g.neurons()}
    acc = _snn_accuracy(g, [32])
    assert acc[32] >= 0.95  # measured 0.987


def test_rate_coded_digits_snn(digits_converted):
    g = digits_converted["rate"]
    assert g.input.encoding == "rate" and g.input.input_scale == pytest.approx(1.0)  # mean 0.5, std 0.5: pixels map to [-1, 1]
    acc = _snn_accuracy(g, [32])
    assert acc[32] >= 0.9  # measured 0.982


@pytest.mark.parametrize("enc", ["direct", "rate"])
def test_logits_over_time_equals_forward(enc, digits_converted):
    snn = SpikingNetwork(digits_converted[enc]).eval()
    x = load_data("digits").x[:40]
    torch.manual_seed(5)
    over = snn.logits_over_time(x, [4, 12])
    for T in (4, 12):
        torch.manual_seed(5)
        with torch.no_grad():
            direct = snn(x, T)
        assert (over[T] - direct).abs().max() < 1e-5
    # and the grad path gives the same logits as the inference path
    torch.manual_seed(5)
    with_grad = snn(x, 12)
    assert with_grad.requires_grad
    assert (with_grad.detach() - over[12]).abs().max() < 1e-5


# --------------------------------------------------------------------------- neurons

def test_neuron_hand_sequence_subtract():
    cell = SpikingNeuron(threshold=1.0, leak=1.0, reset="subtract", v_init=0.0)
    cur = torch.tensor([0.6, 0.6, 0.6, 0.6]).view(4, 1, 1)
    assert cell(cur, 4).flatten().tolist() == [0.0, 1.0, 0.0, 1.0]
    v = torch.zeros(1)
    vs, zs = [], []
    for i in cur.flatten():
        z, v = neuron_step(i.view(1), v, 1.0, 1.0, "subtract")
        vs.append(float(v))
        zs.append(float(z))
    assert zs == [0.0, 1.0, 0.0, 1.0]
    assert vs == pytest.approx([0.6, 0.2, 0.8, 0.4], abs=1e-6)


def test_neuron_hand_sequence_zero_reset_leak_and_v_init():
    # v0 = 0.5 * 1; leak 0.5: v = 0.25+0.6=0.85, 0.425+0.6=1.025 -> spike, reset to 0; 0.6; 0.3+0.6=0.9
    cell = SpikingNeuron(threshold=1.0, leak=0.5, reset="zero", v_init=0.5)
    cur = torch.full((4, 1, 1), 0.6)
    assert cell(cur, 4).flatten().tolist() == [0.0, 1.0, 0.0, 0.0]
    # a constant (1, N) current is reused every step
    assert torch.equal(cell(cur[:1], 4), cell(cur, 4))


def test_threshold_is_strict():
    cell = SpikingNeuron(threshold=1.0, v_init=0.0)
    assert cell(torch.tensor([[1.0]]), 1).item() == 0.0  # v == threshold does not fire


def test_zero_reset_matches_norse_iaf():
    from norse.torch.functional.iaf import IAFFeedForwardState, IAFParameters, iaf_feed_forward_step

    th = 0.7
    gen = torch.Generator().manual_seed(4)
    cur = torch.rand(10, 3, 50, generator=gen) * 0.6 - 0.1
    p = IAFParameters(v_th=torch.as_tensor(th), v_reset=torch.as_tensor(0.0))
    state = IAFFeedForwardState(v=torch.zeros(3, 50))
    v = torch.zeros(3, 50)
    norse_z = []
    for t in range(10):
        z_n, state = iaf_feed_forward_step(cur[t], state, p)
        z, v = neuron_step(cur[t], v, th, leak=1.0, reset="zero")
        assert torch.equal(z, z_n) and torch.equal(v, state.v), t
        norse_z.append(z_n)
    ours = SpikingNeuron(threshold=th, leak=1.0, reset="zero", v_init=0.0)(cur, 10)
    assert torch.equal(ours, torch.stack(norse_z))
    assert ours.sum() > 0  # the comparison is not vacuous


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("leak", [1.0, 0.9])
def test_grad_path_equals_inference_path(reset, leak):
    gen = torch.Generator().manual_seed(6)
    cur = torch.rand(20, 4, 30, generator=gen) * 0.8 - 0.2
    cell = SpikingNeuron(threshold=0.8, leak=leak, reset=reset, v_init=0.5)
    with torch.no_grad():
        inf = cell(cur, 20)
    g = cur.clone().requires_grad_(True)
    out = cell(g, 20)
    assert out.requires_grad
    assert torch.equal(out.detach(), inf)
    out.sum().backward()
    assert g.grad is not None and torch.isfinite(g.grad).all() and g.grad.abs().sum() > 0


def test_spiking_maxpool_follows_most_active_input():
    # a 2x2 window: input a spikes at t=0,1; input b only at t=2. Plain max-pooling of spikes
    # would pass b's spike at t=2; the gate keeps following a (2 spikes so far), which is silent.
    a = [1.0, 1.0, 0.0, 0.0]
    b = [0.0, 0.0, 1.0, 0.0]
    s = torch.zeros(4, 1, 1, 2, 2)
    s[:, 0, 0, 0, 0] = torch.tensor(a)
    s[:, 0, 0, 1, 1] = torch.tensor(b)
    out = SpikingMaxPool(2, 2, 0)(s)
    assert out.shape == (4, 1, 1, 1, 1)
    assert out.flatten().tolist() == [1.0, 1.0, 0.0, 0.0]
    assert nn.MaxPool2d(2)(s.flatten(0, 1)).flatten().tolist() == [1.0, 1.0, 1.0, 0.0]
    # once b has spiked more often than a, b's spikes pass
    s2 = torch.zeros(5, 1, 1, 2, 2)
    s2[:, 0, 0, 0, 0] = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0])
    s2[:, 0, 0, 1, 1] = torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0])
    assert SpikingMaxPool(2, 2, 0)(s2).flatten().tolist() == [1.0, 1.0, 1.0, 1.0, 0.0]


@pytest.mark.parametrize("spec", ["digits", "resnet20"])
def test_fold_average_pooling_is_exact(spec):
    from privatesnn.conversion import ann_graph
    from privatesnn.models import create_model, load_model
    from privatesnn.models.loading import LoadedModel
    from privatesnn.snn import GraphANN
    from privatesnn.transforms import fold_average_pooling

    if spec == "digits":
        loaded = load_model("digits")
    else:
        torch.manual_seed(0)
        net = create_model("resnet20").eval()
        loaded = LoadedModel(net=net, spec="resnet20", arch="resnet20", input_shape=(3, 32, 32), num_classes=10,
                             mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), sha256="x")
    graph = ann_graph(loaded)
    folded, names = fold_average_pooling(graph)
    assert names and not any(type(n) is AvgPool for n in folded)
    x = torch.rand(4, *loaded.input_shape)
    with torch.no_grad():
        assert torch.allclose(GraphANN(graph)(x), GraphANN(folded)(x), atol=1e-4)
