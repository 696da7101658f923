"""Scale-out and robustness with real processes: torchrun (2 CPU processes, gloo) gives the
single-process result, and `kill -9` during synthesize/train followed by a rerun with --resume
gives the artifact an uninterrupted run gives."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from privatesnn.artifact import load_snn
from privatesnn.cli import main
from privatesnn.synthesis.store import load_synthetic

# DDP averages gradients over the two halves of each batch instead of summing one batch: the
# float rounding differs, and a few Adam steps can carry it to this size (measured ~1e-7).
DDP_WEIGHT_TOL = 1e-5
KILL_EPOCHS = 12  # enough epochs that the kill lands well before the end


def _env() -> dict[str, str]:
    env = dict(os.environ, PRIVSNN_THREADS="1", OMP_NUM_THREADS="1", TQDM_DISABLE="1", PYTHONUNBUFFERED="1",
               PRIVSNN_DIST_TIMEOUT_MIN="2", PRIVSNN_DIST_EXIT_TIMEOUT_S="60",
               PYTHONFAULTHANDLER="1")  # a stuck run fails, with stacks
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


def _torchrun(nproc: int, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "privatesnn.cli", *argv]
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout)


def _why(r: subprocess.CompletedProcess) -> str:
    """A failed run's cause: the workers' own error lines (torchrun's summary at the end of stderr
    only says which rank died) and the tail."""
    causes = [line for line in r.stderr.splitlines()
              if any(k in line for k in ("Error", "error:", "terminate called", "what()", "Traceback"))]
    return "\n".join(causes[:20]) + "\n...\n" + r.stderr[-1500:]


def _cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "privatesnn.cli", *argv]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A small synthetic set and converted digits SNN, made in this process."""
    d = tmp_path_factory.mktemp("dist")
    assert main(["synthesize", "--model", "digits", "--num", "96", "--batch-size", "32", "--iterations", "20",
                 "--out", str(d / "synth.npz")]) == 0
    assert main(["convert", "--model", "digits", "--synthetic", str(d / "synth.npz"), "--timesteps", "4",
                 "--out", str(d / "snn.pt")]) == 0
    return d


def _train_args(d: Path, out: Path, epochs: int = 2) -> list[str]:
    return ["train", "--snn", str(d / "snn.pt"), "--teacher", "digits", "--synthetic", str(d / "synth.npz"),
            "--epochs", str(epochs), "--timesteps", "4", "--batch-size", "32", "--lr", "1e-3", "--seed", "5",
            "--out", str(out)]


def _max_weight_diff(a: Path, b: Path) -> float:
    ga, gb = load_snn(a).graph, load_snn(b).graph
    return max(float((x.weight - y.weight).abs().max()) for x, y in zip(ga.weighted(), gb.weighted()))


def test_torchrun_synthesize_equals_single_process(base, tmp_path):
    # --num-images, not --num: newer torchrun's own --numa-binding/--numa_binding make --num ambiguous
    argv = ["synthesize", "--model", "digits", "--num-images", "96", "--batch-size", "32", "--iterations", "20"]
    r = _torchrun(2, *argv, "--out", str(tmp_path / "two.npz"))
    assert r.returncode == 0, _why(r)
    one, two = load_synthetic(base / "synth.npz"), load_synthetic(tmp_path / "two.npz")
    assert torch.equal(one.labels, two.labels)
    assert torch.allclose(one.images, two.images, atol=1e-6)
    assert json.loads((tmp_path / "two.npz.manifest.json").read_text())["settings"]["processes"] == 2
    assert not list(tmp_path.glob("*.partial.npz"))


def test_torchrun_train_equals_single_process(base, tmp_path):
    assert main(_train_args(base, tmp_path / "one.pt")) == 0
    r = _torchrun(2, *_train_args(base, tmp_path / "two.pt"))
    assert r.returncode == 0, _why(r)
    diff = _max_weight_diff(tmp_path / "one.pt", tmp_path / "two.pt")
    assert diff < DDP_WEIGHT_TOL, diff
    assert _max_weight_diff(base / "snn.pt", tmp_path / "two.pt") > 1e-3  # it did train
    print(f"max weight difference 1 vs 2 processes: {diff:.2e}")
    assert json.loads((tmp_path / "two.pt.manifest.json").read_text())["settings"]["processes"] == 2


