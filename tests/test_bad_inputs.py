"""Bad-input sweep: for every command, missing / empty / truncated / corrupted files, files of the
wrong kind, crafted pickles, NaN/Inf weights and images, wrong types and absurd sizes. Each must
end with one clear error line and exit 2: no traceback, no output written, no payload executed.

The cases are data (``CASES``); ``{g}`` is a folder of good artifacts, ``{b}`` one of bad files and
``{o}`` the output path that must not appear.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from privatesnn.cli import main

DIGITS_CKPT = Path(__file__).resolve().parents[1] / "privatesnn" / "data" / "digits_cnn.pt"


class _Evil:
    """Unpickling this would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Good artifacts made by the pipeline, and bad files derived from them."""
    g = tmp_path_factory.mktemp("good")
    b = tmp_path_factory.mktemp("bad")
    run = lambda *a: main([str(x) for x in a])  # noqa: E731
    assert run("synthesize", "--model", "digits", "--num", "40", "--batch-size", "40", "--iterations", "5",
               "--out", g / "synth.npz") == 0
    assert run("convert", "--model", "digits", "--synthetic", g / "synth.npz", "--timesteps", "4",
               "--out", g / "snn.pt") == 0
    assert run("export", "--snn", g / "snn.pt", "--target", "nir", "--out", g / "model.nir") == 0
    assert run("export", "--snn", g / "snn.pt", "--target", "lava", "--out", g / "lava") == 0
    from sklearn.datasets import load_digits

    d = load_digits()
    np.save(g / "x.npy", (d.images[:20] / 16.0).astype(np.float32)[:, None])
    np.save(g / "y.npy", d.target[:20].astype(np.int64))

    # empty, truncated, random bytes, text
    for ext in ("pt", "npz", "nir", "onnx", "npy", "th"):
        (b / f"empty.{ext}").write_bytes(b"")
        (b / f"junk.{ext}").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (b / "text.pt").write_text("this is not a checkpoint\n")
    for name in ("snn.pt", "synth.npz", "model.nir"):
        blob = (g / name).read_bytes()
        (b / f"trunc_{name}").write_bytes(blob[: len(blob) // 2])
    blob = DIGITS_CKPT.read_bytes()
    (b / "trunc_ckpt.pt").write_bytes(blob[: len(blob) // 2])
    # crafted pickles (each would touch b/pwned)
    torch.save(_Evil(b / "pwned"), b / "evil.pt")
    torch.save({"format": "privsnn-snn/1", "graph": _Evil(b / "pwned")}, b / "evil_snn.pt")
    meta = np.load(g / "synth.npz", allow_pickle=False)["meta"]
    np.savez(b / "evil.npz", images=np.array([_Evil(b / "pwned")], dtype=object), labels=np.zeros(1), meta=meta)
    np.save(b / "evil.npy", np.array([_Evil(b / "pwned")], dtype=object), allow_pickle=True)
    # NaN / Inf
    sd = torch.load(DIGITS_CKPT, weights_only=True)
    sd = sd.get("state_dict", sd) if isinstance(sd, dict) else sd
    key = next(k for k, v in sd.items() if torch.is_tensor(v) and v.is_floating_point())
    sd[key] = sd[key].clone()
    sd[key].view(-1)[0] = float("nan")
    torch.save(sd, b / "nan_ckpt.pt")
    art = torch.load(g / "snn.pt", weights_only=True)
    node = next(n for n in art["graph"]["nodes"] if "weight" in n)
    node["weight"] = node["weight"].clone()
    node["weight"].view(-1)[0] = float("inf")
    torch.save(art, b / "inf_snn.pt")
    z = dict(np.load(g / "synth.npz", allow_pickle=False))
    z["images"] = z["images"].copy()
    z["images"][0, 0, 0, 0] = np.nan
    with open(b / "nan_synth.npz", "wb") as f:
        np.savez(f, **z)
    x = np.load(g / "x.npy")
    x[0, 0, 0, 0] = np.inf
    np.save(b / "inf_x.npy", x)
    np.save(b / "y_short.npy", np.load(g / "y.npy")[:5])
    np.save(b / "y_big.npy", np.full(20, 99, dtype=np.int64))
    # wrong kinds and broken folders
    shutil.copy(g / "synth.npz", b / "synth_as.pt")
    shutil.copy(g / "snn.pt", b / "snn_as.npz")
    (b / "a_dir.pt").mkdir()
    shutil.copytree(g / "lava", b / "lava_trunc")
    net = next((b / "lava_trunc").glob("*.net"))
    net.write_bytes(net.read_bytes()[:200])
    shutil.copytree(g / "lava", b / "lava_nomanifest")
    (b / "lava_nomanifest" / "manifest.json").unlink()
    shutil.copy(g / "snn.pt", b / "badmanifest.pt")
    (b / "badmanifest.pt.manifest.json").write_text("{not json")
    shutil.copy(g / "snn.pt", b / "tampered.pt")
    shutil.copy(g / "snn.pt.manifest.json", b / "tampered.pt.manifest.json")
    with open(b / "tampered.pt", "ab") as f:
        f.write(b"\0")
    return g, b


SNN = "{g}/snn.pt"
SYN = "{g}/synth.npz"
NPY = "npy:{g}/x.npy:{g}/y.npy"
CKPT = f"digits_cnn:{DIGITS_CKPT}"


def _argv(command: str, base: dict[str, str]):
    """A case builder: ``command`` with ``base`` options, overridden (or dropped with None) per case."""
    def build(**kw: str | None) -> list[str]:
        merged = {**base, **kw}
        return [command, *[t for k, v in merged.items() if v is not None for t in (k, v)]]
    return build


_ev = _argv("evaluate", {"--snn": SNN, "--data": "digits", "--json": "{o}"})
_syn = _argv("synthesize", {"--model": "digits", "--num": "20", "--iterations": "2", "--out": "{o}"})
_conv = _argv("convert", {"--model": "digits", "--synthetic": SYN, "--out": "{o}"})
_train = _argv("train", {"--snn": SNN, "--teacher": "digits", "--synthetic": SYN, "--epochs": "1", "--out": "{o}"})
_energy = _argv("energy", {"--snn": SNN, "--synthetic": SYN, "--out": "{o}"})
_attack = _argv("attack", {"--snn": SNN, "--model": "digits", "--data": "digits", "--out": "{o}", "--iterations": "2"})
_export = _argv("export", {"--snn": SNN, "--target": "nir", "--out": "{o}"})
_sim = _argv("simulate", {"--artifact": "{g}/lava", "--data": "digits", "--limit": "2", "--json": "{o}"})


CASES = {
    # ---- evaluate
    "evaluate/model-missing": _ev(**{"--snn": None, "--model": "digits_cnn:{b}/nope.pt"}),
    "evaluate/model-empty": _ev(**{"--snn": None, "--model": "digits_cnn:{b}/empty.pt"}),
    "evaluate/model-truncated": _ev(**{"--snn": None, "--model": "digits_cnn:{b}/trunc_ckpt.pt"}),
    "evaluate/model-junk": _ev(**{"--snn": None, "--model": "digits_cnn:{b}/junk.pt"}),
    "evaluate/model-text": _ev(**{"--snn": None, "--model": "digits_cnn:{b}/text.pt"}),
    "evaluate/model-pickle": _ev(**{"--snn": None, "--model": "digits_cnn:{b}/evil.pt"}),
    "evaluate/model-nan": _ev(**{"--snn": None, "--model": "digits_cnn:{b}/nan_ckpt.pt"}),
    "evaluate/model-is-snn": _ev(**{"--snn": None, "--model": "digits_cnn:{g}/snn.pt"}),
    "evaluate/model-dir": _ev(**{"--snn": None, "--model": "digits_cnn:{b}/a_dir.pt"}),
    "evaluate/model-unknown-arch": _ev(**{"--snn": None, "--model": "resnet21:{g}/snn.pt"}),
    "evaluate/onnx-empty": _ev(**{"--snn": None, "--model": "{b}/empty.onnx"}),
    "evaluate/onnx-junk": _ev(**{"--snn": None, "--model": "{b}/junk.onnx"}),
    "evaluate/snn-missing": _ev(**{"--snn": "{b}/nope.pt"}),
    "evaluate/snn-empty": _ev(**{"--snn": "{b}/empty.pt"}),
    "evaluate/snn-truncated": _ev(**{"--snn": "{b}/trunc_snn.pt"}),
    "evaluate/snn-junk": _ev(**{"--snn": "{b}/junk.pt"}),
    "evaluate/snn-pickle": _ev(**{"--snn": "{b}/evil_snn.pt"}),
    "evaluate/snn-inf": _ev(**{"--snn": "{b}/inf_snn.pt"}),
    "evaluate/snn-is-synth": _ev(**{"--snn": "{b}/synth_as.pt"}),
    "evaluate/snn-is-ckpt": _ev(**{"--snn": str(DIGITS_CKPT)}),
    "evaluate/snn-other-model": _ev(**{"--model": "digits-evaluator"}),
    "evaluate/data-missing": _ev(**{"--data": "npy:{b}/nope.npy:{g}/y.npy"}),
    "evaluate/data-empty": _ev(**{"--data": "npy:{b}/empty.npy:{g}/y.npy"}),
    "evaluate/data-junk": _ev(**{"--data": "npy:{b}/junk.npy:{g}/y.npy"}),
    "evaluate/data-pickle": _ev(**{"--data": "npy:{b}/evil.npy:{g}/y.npy"}),
    "evaluate/data-inf": _ev(**{"--data": "npy:{b}/inf_x.npy:{g}/y.npy"}),
    "evaluate/data-label-count": _ev(**{"--data": "npy:{g}/x.npy:{b}/y_short.npy"}),
    "evaluate/data-label-range": _ev(**{"--data": "npy:{g}/x.npy:{b}/y_big.npy"}),
    "evaluate/data-unknown-spec": _ev(**{"--data": "mnist"}),
    "evaluate/data-cifar-dir-missing": _ev(**{"--data": "cifar10:{b}/nowhere"}),
    "evaluate/T-zero": _ev(**{"--timesteps": "0"}),
    "evaluate/T-huge": _ev(**{"--timesteps": "1000000000"}),
    "evaluate/T-negative": _ev(**{"--timesteps": "-4"}),
    "evaluate/T-text": _ev(**{"--timesteps": "eight"}),
    "evaluate/limit-zero": _ev(**{"--limit": "0"}),
    "evaluate/limit-negative": _ev(**{"--limit": "-3"}),
    "evaluate/batch-zero": _ev(**{"--batch-size": "0"}),
    "evaluate/device-bogus": _ev(**{"--device": "tpu"}),
    "evaluate/device-cuda-absent": _ev(**{"--device": "cuda:7"}) if not torch.cuda.is_available() else None,
    "evaluate/mean-wrong-length": _ev(**{"--snn": None, "--model": "digits", "--mean": "0.1,0.2,0.3"}),
    "evaluate/std-zero": _ev(**{"--snn": None, "--model": "digits", "--std": "0"}),
    # ---- synthesize
    "synthesize/num-zero": _syn(**{"--num": "0"}),
    "synthesize/num-negative": _syn(**{"--num": "-5"}),
    "synthesize/num-huge": _syn(**{"--num": "1000000000"}),
    "synthesize/num-text": _syn(**{"--num": "many"}),
    "synthesize/batch-zero": _syn(**{"--batch-size": "0"}),
    "synthesize/iterations-zero": _syn(**{"--iterations": "0"}),
    "synthesize/lr-negative": _syn(**{"--lr": "-1"}),
    "synthesize/lr-nan": _syn(**{"--lr": "nan"}),
    "synthesize/temperature-zero": _syn(**{"--method": "dirichlet", "--temperature": "0"}),
    "synthesize/bn-on-model-without-bn": _syn(**{"--model": "digits-evaluator", "--method": "bn-inversion"}),
    "synthesize/model-pickle": _syn(**{"--model": "digits_cnn:{b}/evil.pt"}),
    "synthesize/model-nan": _syn(**{"--model": "digits_cnn:{b}/nan_ckpt.pt"}),
    "synthesize/model-truncated": _syn(**{"--model": "digits_cnn:{b}/trunc_ckpt.pt"}),
    "synthesize/out-is-dir": _syn(**{"--out": "{b}/a_dir.pt"}),
    "synthesize/exists": _syn(**{"--out": SYN}),
    # ---- convert
    "convert/synthetic-missing": _conv(**{"--synthetic": "{b}/nope.npz"}),
    "convert/synthetic-empty": _conv(**{"--synthetic": "{b}/empty.npz"}),
    "convert/synthetic-truncated": _conv(**{"--synthetic": "{b}/trunc_synth.npz"}),
    "convert/synthetic-junk": _conv(**{"--synthetic": "{b}/junk.npz"}),
    "convert/synthetic-pickle": _conv(**{"--synthetic": "{b}/evil.npz"}),
    "convert/synthetic-nan": _conv(**{"--synthetic": "{b}/nan_synth.npz"}),
    "convert/synthetic-is-snn": _conv(**{"--synthetic": "{b}/snn_as.npz"}),
    "convert/synthetic-other-model": _conv(**{"--model": "digits-evaluator"}),
    "convert/model-nan": _conv(**{"--model": "digits_cnn:{b}/nan_ckpt.pt"}),
    "convert/model-pickle": _conv(**{"--model": "digits_cnn:{b}/evil.pt"}),
    "convert/T-zero": _conv(**{"--timesteps": "0"}),
    "convert/T-huge": _conv(**{"--timesteps": "1000000000"}),
    "convert/threshold-bad": _conv(**{"--threshold": "median"}),
    "convert/percentile-150": _conv(**{"--threshold": "percentile:150"}),
    "convert/leak-2": _conv(**{"--leak": "2"}),
    "convert/batch-zero": _conv(**{"--batch-size": "0"}),
    "convert/calibration-limit-negative": _conv(**{"--synthetic": None, "--calibration-data": "digits",
                                                   "--calibration-limit": "-1"}),
    # ---- train
    "train/snn-missing": _train(**{"--snn": "{b}/nope.pt"}),
    "train/snn-truncated": _train(**{"--snn": "{b}/trunc_snn.pt"}),
    "train/snn-pickle": _train(**{"--snn": "{b}/evil_snn.pt"}),
    "train/snn-inf": _train(**{"--snn": "{b}/inf_snn.pt"}),
    "train/snn-dir": _train(**{"--snn": "{b}/a_dir.pt"}),
    "train/synthetic-truncated": _train(**{"--synthetic": "{b}/trunc_synth.npz"}),
    "train/synthetic-nan": _train(**{"--synthetic": "{b}/nan_synth.npz"}),
    "train/synthetic-pickle": _train(**{"--synthetic": "{b}/evil.npz"}),
    "train/teacher-other": _train(**{"--teacher": "digits-evaluator"}),
    "train/teacher-nan": _train(**{"--teacher": "digits_cnn:{b}/nan_ckpt.pt"}),
    "train/epochs-zero": _train(**{"--epochs": "0"}),
    "train/epochs-negative": _train(**{"--epochs": "-2"}),
    "train/epochs-float": _train(**{"--epochs": "1.5"}),
    "train/T-zero": _train(**{"--timesteps": "0"}),
    "train/T-huge": _train(**{"--timesteps": "1000000000"}),
    "train/batch-zero": _train(**{"--batch-size": "0"}),
    "train/lr-zero": _train(**{"--lr": "0"}),
    "train/lr-nan": _train(**{"--lr": "nan"}),
    "train/kd-alpha-2": _train(**{"--kd-alpha": "2"}),
    "train/kd-temperature-0": _train(**{"--kd-temperature": "0"}),
    "train/leak-0": _train(**{"--leak": "0"}),
    "train/rate-reg-negative": _train(**{"--rate-reg": "-1"}),
    "train/surrogate-alpha-zero": _train(**{"--surrogate-alpha": "0"}),
    "train/anchor-negative": _train(**{"--anchor": "-1"}),
    "train/anchor-nan": _train(**{"--anchor": "nan"}),
    "train/anchor-with-reset-zero": _train(**{"--anchor": "1", "--reset": "zero"}),
    # ---- energy
    "energy/snn-truncated": _energy(**{"--snn": "{b}/trunc_snn.pt"}),
    "energy/snn-pickle": _energy(**{"--snn": "{b}/evil_snn.pt"}),
    "energy/synthetic-junk": _energy(**{"--synthetic": "{b}/junk.npz"}),
    "energy/T-zero": _energy(**{"--timesteps": "0"}),
    "energy/T-huge": _energy(**{"--timesteps": "1000000000"}),
    "energy/limit-zero": _energy(**{"--limit": "0"}),
    "energy/energy-model-junk": _energy(**{"--energy-model": "{b}/junk.npz"}),
    # ---- attack
    "attack/snn-pickle": _attack(**{"--snn": "{b}/evil_snn.pt"}),
    "attack/snn-truncated": _attack(**{"--snn": "{b}/trunc_snn.pt"}),
    "attack/iterations-zero": _attack(**{"--iterations": "0"}),
    "attack/per-class-negative": _attack(**{"--per-class": "-1"}),
    "attack/limit-classes-zero": _attack(**{"--limit-classes": "0"}),
    "attack/evaluator-junk": _attack(**{"--evaluator": "digits_cnn:{b}/junk.pt"}),
    "attack/T-zero": _attack(**{"--timesteps": "0"}),
    # ---- export
    "export/snn-missing": _export(**{"--snn": "{b}/nope.pt"}),
    "export/snn-truncated": _export(**{"--snn": "{b}/trunc_snn.pt"}),
    "export/snn-pickle": _export(**{"--snn": "{b}/evil_snn.pt"}),
    "export/snn-inf": _export(**{"--snn": "{b}/inf_snn.pt"}),
    "export/snn-is-synth": _export(**{"--snn": "{b}/synth_as.pt"}),
    "export/target-bogus": _export(**{"--target": "spinnaker"}),
    "export/T-zero": _export(**{"--timesteps": "0"}),
    "export/chips-zero": _export(**{"--target": "lava", "--chips": "0"}),
    "export/onnx-T-huge": _export(**{"--target": "onnx", "--timesteps": "1000000000"}),
    # ---- simulate
    "simulate/artifact-missing": _sim(**{"--artifact": "{b}/nowhere"}),
    "simulate/nir-empty": _sim(**{"--artifact": "{b}/empty.nir"}),
    "simulate/nir-truncated": _sim(**{"--artifact": "{b}/trunc_model.nir"}),
    "simulate/nir-junk": _sim(**{"--artifact": "{b}/junk.nir"}),
    "simulate/net-truncated": _sim(**{"--artifact": "{b}/lava_trunc"}),
    "simulate/lava-no-manifest": _sim(**{"--artifact": "{b}/lava_nomanifest"}),
    "simulate/limit-zero": _sim(**{"--limit": "0"}),
    "simulate/T-zero": _sim(**{"--timesteps": "0"}),
    "simulate/T-huge": _sim(**{"--timesteps": "1000000000"}),
    "simulate/chunk-zero": _sim(**{"--chunk": "0"}),
    "simulate/data-pickle": _sim(**{"--data": "npy:{b}/evil.npy:{g}/y.npy"}),
    # ---- verify
    "verify/missing": ["verify", "{b}/nope.pt", "--json", "{o}"],
    "verify/no-manifest": ["verify", "{b}/junk.pt", "--json", "{o}"],
    "verify/manifest-not-json": ["verify", "{b}/badmanifest.pt", "--json", "{o}"],
    "verify/tampered": ["verify", "{b}/tampered.pt", "--json", "{o}"],
    # ---- demo
    "demo/out-is-file": ["demo", "--out", SNN],
}
CASES = {k: v for k, v in CASES.items() if v is not None}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gives_one_clear_error(case, files, tmp_path, capsys):
    g, b = files
    out = tmp_path / "out" / "result"
    argv = [a.format(g=g, b=b, o=out) for a in CASES[case]]
    before = sorted(p.name for p in g.iterdir())
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's own usage errors
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2, f"{case}: exit {rc}\n{err[-1500:]}"
    assert "Traceback" not in err and "internal error" not in err, err[-1500:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(("error:", "privsnn")) and len(last) > 15, last
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir()), "output written"
    assert sorted(p.name for p in g.iterdir()) == before, "good artifacts were changed"
    assert not (b / "pwned").exists(), "a crafted pickle ran"


def test_sweep_size():
    """The issue asks for the number of cases: keep it visible (and large)."""
    per_command: dict[str, int] = {}
    for name in CASES:
        per_command[name.split("/")[0]] = per_command.get(name.split("/")[0], 0) + 1
    print(json.dumps({"cases": len(CASES), "per_command": per_command}))
    assert len(CASES) >= 100 and len(per_command) == 10
