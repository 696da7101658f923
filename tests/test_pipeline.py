"""The private pipeline end to end on digits: synthesize -> convert -> train -> evaluate, with every
real-data reader patched to raise, provenance manifests, resume, and clear errors."""

from __future__ import annotations

import json
import math

import pytest
import torch

from privatesnn.cli import main
from privatesnn.manifest import read_manifest


def _boom(*args, **kwargs):
    raise AssertionError("a real-data reader was called on the private path")


@pytest.fixture(scope="module")
def private_run(tmp_path_factory):
    """synthesize -> convert -> train with every dataset reader patched to raise."""
    import sklearn.datasets
    import torchvision.datasets

    import privatesnn.data as data

    out = tmp_path_factory.mktemp("private")
    mp = pytest.MonkeyPatch()
    for name in ("load_data", "digits_split", "_read_npy", "_read_cifar", "_read_tinyimagenet"):
        mp.setattr(data, name, _boom)
    mp.setattr(sklearn.datasets, "load_digits", _boom)
    for name in ("CIFAR10", "CIFAR100", "ImageFolder", "MNIST"):
        mp.setattr(torchvision.datasets, name, _boom)
    try:
        assert main(["synthesize", "--model", "digits", "--num", "200", "--batch-size", "100", "--iterations", "60",
                     "--out", str(out / "synth.npz")]) == 0
        assert main(["convert", "--model", "digits", "--synthetic", str(out / "synth.npz"), "--timesteps", "8",
                     "--out", str(out / "snn.pt")]) == 0
        assert main(["train", "--snn", str(out / "snn.pt"), "--teacher", "digits", "--synthetic",
                     str(out / "synth.npz"), "--epochs", "2", "--timesteps", "4", "--out", str(out / "private.pt")]) == 0
    finally:
        mp.undo()
    return out


def test_private_path_reads_no_real_data_and_records_provenance(private_run):
    synth, snn, private = (read_manifest(private_run / f) for f in ("synth.npz", "snn.pt", "private.pt"))
    for m in (synth, snn, private):
        assert m is not None and m.real_data_read is False and m.private is True
    # the chain: private <- snn <- synthetic <- model, by hash
    assert private.inputs["snn"] == snn.sha256
    assert private.inputs["synthetic"] == synth.sha256 == snn.inputs["synthetic"]
    assert snn.inputs["model"] == synth.inputs["model"] == private.inputs["teacher"]
    assert not (private_run / "private.pt.ckpt.pt").exists()


def test_encryption_changes_weights_and_keeps_accuracy(private_run, tmp_path):
    from privatesnn.artifact import load_snn

    conv, enc = load_snn(private_run / "snn.pt"), load_snn(private_run / "private.pt")
    diffs = [float((a.weight - b.weight).abs().max()) for a, b in zip(conv.graph.weighted(), enc.graph.weighted())
             if a.trainable]
    assert all(d > 0 for d in diffs)
    for art in ("snn.pt", "private.pt"):
        js = tmp_path / f"{art}.json"
        assert main(["evaluate", "--snn", str(private_run / art), "--model", "digits", "--data", "digits",
                     "--timesteps", "8,16", "--json", str(js)]) == 0
        res = json.loads(js.read_text())
        assert res["n"] == 450 and res["ann_accuracy"] >= 0.97
        accs = {r["timesteps"]: r["accuracy"] for r in res["results"]}
        assert accs[16] >= 0.9, accs
        assert (tmp_path / f"{art}.png").exists()


