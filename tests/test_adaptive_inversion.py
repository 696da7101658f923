"""bench/adaptive_inversion.py: the round-2 repulsion and its bad options."""

from __future__ import annotations

import pytest
import torch

from helpers import load_bench


def test_repulsion_pushes_only_from_the_same_class_first_answer():
    bench = load_bench("adaptive_inversion")
    torch.manual_seed(0)
    first = torch.rand(4, 1, 8, 8)
    first_labels = torch.tensor([0, 0, 1, 1])
    penalty = bench.repulsion(first, first_labels, torch.tensor([0]), weight=2.0)
    same, other = first[:1], first[2:3]
    assert float(penalty(same)) > 0.9  # cosine 1 with one of its two references, weight 2, mean over both
    assert float(penalty(other)) < float(penalty(same))
    assert float(penalty(1.0 - same)) < 0.5  # anti-correlated with its reference: relu(cos) leaves it alone
    x = same.clone().requires_grad_(True)
    penalty(x).backward()
    assert x.grad.abs().sum() > 0  # the attacker's optimiser can follow it


@pytest.mark.parametrize("argv", [["--snn", "missing.pt"], ["--snn", "x.pt", "--per-class", "0"],
                                  ["--snn", "x.pt", "--repel", "-1"]])
def test_bad_options_exit_naming_the_problem(argv, monkeypatch, capsys):
    bench = load_bench("adaptive_inversion")
    monkeypatch.setattr("sys.argv", ["adaptive_inversion.py", *argv, "--out", "never.json"])
    with pytest.raises(SystemExit):
        bench.main()
    err = capsys.readouterr().err
    assert "--snn" in err or "--per-class" in err or "--repel" in err
