"""bench/spike_budget.py: its settings' names, the spread over seeds and its bad options."""

from __future__ import annotations

import argparse

import pytest

from helpers import load_bench


def test_names_tell_the_penalties_and_their_weighting_apart():
    bench = load_bench("spike_budget")
    args = argparse.Namespace(qcfs_weighting="synops", weighting="layers")
    assert bench.setting_name(8, 30, 1, args) == "q8sy_r30_s1"
    assert bench.setting_name(0, 0, 0, args) == "q0_r0_s0"  # no penalty, no weighting in the name
    assert bench.qcfs_name(0.5, "layers") == "qcfs_q0.5" and bench.qcfs_name(8, "synops") == "qcfs_q8sy"
    mse = argparse.Namespace(qcfs_weighting="synops", weighting="synops", qcfs_kd_loss="mse")
    assert bench.setting_name(8, 30, 0, mse) == "q8sy_mse_r30sy_s0"  # the QCFS distillation in the name
    assert bench.qcfs_name(8, "synops", "mse") == "qcfs_q8sy_mse"
    assert bench.qcfs_name(12, "synops", "mse", sets=3, seed=2) == "qcfs_q12sy_mse_x3_qs2"  # sets, QCFS seed
    x3 = argparse.Namespace(qcfs_weighting="synops", weighting="synops", qcfs_kd_loss="mse", synthetic_sets=3)
    assert bench.setting_name(8, 30, 0, x3, qcfs_seed=1) == "q8sy_mse_x3_qs1_r30sy_s0"
    assert bench.qcfs_name(10, "synops", "mse", sets=3, ema=0.998) == "qcfs_q10sy_mse_x3_ema0.998"
    assert bench.qcfs_name(10, "synops", "mse", anchor=100, seed=1) == "qcfs_q10sy_mse_a100_qs1"
    assert bench.qcfs_name(8, "synops", "mse", prune=0.5, prune_input=0.3, seed=2) == "qcfs_q8sy_mse_p50i30_qs2"
    pruned = argparse.Namespace(qcfs_weighting="synops", weighting="synops", qcfs_kd_loss="mse", qcfs_prune=0.3)
    assert bench.setting_name(8, 0, 0, pruned) == "q8sy_mse_p30_r0_s0"
    assert bench.setting_without_seed("qcfs_q8sy_mse_p50i50_qs1") == "qcfs_q8sy_mse_p50i50"


def test_settings_lose_only_their_seed_when_grouped():
    bench = load_bench("spike_budget")
    assert bench.setting_without_seed("q8sy_r30sy_s1") == "q8sy_r30sy"
    assert bench.setting_without_seed("qcfs_q8sy_mse_qs2") == "qcfs_q8sy_mse"
    assert bench.setting_without_seed("qcfs_q8sy_mse") == "qcfs_q8sy_mse"  # seed 0 has no suffix
    assert bench.setting_without_seed("q8sy_mse_qs1_r30sy_s0") == "q8sy_mse_qs1_r30sy"  # per QCFS seed
    assert bench.setting_without_seed("qcfs_q10sy_mse_x3") == "qcfs_q10sy_mse_x3"
    assert bench.setting_without_seed("qcfs_q8sy_mse_p50i50_qs2_qat7") == "qcfs_q8sy_mse_p50i50_qat7"  # QAT finish
    assert bench.setting_without_seed("qcfs_q8sy_mse_p50i50_qat7") == "qcfs_q8sy_mse_p50i50_qat7"


def test_summary_groups_qcfs_seeds_of_one_setting():
    bench = load_bench("spike_budget")
    rows = [{"name": n, "results": [{"timesteps": 6, "accuracy": a, "strict_ratio": 5.0}]}
            for n, a in [("qcfs_q8sy_mse", 0.89), ("qcfs_q8sy_mse_qs1", 0.87), ("qcfs_q10sy_mse", 0.5)]]
    summary = bench.summarize(rows)
    assert summary["qcfs_q8sy_mse"]["6"]["runs"] == 2 and summary["qcfs_q8sy_mse"]["6"]["accuracy_mean"] == pytest.approx(0.88)
    assert summary["qcfs_q10sy_mse"]["6"]["runs"] == 1 and summary["qcfs_q10sy_mse"]["6"]["accuracy_sd"] is None


def test_summary_is_the_mean_and_spread_over_seeds():
    bench = load_bench("spike_budget")
    rows = [{"name": f"q8sy_r30sy_s{s}", "qcfs_rate_reg": 8, "train_rate_reg": 30,
             "results": [{"timesteps": 6, "accuracy": a, "strict_ratio": r}]}
            for s, (a, r) in enumerate([(0.88, 5.1), (0.89, 5.2), (0.90, 5.3)])]
    per_t = bench.summarize(rows)["q8sy_r30sy"]["6"]
    assert per_t["runs"] == 3 and per_t["accuracy_mean"] == pytest.approx(0.89)
    assert per_t["accuracy_sd"] == pytest.approx(0.01) and per_t["strict_ratio_mean"] == pytest.approx(5.2)


@pytest.mark.parametrize("argv, message", [
    (["--qcfs-rate-reg", "-1"], "--qcfs-rate-reg"),
    (["--train-rate-reg", "0,x"], "--train-rate-reg"),
    (["--seeds", "a"], "--seeds"),
    (["--qcfs-seeds", "1,-2"], "--qcfs-seeds"),
    (["--synthetic-sets", "0"], "--synthetic-sets"),
    (["--qcfs-ema", "1"], "--qcfs-ema"),
    (["--qcfs-anchor", "-1"], "--qcfs-anchor"),
    (["--qcfs-prune", "1"], "--qcfs-prune"),
    (["--qcfs-prune-input", "-0.2"], "--qcfs-prune-input"),
    (["--qat-finish", "7"], "--qat-finish"),  # without --qcfs-only
    (["--qat-finish", "-1", "--qcfs-only"], "--qat-finish"),
])
def test_bad_options_exit_naming_the_option(argv, message, tmp_path, monkeypatch):
    bench = load_bench("spike_budget")
    monkeypatch.setattr("sys.argv", ["spike_budget.py", *argv, "--out", "never.json"])
    with pytest.raises(SystemExit, match=message):
        bench.main()


def test_the_encryption_recipe_is_the_accuracy_bench_one_plus_the_penalty():
    """bench/common.train_argv builds both benches' `privsnn train` lines: the spike budget's parses
    with train's own parser into the T = 6 recipe, and without rate keys no penalty option is passed."""
    from privatesnn.cli import build_parser

    bench = load_bench("spike_budget")
    common = load_bench("common")
    cfg = {**bench.ENCRYPTION, "epochs": 10, "t": 6, "seed": 2, "rate_reg": 30.0, "rate_weighting": "synops"}
    argv = [str(a) for a in common.train_argv("q.pt", "o.pt", ["digits"], "s.npz", cfg)]
    a = build_parser().parse_args(argv)
    assert (a.timesteps, a.epochs, a.seed, a.kd_loss, a.surrogate_alpha, a.ema) == (6, 10, 2, "mse", 1.0, 0.998)
    assert (a.rate_reg, a.rate_weighting, a.kd_alpha, a.neuron_lr, a.out) == (30.0, "synops", 1.0, 0.01, "o.pt")
    plain = common.train_argv("q.pt", "o.pt", ["digits"], "s.npz", {"epochs": 1, "t": 4, "batch": 8, "lr": 1e-3})
    assert "--rate-reg" not in plain and "--surrogate-alpha" not in plain and "--qat" not in plain
