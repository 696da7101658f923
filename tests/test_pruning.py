"""Gradual magnitude pruning in the QCFS fine-tuning (convert --qcfs-prune): the schedule, which layers,
the zeros reaching the SNN, the op counter and the deployment, and train keeping them."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from privatesnn.errors import PrivsnnError
from privatesnn.graph import Conv, Flatten, Graph, Input, Linear, Neuron
from privatesnn.ops_count import count_snn
from privatesnn.pruning import GradualPruner, cubic_sparsity, is_pruned, prunable_layers, weight_sparsity
from privatesnn.qcfs import QCFSSettings, finetune_qcfs
from privatesnn.snn import GraphANN


def _graph(seed: int = 0) -> Graph:
    """Input -> conv (analog) -> IF -> conv (spikes) -> IF -> fixed routing conv -> IF -> flatten -> readout."""
    gen = torch.Generator().manual_seed(seed)
    route = torch.zeros(6, 6, 1, 1)
    route[range(6), range(6)] = 1.0
    nodes = [Input("x", [], shape=(1, 6, 6)),
             Conv("c1", ["x"], weight=torch.randn(8, 1, 3, 3, generator=gen) * 0.6,
                  bias=torch.randn(8, generator=gen) * 0.1, padding=(1, 1)),
             Neuron("n1", ["c1"]),
             Conv("c2", ["n1"], weight=torch.randn(6, 8, 3, 3, generator=gen) * 0.3, bias=torch.zeros(6),
                  padding=(1, 1)),
             Neuron("n2", ["c2"]),
             Conv("r", ["n2"], weight=route, trainable=False),
             Neuron("n3", ["r"]),
             Flatten("f", ["n3"]),
             Linear("fc", ["f"], weight=torch.randn(3, 6 * 6 * 6, generator=gen) * 0.1, bias=torch.zeros(3))]
    return Graph({n.name: n for n in nodes}, output="fc", meta={"mean": [0.0], "std": [1.0], "num_classes": 3})


def test_cubic_schedule_rises_from_zero_to_the_target_fastest_at_first():
    s = [cubic_sparsity(0.6, k, 5) for k in range(6)]
    assert s[0] == 0.0 and s[-1] == pytest.approx(0.6)
    steps = [b - a for a, b in zip(s, s[1:])]
    assert all(d > 0 for d in steps) and steps == sorted(steps, reverse=True)


def test_prunable_layers_split_the_analog_input_layer_from_the_spike_fed_ones():
    """c1 reads the image, c2 reads spikes; the routing conv and the readout are never pruned."""
    g = _graph()
    assert prunable_layers(g, 0.5, 0.2) == {"c1": 0.2, "c2": 0.5}
    assert prunable_layers(g, 0.5, 0.0) == {"c2": 0.5}
    assert prunable_layers(g, 0.0, 0.0) == {}


def test_gradual_pruner_reaches_each_layers_target_and_leaves_plain_weights():
    torch.manual_seed(0)
    a, b = nn.Conv2d(4, 8, 3), nn.Linear(50, 20)
    start = a.weight.detach().abs().clone()
    pruner = GradualPruner({"a": (a, 0.5), "b": (b, 0.8)}, steps=4)
    seen = []
    for _ in range(6):  # steps past the schedule change nothing
        pruner.step()
        seen.append(float((b.weight == 0).float().mean()))
    assert seen[0] < seen[1] < seen[2] < seen[3] == seen[5]
    pruner.finish()
    assert float((a.weight == 0).float().mean()) == pytest.approx(0.5, abs=1 / a.weight.numel())
    assert float((b.weight == 0).float().mean()) == pytest.approx(0.8, abs=1 / b.weight.numel())
    assert isinstance(a.weight, nn.Parameter) and not hasattr(a, "weight_orig")
    # the smallest magnitudes went: every kept weight is at least as large as every pruned one was
    gone = a.weight.detach() == 0
    assert float(start[gone].max()) <= float(start[~gone].min())
    with pytest.raises(PrivsnnError, match="sparsity must be in"):
        GradualPruner({"a": (nn.Linear(2, 2), 1.0)}, steps=2)


def test_qcfs_fine_tuning_prunes_the_snn_and_the_counter_charges_fewer_synaptic_ops():
    g = _graph()
    torch.manual_seed(0)
    images = torch.rand(64, 1, 6, 6)
    common = dict(levels=4, epochs=4, batch_size=16, lr=0.02)
    dense = finetune_qcfs(g, images, QCFSSettings(**common), progress=False)
    sparse = finetune_qcfs(g, images, QCFSSettings(**common, prune=0.5, prune_input=0.25), progress=False)
    sp = weight_sparsity(sparse)
    assert sp["c2"] == pytest.approx(0.5, abs=0.01) and sp["c1"] == pytest.approx(0.25, abs=0.02)
    assert "r" not in sp and torch.equal(sparse["r"].weight, g["r"].weight) and sp["fc"] == 0.0  # routing and readout untouched
    assert weight_sparsity(dense)["c2"] == 0.0
    assert sparse.meta["pruned"]["layers"]["c2"] == pytest.approx(sp["c2"])
    hist = sparse.meta["qcfs"]["history"]
    assert hist[0]["sparsity"] < hist[1]["sparsity"] == hist[-1]["sparsity"]  # pruned over half the epochs
    for n in sparse.neurons():
        n.windowed = True
    x = torch.rand(16, 1, 6, 6)
    c_sparse = {l.name: l for l in count_snn(sparse, x, 4)[4].layers}
    for n in dense.neurons():
        n.windowed = True
    c_dense = {l.name: l for l in count_snn(dense, x, 4)[4].layers}
    # the analog layer's MACs: its fan-out counts nonzero weights only (same input, so exactly 3/4)
    assert c_sparse["c1"].eff_macs == pytest.approx(0.75 * c_dense["c1"].eff_macs, rel=0.03)
    assert c_sparse["c2"].nonzero_weights == pytest.approx(0.5 * c_sparse["c2"].weights, abs=1)


@pytest.mark.parametrize("qat", [False, True])
def test_train_keeps_a_pruned_snns_zero_weights(tmp_path, qat):
    """Also on the chip's weight grid (``--qat``: the mask acts on the stored weight the grid reads)."""
    from privatesnn.training import TrainSettings, train_snn

    g = _graph()
    torch.manual_seed(0)
    images = torch.rand(48, 1, 6, 6)
    pruned = finetune_qcfs(g, images, QCFSSettings(levels=4, epochs=2, batch_size=16, lr=0.02, prune=0.5),
                           progress=False)
    zero = pruned["c2"].weight == 0
    assert is_pruned(pruned)
    older = pruned.copy()  # artifacts of the first pruning runs carry the QCFS settings only
    older.meta.pop("pruned")
    assert is_pruned(older)
    s = TrainSettings(epochs=2, timesteps=4, batch_size=16, lr=0.05, kd_alpha=1.0, augment=False, qat=qat)
    teacher = GraphANN(g.copy()).eval()
    out = train_snn(pruned, teacher, images, torch.zeros(48, dtype=torch.long), s, tmp_path / "a.ckpt",
                    progress=False)
    assert bool((out["c2"].weight[zero] == 0).all()) and not torch.equal(out["c2"].weight, pruned["c2"].weight)
    # an SNN that was not pruned trains every weight, zeros included
    plain = pruned.copy()
    plain.meta.pop("pruned")
    plain.meta.pop("qcfs")
    out = train_snn(plain, teacher, images, torch.zeros(48, dtype=torch.long), s, tmp_path / "b.ckpt",
                    progress=False)
    assert not bool((out["c2"].weight[zero] == 0).all())