def test_torchrun_evaluate_equals_single_process(base, tmp_path):
    common = ["evaluate", "--snn", str(base / "snn.pt"), "--model", "digits", "--data", "digits",
              "--timesteps", "2,4", "--batch-size", "64", "--limit", "300"]
    assert main([*common, "--json", str(tmp_path / "one.json")]) == 0
    r = _torchrun(2, *common, "--json", str(tmp_path / "two.json"))
    assert r.returncode == 0, _why(r)
    one, two = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "two.json"))
    assert one["results"] == two["results"] and one["ann_accuracy"] == two["ann_accuracy"]
    assert two["n"] == 300


def test_torchrun_refuses_single_process_commands(base, tmp_path):
    r = _torchrun(2, "energy", "--snn", str(base / "snn.pt"), "--synthetic", str(base / "synth.npz"),
                  "--out", str(tmp_path / "energy"))
    assert r.returncode != 0
    # one clear line per rank; the only traceback is torchrun's own report of a failed child
    assert "runs as one process" in r.stderr and "privatesnn/" not in r.stderr
    assert not (tmp_path / "energy").exists()


def _kill_when(proc: subprocess.Popen, path: Path, timeout: float = 240) -> None:
    """SIGKILL ``proc`` as soon as ``path`` exists (the first checkpoint); fail if it ends first."""
    t0 = time.time()
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"process ended (rc {proc.returncode}) before {path.name} appeared: "
                        f"{proc.stderr.read()[-1500:] if proc.stderr else ''}")
        if time.time() - t0 > timeout:
            proc.kill()
            pytest.fail(f"{path.name} did not appear within {timeout}s")
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def test_kill9_during_train_then_resume_matches_uninterrupted(base, tmp_path):
    out = tmp_path / "killed.pt"
    proc = subprocess.Popen(_cli(*_train_args(base, out, epochs=KILL_EPOCHS)), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    ckpt = out.with_name(out.name + ".ckpt.pt")
    _kill_when(proc, ckpt)
    assert not out.exists()
    done = torch.load(ckpt, weights_only=True)["epoch"]
    assert 1 <= done < KILL_EPOCHS
    # without --resume the stale checkpoint is refused, nothing is written
    r = subprocess.run(_cli(*_train_args(base, out, epochs=KILL_EPOCHS)), env=_env(), capture_output=True, text=True)
    assert r.returncode == 2 and "--resume" in r.stderr and not out.exists()
    r = subprocess.run(_cli(*_train_args(base, out, epochs=KILL_EPOCHS), "--resume"), env=_env(), capture_output=True, text=True)
    assert r.returncode == 0, _why(r)
    assert main(_train_args(base, tmp_path / "straight.pt", epochs=KILL_EPOCHS)) == 0
    assert _max_weight_diff(out, tmp_path / "straight.pt") == 0.0
    assert not ckpt.exists()
    assert not list(tmp_path.glob(".*.tmp")), "stale temporary files left behind"


def test_kill9_during_synthesize_then_resume_matches_uninterrupted(base, tmp_path):
    argv = ["synthesize", "--model", "digits", "--num", "160", "--batch-size", "32", "--iterations", "20"]
    out = tmp_path / "killed.npz"
    proc = subprocess.Popen(_cli(*argv, "--out", str(out)), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    part = out.with_name(out.name + ".partial.npz")
    _kill_when(proc, part)
    assert not out.exists()
    r = subprocess.run(_cli(*argv, "--out", str(out), "--resume", "--json", str(tmp_path / "r.json")),
                       env=_env(), capture_output=True, text=True)
    assert r.returncode == 0, _why(r)
    assert json.loads((tmp_path / "r.json").read_text())["batches_resumed"] >= 1
    assert main([*argv, "--out", str(tmp_path / "straight.npz")]) == 0
    a, b = load_synthetic(out), load_synthetic(tmp_path / "straight.npz")
    assert np.array_equal(a.images.numpy(), b.images.numpy()) and torch.equal(a.labels, b.labels)
    assert not part.exists()


def test_exit_watchdog_leaves_a_hung_exit_with_the_work_exit_code():
    """A rank whose work is done but whose exit hangs leaves after the timeout with the work's code
    (and every thread's stack), not with 1: an overloaded machine must not fail finished work."""
    code = ("import time; from privatesnn.cli import _exit_watchdog; "
            "_exit_watchdog(3, 0.5, '[rank 1] '); time.sleep(60)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=50)
    assert r.returncode == 3, r.stderr[-500:]
    assert "[rank 1] warning: exit hung 0.5 s" in r.stderr
    assert "Thread" in r.stderr  # the stacks were printed
