"""bench/weight_soup.py: the uniform average of SNN graphs from one start."""

from __future__ import annotations

import pytest
import torch

from helpers import load_bench
from privatesnn.graph import Flatten, Graph, Input, Linear, Neuron


def _bench():
    return load_bench("weight_soup")


def _graph(w: float, th: float) -> Graph:
    nodes = [Input("x", [], shape=(1, 1, 2)), Flatten("f", ["x"]),
             Linear("l1", ["f"], weight=torch.full((2, 2), w), bias=torch.full((2,), w)),
             Neuron("n1", ["l1"], threshold=th, v_init=0.5), Linear("out", ["n1"], weight=torch.eye(2), bias=None)]
    return Graph(nodes={n.name: n for n in nodes}, output="out", meta={"host_current_grid": {"l1": 1.0}})


def test_soup_averages_weights_biases_thresholds_and_drops_a_chip_grid():
    out = _bench().soup([_graph(1.0, 1.0), _graph(3.0, 2.0)])
    assert torch.equal(out.nodes["l1"].weight, torch.full((2, 2), 2.0))
    assert torch.equal(out.nodes["l1"].bias, torch.full((2,), 2.0))
    assert out.nodes["n1"].threshold == 1.5 and out.nodes["n1"].v_init == 0.5
    assert "host_current_grid" not in out.meta


def test_soup_refuses_graphs_that_differ():
    other = _graph(1.0, 1.0)
    del other.nodes["out"]
    with pytest.raises(SystemExit, match="'out' differs"):
        _bench().soup([_graph(1.0, 1.0), other])
