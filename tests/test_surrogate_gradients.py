"""bench/surrogate_gradients.py: how the surrogate's slope scales the gradient through windowed layers."""

from __future__ import annotations

import pytest
import torch

from helpers import load_bench
from privatesnn.graph import Flatten, Graph, Input, Linear, Neuron


def _chain(depth: int) -> Graph:
    """``depth`` windowed layers in a row (linear -> neuron), then a linear readout."""
    gen = torch.Generator().manual_seed(0)
    nodes: list = [Input("x", [], shape=(1, 1, 4)), Flatten("f", ["x"])]
    src = "f"
    for i in range(depth):
        nodes += [Linear(f"l{i}", [src], weight=(torch.rand(4, 4, generator=gen) + 0.2) / 4, bias=torch.full((4,), 0.05)),
                  Neuron(f"n{i}", [f"l{i}"], threshold=1.0, v_init=0.5, windowed=True)]
        src = f"n{i}"
    nodes.append(Linear("out", [src], weight=torch.rand(3, 4, generator=gen), bias=None))
    return Graph(nodes={n.name: n for n in nodes}, output="out", meta={"mean": [0.0], "std": [1.0]})


def test_each_windowed_layer_scales_the_gradient_by_the_slope():
    """The spikes do not depend on the slope, so a layer k neuron layers deep gets slope^k times the
    gradient: between slopes 0.3 and 1, the first layer's share shrinks by 0.3^2 against the third's."""
    bench = load_bench("surrogate_gradients")
    x = torch.rand(16, 1, 1, 4, generator=torch.Generator().manual_seed(1))
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    labels = torch.zeros(16, dtype=torch.long)
    norms = {a: bench.layer_gradient_norms(_chain(3), teacher, x, labels, 6, a) for a in (0.3, 1.0)}
    assert set(norms[1.0]) == {"l0", "l1", "l2", "out"}
    assert norms[1.0]["l0"] > 0
    assert norms[0.3]["out"] == pytest.approx(norms[1.0]["out"], rel=1e-6)  # no neuron after the readout
    for name, depth in (("l0", 3), ("l1", 2), ("l2", 1)):
        assert norms[0.3][name] == pytest.approx(0.3 ** depth * norms[1.0][name], rel=1e-4), name


@pytest.mark.parametrize("argv, message", [
    (["--snn", "{d}/missing.pt", "--synthetic", "{d}/missing.npz"], "missing.pt"),
    (["--snn", "{d}/junk.pt", "--synthetic", "{d}/missing.npz"], "junk.pt"),
    (["--snn", "a.pt", "--synthetic", "b.npz", "--alphas", "0.3,x"], "--alphas"),
    (["--snn", "a.pt", "--synthetic", "b.npz", "--alphas", "0"], "--alphas"),
])
def test_bad_input_names_the_file_or_option(argv, message, tmp_path, monkeypatch):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    bench = load_bench("surrogate_gradients")
    monkeypatch.setattr("sys.argv", ["surrogate_gradients.py", *(a.format(d=tmp_path) for a in argv),
                                     "--out", str(tmp_path / "out.json")])
    with pytest.raises(SystemExit, match=message.replace(".", r"\.")):
        bench.main()
    assert not (tmp_path / "out.json").exists()
