"""Synthetic-image generation (privatesnn.synthesis, `privsnn synthesize`) on the embedded digits models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from privatesnn.cli import main
from privatesnn.errors import ArtifactError, PrivsnnError
from privatesnn.manifest import read_manifest
from privatesnn.models import load_model
from privatesnn.synthesis import generate, load_synthetic, make_config, save_synthetic, synthesize, target_agreement
from privatesnn.synthesis.dirichlet import class_similarity, dirichlet_targets
from privatesnn.synthesis.driver import partial_path

TINY = dict(batch_size=20, iterations=30)


@pytest.fixture(scope="module")
def digits():
    return load_model("digits")


@pytest.fixture(scope="module")
def mlp():
    return load_model("digits-evaluator")


@pytest.fixture(scope="module")
def bn_run(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("bn") / "synth.npz"
    cfg = make_config(digits, 40, **TINY)
    return cfg, out, synthesize(digits, cfg, out, progress=False)


@pytest.fixture(scope="module")
def dir_run(mlp, tmp_path_factory):
    out = tmp_path_factory.mktemp("dir") / "synth.npz"
    cfg = make_config(mlp, 40, **TINY)
    return cfg, out, synthesize(mlp, cfg, out, progress=False)


@pytest.mark.parametrize("which,method,model", [("bn_run", "bn-inversion", "digits"),
                                                ("dir_run", "dirichlet", "digits-evaluator")])
def test_output_files(request, which, method, model):
    cfg, out, res = request.getfixturevalue(which)
    loaded = request.getfixturevalue("digits" if model == "digits" else "mlp")
    assert cfg.method == method  # the default: bn-inversion iff the model has BatchNorm2d
    s = load_synthetic(out, expect_model_sha256=loaded.sha256)
    assert s.images.shape == (40, 1, 8, 8) and s.images.dtype == torch.float32
    assert s.labels.shape == (40,) and s.labels.dtype == torch.int64
    assert 0.0 <= float(s.images.min()) and float(s.images.max()) <= 1.0
    assert torch.bincount(s.labels, minlength=10).tolist() == [4] * 10
    assert s.labels.tolist() != sorted(s.labels.tolist())  # shuffled
    assert s.meta["format"] == "privsnn-synthetic/1" and s.meta["method"] == method
    assert s.meta["model"]["sha256"] == loaded.sha256 and s.meta["input_shape"] == [1, 8, 8]
    m = read_manifest(out)
    assert m.kind == "synthetic" and m.real_data_read is False and m.private is True
    assert m.inputs == {"model": loaded.sha256} and m.parents[0]["role"] == "model"
    assert m.settings["target_agreement"] == res["target_agreement"]
    assert out.with_suffix(".png").stat().st_size > 1000
    assert not partial_path(out).exists()


def test_same_seed_same_images(digits):
    cfg = make_config(digits, 20, batch_size=10, iterations=10, seed=3)
    a, la, _ = generate(digits, cfg, progress=False)
    b, lb, _ = generate(digits, cfg, progress=False)
    assert torch.equal(a, b) and torch.equal(la, lb)
    c, _, _ = generate(digits, make_config(digits, 20, batch_size=10, iterations=10, seed=4), progress=False)
    assert not torch.equal(a, c)


def test_resume_equals_uninterrupted(digits, bn_run, tmp_path):
    cfg, full_out, _ = bn_run
    out = tmp_path / "synth.npz"
    assert synthesize(digits, cfg, out, max_batches=1, progress=False) is None
    assert partial_path(out).exists() and not out.exists()
    res = synthesize(digits, cfg, out, progress=False)
    assert res["batches_resumed"] == 1 and not partial_path(out).exists()
    assert torch.equal(load_synthetic(out).images, load_synthetic(full_out).images)


def test_partial_from_other_settings(digits, tmp_path):
    out = tmp_path / "synth.npz"
    cfg = make_config(digits, 20, batch_size=10, iterations=5)
    assert synthesize(digits, cfg, out, max_batches=1, progress=False) is None
    other = make_config(digits, 20, batch_size=10, iterations=6)
    with pytest.raises(ArtifactError, match="--overwrite"):
        synthesize(digits, other, out, progress=False)
    assert synthesize(digits, other, out, overwrite=True, progress=False)["batches_resumed"] == 0
    with pytest.raises(PrivsnnError, match="already exists"):
        synthesize(digits, other, out, progress=False)


def test_load_synthetic_rejects_bad_files(bn_run, tmp_path):
    _, out, _ = bn_run
    data = out.read_bytes()
    cases = {
        "truncated.npz": data[: len(data) // 2],
        "random.npz": np.random.default_rng(0).bytes(4096),
        "empty.npz": b"",
    }
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
    np.savez(tmp_path / "foreign.npz", x=np.zeros(3))
    np.savez(tmp_path / "badmeta.npz", images=np.zeros((2, 1, 8, 8), np.float32), labels=np.zeros(2, np.int64),
             meta=np.array(json.dumps({"format": "something-else"})))
    np.savez(tmp_path / "badshape.npz", images=np.zeros((2, 8, 8), np.float32), labels=np.zeros(2, np.int64),
             meta=np.array(json.dumps({"format": "privsnn-synthetic/1"})))
    np.save(tmp_path / "plain.npy", np.zeros(3))
    for name in [*cases, "foreign.npz", "badmeta.npz", "badshape.npz", "plain.npy", "missing.npz"]:
        with pytest.raises(ArtifactError, match=name):
            load_synthetic(tmp_path / name)
    with pytest.raises(ArtifactError, match="another model"):
        load_synthetic(out, expect_model_sha256="0" * 64)


def test_save_synthetic_roundtrip(tmp_path):
    x, y = torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 0, 1])
    save_synthetic(tmp_path / "s.npz", x, y, {"input_shape": [3, 2, 2]})
    s = load_synthetic(tmp_path / "s.npz")
    assert torch.equal(s.images, x) and torch.equal(s.labels, y)


def test_dirichlet_targets(digits):
    c = class_similarity(digits.net)
    assert c.shape == (10, 10)
    assert torch.allclose(c.diagonal(), torch.ones(10)) and torch.allclose(c.min(1).values, torch.zeros(10))
    y = dirichlet_targets(c, torch.arange(10), 1.0, np.random.default_rng(0))
    assert y.shape == (10, 10) and torch.allclose(y.sum(1), torch.ones(10), atol=1e-5)


def test_bn_inversion_needs_batchnorm(mlp):
    with pytest.raises(PrivsnnError, match="BatchNorm"):
        make_config(mlp, 10, method="bn-inversion")


@pytest.mark.parametrize("bad", [["--num", "0"], ["--num", "20000000"], ["--num", "10", "--iterations", "0"],
                                 ["--num", "10", "--batch-size", "-1"], ["--num", "10", "--resume", "--overwrite"]])
def test_cli_rejects_bad_values(bad, tmp_path, capsys):
    assert main(["synthesize", "--model", "digits", "--out", str(tmp_path / "s.npz"), *bad]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert not (tmp_path / "s.npz").exists()


def test_cli_has_no_dataset_argument(tmp_path):
    with pytest.raises(SystemExit):
        main(["synthesize", "--model", "digits", "--num", "10", "--out", str(tmp_path / "s.npz"), "--data", "digits"])


def test_cli_writes_artifacts(tmp_path, capsys):
    out = tmp_path / "sub" / "s.npz"
    rc = main(["synthesize", "--model", "digits-evaluator", "--num", "10", "--iterations", "5",
               "--out", str(out), "--json", str(tmp_path / "r.json")])
    assert rc == 0
    assert "synthesized 10 images (dirichlet" in capsys.readouterr().out
    assert len(load_synthetic(out)) == 10 and out.with_suffix(".png").exists()
    assert "target_agreement" in json.loads((tmp_path / "r.json").read_text())


def test_bn_inversion_quality(digits):
    """At moderate settings the model classifies its synthetic images as their targets (seen: 1.00)."""
    cfg = make_config(digits, 100, batch_size=100, iterations=100)
    x, y, _ = generate(digits, cfg, progress=False)
    agree, conf = target_agreement(digits.module(), x, y, torch.device("cpu"))
    assert agree >= 0.95 and conf >= 0.9


def test_boundary_targets_make_less_confident_images_with_the_same_labels(digits):
    from privatesnn.synthesis.bn_inversion import boundary_targets

    t = boundary_targets(torch.arange(10).repeat(3), 10, 0.4, torch.Generator().manual_seed(0))
    assert torch.allclose(t.sum(1), torch.ones(30)) and torch.equal(t.argmax(1), torch.arange(10).repeat(3))
    assert ((t > 0).sum(1) == 2).all() and t.max(1).values.min() > 0.6
    sharp = make_config(digits, 100, batch_size=100, iterations=60)
    soft = make_config(digits, 100, batch_size=100, iterations=60, boundary=0.4)
    x0, y0, _ = generate(digits, sharp, progress=False)
    x1, y1, _ = generate(digits, soft, progress=False)
    assert torch.equal(y0, y1)
    agree0, conf0 = target_agreement(digits.module(), x0, y0, torch.device("cpu"))
    agree1, conf1 = target_agreement(digits.module(), x1, y1, torch.device("cpu"))
    assert agree1 >= 0.85 and conf1 < conf0 - 0.05, (agree0, conf0, agree1, conf1)
    with pytest.raises(PrivsnnError, match="boundary"):
        make_config(load_model("digits-evaluator"), 10, method="dirichlet", boundary=0.2)


def test_cli_rejects_boundary_out_of_range(tmp_path, capsys):
    assert main(["synthesize", "--model", "digits", "--num", "10", "--boundary", "0.5",
                 "--out", str(tmp_path / "s.npz")]) == 2
    assert "--boundary must be in [0, 0.5)" in capsys.readouterr().err


@pytest.mark.parametrize("option, value", [("crop", 1.0), ("crop", -0.1), ("boundary", 0.5), ("tv", -1.0),
                                           ("r_feature", 0.0), ("beta", float("nan"))])
def test_make_config_refuses_out_of_range_method_options(digits, option, value):
    # the driver checks them itself, so a caller of make_config that bypasses the CLI and API gets them too
    with pytest.raises(PrivsnnError, match=f"--{option.replace('_', '-')} must"
                       if option != "crop" else "--crop is the smallest area fraction"):
        make_config(digits, 10, method="dirichlet" if option == "beta" else None, **{option: value})


def test_random_resized_crops_zoom_into_each_image_and_are_differentiable():
    from privatesnn.synthesis.driver import random_resized_crops

    ramp = torch.linspace(0, 1, 32).expand(4, 3, 32, 32).clone().requires_grad_(True)
    same = random_resized_crops(ramp, 0.9999, torch.Generator().manual_seed(0))
    assert torch.allclose(same, ramp, atol=1e-3)  # the whole image: identity
    out = random_resized_crops(ramp, 0.25, torch.Generator().manual_seed(1))
    slope = (out[:, 0, 0, 20] - out[:, 0, 0, 10]) / 10
    # magnified by 1/side, side = sqrt(area) in [0.5, 1]: shallower ramps, at most twice as shallow
    assert (slope <= 1 / 31 + 1e-4).all() and (slope >= 0.5 / 31 - 1e-4).all() and (slope < 0.9 / 31).any()
    assert out[:, 0, 0, 0].min() >= 0 and out[:, 0, 0, -1].max() <= 1  # inside the image
    assert not torch.allclose(out[0], out[1])  # one crop per image
    out.sum().backward()
    assert ramp.grad is not None and ramp.grad.abs().sum() > 0


def test_crop_synthesis_is_recorded_and_refused_where_it_does_not_apply(digits, tmp_path, capsys):
    cfg = make_config(digits, 40, batch_size=20, iterations=30, crop=0.5)
    plain = make_config(digits, 40, batch_size=20, iterations=30)
    x1, y1, _ = generate(digits, cfg, progress=False)
    x0, y0, _ = generate(digits, plain, progress=False)
    assert torch.equal(y0, y1) and not torch.allclose(x0, x1)
    agree, _ = target_agreement(digits.module(), x1, y1, torch.device("cpu"))
    assert agree >= 0.8  # still images of their target class (crops of 8x8 digits are a hard case)
    with pytest.raises(PrivsnnError, match="--crop"):
        make_config(load_model("digits-evaluator"), 10, method="dirichlet", crop=0.5)
    out = tmp_path / "s.npz"
    assert main(["synthesize", "--model", "digits", "--num", "20", "--batch-size", "20", "--iterations", "10",
                 "--crop", "0.5", "--out", str(out)]) == 0
    assert read_manifest(out).settings["crop"] == 0.5
    assert main(["synthesize", "--model", "digits", "--num", "10", "--crop", "1", "--out", str(tmp_path / "b.npz")]) == 2
    assert "--crop" in capsys.readouterr().err and not (tmp_path / "b.npz").exists()