def test_real_calibration_baseline_is_marked_not_private(tmp_path):
    out = tmp_path / "base.pt"
    assert main(["convert", "--model", "digits", "--calibration-data", "digits", "--calibration-limit", "100",
                 "--timesteps", "8", "--out", str(out)]) == 0
    m = read_manifest(out)
    assert m.private is False and m.real_data_read is True


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_train_resume_matches_uninterrupted(private_run, tmp_path, ema):
    from privatesnn.artifact import load_snn
    from privatesnn.models import load_model
    from privatesnn.synthesis.store import load_synthetic
    from privatesnn.training import TrainSettings, train_snn

    art = load_snn(private_run / "snn.pt")
    synth = load_synthetic(private_run / "synth.npz")
    x, y = synth.images[:64], synth.labels[:64]
    teacher = load_model("digits").module()
    settings = lambda: TrainSettings(epochs=2, timesteps=4, batch_size=32, seed=3, ema=ema)  # noqa: E731
    full = train_snn(art.graph, teacher, x, y, settings(), tmp_path / "a.ckpt", progress=False)

    class Stop(Exception):
        pass

    def stop_after_first(epoch, record):
        if epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        train_snn(art.graph, teacher, x, y, settings(), tmp_path / "b.ckpt", progress=False, on_epoch=stop_after_first)
    assert (tmp_path / "b.ckpt").exists()
    resumed = train_snn(art.graph, teacher, x, y, settings(), tmp_path / "b.ckpt", resume=True, progress=False)
    for a, b in zip(full.weighted(), resumed.weighted()):
        assert torch.equal(a.weight, b.weight)


def test_nan_during_training_stops_cleanly(private_run, tmp_path, monkeypatch, capsys):
    import privatesnn.training as training

    real = training.distillation_loss
    calls = {"n": 0}

    def nan_in_second_epoch(*a, **k):
        calls["n"] += 1
        loss = real(*a, **k)
        return loss * math.nan if calls["n"] > 2 else loss

    monkeypatch.setattr(training, "distillation_loss", nan_in_second_epoch)
    synth = private_run / "synth.npz"
    out = tmp_path / "p.pt"
    # 200 images, batch 100: epoch 1 = calls 1-2 (fine), epoch 2 = NaN
    rc = main(["train", "--snn", str(private_run / "snn.pt"), "--teacher", "digits", "--synthetic", str(synth),
               "--epochs", "2", "--timesteps", "2", "--batch-size", "100", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "nan" in err.lower() and "Traceback" not in err
    assert not out.exists()
    assert (tmp_path / "p.pt.ckpt.pt").exists()  # the last good checkpoint is kept


@pytest.mark.parametrize("argv_tail, needle", [
    (["--timesteps", "0"], "timesteps"),
    (["--timesteps", "-3"], "timesteps"),
    (["--threshold", "percentile:0"], "threshold"),
])
def test_convert_bad_settings(private_run, tmp_path, capsys, argv_tail, needle):
    out = tmp_path / "x.pt"
    rc = main(["convert", "--model", "digits", "--synthetic", str(private_run / "synth.npz"), "--out", str(out),
               *argv_tail])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and not out.exists()


def test_foreign_and_truncated_artifacts(private_run, tmp_path, capsys):
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes((private_run / "snn.pt").read_bytes()[:500])
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file at all")
    cases = [
        ["evaluate", "--snn", str(trunc), "--data", "digits"],
        ["convert", "--model", "digits", "--synthetic", str(junk), "--out", str(tmp_path / "o.pt")],
        # an SNN from digits trained with a teacher of another architecture
        ["train", "--snn", str(private_run / "snn.pt"), "--teacher", "digits-evaluator", "--synthetic",
         str(private_run / "synth.npz"), "--epochs", "1", "--out", str(tmp_path / "o2.pt")],
        # a synthetic set made from another model
        ["convert", "--model", "digits-evaluator", "--synthetic", str(private_run / "synth.npz"),
         "--out", str(tmp_path / "o3.pt")],
    ]
    for argv in cases:
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc == 2, argv
        assert err.startswith("error:") and "Traceback" not in err, err
    assert not any((tmp_path / f).exists() for f in ("o.pt", "o2.pt", "o3.pt"))


def test_verify_reports_chain_and_detects_tampering(private_run, tmp_path, capsys):
    import shutil

    js = tmp_path / "v.json"
    assert main(["verify", str(private_run / "private.pt"), "--json", str(js)]) == 0
    res = json.loads(js.read_text())
    assert res["ok"] and res["real_data_read"] is False
    assert {e["role"] for e in res["chain"]} >= {"snn", "synthetic", "teacher"}
    copy = tmp_path / "private.pt"
    shutil.copy(private_run / "private.pt", copy)
    shutil.copy(private_run / "private.pt.manifest.json", tmp_path / "private.pt.manifest.json")
    with open(copy, "ab") as f:
        f.write(b"tampered")
    capsys.readouterr()
    assert main(["verify", str(copy)]) == 2
    assert "does not match" in capsys.readouterr().err