def test_prune_settings_refuse_a_share_outside_0_1():
    """The CLI's bad values are in tests/test_low_latency.py (test_low_latency_bad_settings)."""
    with pytest.raises(PrivsnnError, match="--qcfs-prune"):
        QCFSSettings(prune=1.5).validate()
    with pytest.raises(PrivsnnError, match="--qcfs-prune-input"):
        QCFSSettings(prune_input=-0.1).validate()


def test_energy_of_a_pruned_snn_is_also_given_against_an_ann_pruned_alike():
    """The ratio stays against the user's dense ANN; a pruned SNN also gets the ratio against the same ANN
    with the same weights removed (zero-skipping hardware), which is lower; a dense SNN gets no such line."""
    from privatesnn.hw_targets.energy_models import all_timesteps, load_energy_model
    from privatesnn.ops_count import count_ann

    g = _graph()
    torch.manual_seed(0)
    images = torch.rand(32, 1, 6, 6)
    sparse = finetune_qcfs(g, images, QCFSSettings(levels=4, epochs=2, batch_size=16, lr=0.02, prune=0.6,
                                                   prune_input=0.5), progress=False)
    model, ann = load_energy_model(None), count_ann(g, images[:8]).to_dict()
    res = all_timesteps(count_snn(sparse, images[:8], 4)[4].to_dict(), ann, model)
    assert res["weights_kept"]["c2"] == pytest.approx(0.4, abs=0.01) and res["weights_kept"]["c1"] == pytest.approx(0.5)
    assert res["ann_pj_pruned_alike"] < res["ann_pj"] and res["ratio_vs_ann_pruned_alike"] < res["ratio"]
    assert "ratio_vs_ann_pruned_alike" not in all_timesteps(count_snn(g, images[:8], 4)[4].to_dict(), ann, model)
