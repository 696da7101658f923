"""The ``privsnn`` command line: help, evaluate, exit codes and one-line errors, the console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from privatesnn import __version__
from privatesnn.cli import main

COMMANDS = ["demo", "evaluate", "synthesize", "convert", "train", "attack", "energy", "export", "simulate"]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PRIVSNN_THREADS": "1"}


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error:"), err
    assert "Traceback" not in err
    return lines[0]


def test_help_lists_every_stage(capsys):
    with pytest.raises(SystemExit) as ei:
        main(["--help"])
    assert ei.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: privsnn")
    for cmd in COMMANDS:
        assert f"\n    {cmd}" in out, cmd


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage: privsnn" in capsys.readouterr().out


def test_subcommand_help(capsys):
    with pytest.raises(SystemExit) as ei:
        main(["evaluate", "--help"])
    assert ei.value.code == 0
    out = capsys.readouterr().out
    assert "--data" in out and "--model" in out and "privsnn evaluate --model digits --data digits" in out


def test_evaluate_digits_writes_json(tmp_path, capsys):
    out_json = tmp_path / "sub" / "r.json"
    rc = main(["evaluate", "--model", "digits", "--data", "digits", "--json", str(out_json)])
    assert rc == 0
    res = json.loads(out_json.read_text())
    assert res["accuracy"] >= 0.97
    assert res["n"] == 450
    assert res["model"] == "digits" and res["data"] == "digits"
    out = capsys.readouterr().out
    assert "accuracy" in out
    assert [p.name for p in out_json.parent.iterdir()] == ["r.json"]  # no temp file left behind


def test_evaluate_limit(tmp_path):
    out_json = tmp_path / "r.json"
    assert main(["evaluate", "--model", "digits", "--data", "digits", "--limit", "50", "--json", str(out_json)]) == 0
    assert json.loads(out_json.read_text())["n"] == 50


@pytest.mark.parametrize("argv, pattern", [
    (["--limit", "0"], "--limit must be > 0"),
    (["--limit", "-3"], "--limit must be > 0"),
    (["--data", "bogus"], "data spec 'bogus' not understood"),
    (["--model", "resnt20:x.th"], "unknown architecture"),
    (["--device", "tpu"], "--device"),
])
def test_evaluate_bad_input_exits_2_without_output(argv, pattern, tmp_path, capsys):
    out_json = tmp_path / "r.json"
    base = {"--model": "digits", "--data": "digits"}
    for flag, value in zip(argv[::2], argv[1::2]):
        base[flag] = value
    args = ["evaluate"] + [a for kv in base.items() for a in kv] + ["--json", str(out_json)]
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 2
    assert pattern in _one_error_line(err)
    assert not out_json.exists()
    assert list(tmp_path.iterdir()) == []


def test_evaluate_needs_a_model(capsys):
    assert main(["evaluate", "--data", "digits"]) == 2
    assert "--model" in _one_error_line(capsys.readouterr().err)


def test_evaluate_batch_size_zero_is_bad_input(capsys):
    with pytest.raises(SystemExit) as ei:  # argparse rejects it with its usual exit code 2
        main(["evaluate", "--model", "digits", "--data", "digits", "--batch-size", "0"])
    err = capsys.readouterr().err
    assert ei.value.code == 2 and "positive integer" in err and "internal error" not in err


@pytest.mark.shared_data
def test_evaluate_shared_resnet20(shared_data, tmp_path):
    ckpt = shared_data / "models" / "resnet20-12fca82f.th"
    x, y = shared_data / "cifar10" / "test_x.npy", shared_data / "cifar10" / "test_y.npy"
    out_json = tmp_path / "r.json"
    rc = main(["evaluate", "--model", f"resnet20:{ckpt}", "--mean", "0.485,0.456,0.406",
               "--std", "0.229,0.224,0.225", "--data", f"npy:{x}:{y}", "--limit", "300",
               "--json", str(out_json)])
    assert rc == 0
    res = json.loads(out_json.read_text())
    assert res["n"] == 300
    # measured: 0.9133 (274/300) on the first 300 shared test images; ~0.909 on all 1900
    assert 0.85 <= res["accuracy"] <= 0.96


def test_module_entry_point_version():
    r = subprocess.run([sys.executable, "-m", "privatesnn.cli", "--version"], capture_output=True, text=True,
                       timeout=120, env=_env())
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"privsnn {__version__}"


def _console_script() -> str:
    local = Path(sys.executable).parent / "privsnn"
    if local.exists():
        return str(local)
    found = shutil.which("privsnn")
    if not found:
        pytest.fail("the privsnn console script is not installed next to the interpreter or on PATH")
    return found


def test_console_script_bad_input(tmp_path):
    out_json = tmp_path / "r.json"
    r = subprocess.run([_console_script(), "evaluate", "--model", "digits", "--data", "npy:missing_x.npy:y.npy",
                        "--json", str(out_json)], capture_output=True, text=True, timeout=120, env=_env(),
                       cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert "missing_x.npy" in _one_error_line(r.stderr)
    assert not out_json.exists()
