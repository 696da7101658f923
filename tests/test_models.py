"""Model registry, checkpoint loading (safe, strict, with clear errors) and the embedded models."""

from __future__ import annotations

import os
import pathlib

import pytest
import torch

from helpers import randomize_bn as _randomize_bn
from privatesnn.cli import main
from privatesnn.data import load_data
from privatesnn.errors import CheckpointError, PrivsnnError
from privatesnn.evaluation import accuracy
from privatesnn.models import create_model, list_models, load_model, model_cfg
from privatesnn.models.loading import parse_floats




@pytest.fixture
def resnet20_ckpt(tmp_path):
    net = _randomize_bn(create_model("resnet20"))
    path = tmp_path / "r20.pt"
    torch.save(net.state_dict(), path)
    return net, path


# --------------------------------------------------------------------------- registry

def test_registry_lists_the_known_architectures():
    names = list_models()
    for n in ("resnet20", "resnet32", "resnet44", "resnet56", "vgg11", "vgg16", "vgg16_nobn", "digits_cnn"):
        assert n in names
    assert names == sorted(names)
    assert list_models("resnet*") == ["resnet20", "resnet32", "resnet44", "resnet56"]


@pytest.mark.parametrize("name", list_models())
def test_every_model_builds_and_runs(name):
    cfg = model_cfg(name)
    net = create_model(name).eval()
    with torch.no_grad():
        out = net(torch.zeros(2, *cfg.input_shape))
    assert out.shape == (2, cfg.num_classes)
    assert len(cfg.mean) == len(cfg.std) == cfg.input_shape[0]


@pytest.mark.parametrize("name", ["resnet20", "vgg11", "digits_cnn"])
def test_num_classes_is_honoured(name):
    net = create_model(name, 100).eval()
    with torch.no_grad():
        out = net(torch.zeros(2, *model_cfg(name).input_shape))
    assert out.shape == (2, 100)


def test_num_classes_below_two_is_refused():
    with pytest.raises(PrivsnnError, match="num-classes"):
        create_model("resnet20", 1)


def test_unknown_architecture_suggests_close_match(tmp_path):
    with pytest.raises(PrivsnnError, match="Did you mean .*resnet20") as ei:
        create_model("resnet21")
    assert "unknown architecture 'resnet21'" in str(ei.value)
    with pytest.raises(PrivsnnError, match="Did you mean .*vgg16"):
        load_model(f"vgg61:{tmp_path / 'x.pt'}")


def test_bad_model_spec_is_explained():
    with pytest.raises(PrivsnnError, match="not understood"):
        load_model("nonsense")


# --------------------------------------------------------------------------- checkpoint loading

@pytest.mark.parametrize("layout", ["bare", "state_dict", "model", "net", "module_prefix", "wrapped_module_prefix"])
def test_checkpoint_layouts_load_identically(layout, resnet20_ckpt, tmp_path):
    net, _ = resnet20_ckpt
    sd = net.state_dict()
    prefixed = {"module." + k: v for k, v in sd.items()}
    obj = {
        "bare": sd,
        "state_dict": {"state_dict": sd, "best_prec1": 91.7, "epoch": 3},
        "model": {"model": sd},
        "net": {"net": sd},
        "module_prefix": prefixed,
        "wrapped_module_prefix": {"state_dict": prefixed, "best_prec1": 91.7},
    }[layout]
    path = tmp_path / f"{layout}.th"
    torch.save(obj, path)
    loaded = load_model(f"resnet20:{path}")
    assert loaded.arch == "resnet20" and loaded.num_classes == 10
    assert loaded.input_shape == (3, 32, 32)
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.net(x), net(x))
    assert not loaded.net.training
    assert len(loaded.sha256) == 64


def test_missing_checkpoint(tmp_path):
    p = tmp_path / "nope.pt"
    with pytest.raises(CheckpointError, match="not found") as ei:
        load_model(f"resnet20:{p}")
    assert str(p) in str(ei.value)


def test_directory_as_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="directory"):
        load_model(f"resnet20:{tmp_path}")


def test_empty_checkpoint(tmp_path):
    p = tmp_path / "empty.pt"
    p.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty") as ei:
        load_model(f"resnet20:{p}")
    assert str(p) in str(ei.value)


def test_truncated_checkpoint(resnet20_ckpt, tmp_path):
    _, good = resnet20_ckpt
    data = good.read_bytes()
    p = tmp_path / "half.pt"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint") as ei:
        load_model(f"resnet20:{p}")
    assert str(p) in str(ei.value)


TEXT_BUG = ("privatesnn/models/loading.py:172 read_checkpoint catches only RuntimeError/EOFError/BadZipFile/"
            "ValueError/OSError/AttributeError/KeyError; a text file starting with 't' (pickle TUPLE opcode) makes "
            "torch's weights-only unpickler raise IndexError, which escapes as an internal error (CLI exit 1)")


@pytest.mark.parametrize("text", [
    "hello world\n",
    "these are not weights\n",
])
def test_text_file_as_checkpoint(tmp_path, text):
    p = tmp_path / "notes.txt"
    p.write_text(text)
    with pytest.raises(CheckpointError) as ei:
        load_model(f"resnet20:{p}")
    assert str(p) in str(ei.value)


def test_text_file_as_checkpoint_via_cli(tmp_path, capsys):
    p = tmp_path / "notes.txt"
    p.write_text("these are not weights\n")
    rc = main(["evaluate", "--model", f"resnet20:{p}", "--data", "digits"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error:")


def test_non_tensor_entries_are_refused(tmp_path):
    p = tmp_path / "odd.pt"
    torch.save({"conv1.weight": [1, 2, 3]}, p)
    with pytest.raises(CheckpointError, match="expected a tensor"):
        load_model(f"resnet20:{p}")


def test_wrong_architecture_names_missing_keys(resnet20_ckpt):
    _, path = resnet20_ckpt
    with pytest.raises(CheckpointError, match="missing keys: layer1.3") as ei:
        load_model(f"resnet32:{path}")
    assert str(path) in str(ei.value)


def test_wrong_head_size_names_the_mismatched_key(tmp_path):
    p = tmp_path / "d12.pt"
    torch.save(create_model("digits_cnn", 12).state_dict(), p)
    with pytest.raises(CheckpointError, match=r"shape mismatch: fc2\.weight \(checkpoint \(12, 64\), model \(10, 64\)\)"):
        load_model(f"digits_cnn:{p}")
    # with the right head size it loads
    assert load_model(f"digits_cnn:{p}", num_classes=12).num_classes == 12


def test_nan_weights_are_refused(resnet20_ckpt, tmp_path):
    net, _ = resnet20_ckpt
    sd = {k: v.clone() for k, v in net.state_dict().items()}
    sd["layer2.1.conv1.weight"][0, 0, 0, 0] = float("nan")
    p = tmp_path / "nan.pt"
    torch.save(sd, p)
    with pytest.raises(CheckpointError, match="layer2.1.conv1.weight.*NaN"):
        load_model(f"resnet20:{p}")


class _EvilSystem:
    """Unpickling this would run a shell command (creating a marker file)."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class _EvilTouch:
    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


@pytest.mark.parametrize("evil_cls", [_EvilSystem, _EvilTouch])
@pytest.mark.parametrize("zipfile", [True, False])
def test_crafted_pickle_is_refused_not_executed(evil_cls, zipfile, tmp_path):
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.th"
    torch.save({"state_dict": {"conv1.weight": evil_cls(marker)}}, p, _use_new_zipfile_serialization=zipfile)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refused") as ei:
        load_model(f"resnet20:{p}")
    assert "weights_only" in str(ei.value)
    assert not marker.exists()


def test_crafted_pickle_via_cli(tmp_path, capsys):
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.th"
    torch.save(_EvilSystem(marker), p)
    rc = main(["evaluate", "--model", f"resnet20:{p}", "--data", "digits"])
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "refused" in lines[0]
    assert "Traceback" not in err
    assert not marker.exists()


# --------------------------------------------------------------------------- --mean / --std

def test_parse_floats():
    assert parse_floats("0.485,0.456,0.406", "--mean") == (0.485, 0.456, 0.406)
    assert parse_floats(" 0.5 ", "--mean") == (0.5,)
    assert parse_floats(None, "--mean") is None
    for bad in ("a,b", "", ",", "0.1;0.2"):
        with pytest.raises(PrivsnnError, match="--mean"):
            parse_floats(bad, "--mean")


def test_mean_std_applied_and_broadcast(resnet20_ckpt):
    _, path = resnet20_ckpt
    loaded = load_model(f"resnet20:{path}", mean="0.1,0.2,0.3", std="0.5")
    assert loaded.mean == (0.1, 0.2, 0.3)
    assert loaded.std == (0.5, 0.5, 0.5)
    x = torch.rand(2, 3, 32, 32)
    mean = torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(loaded.module()(x), loaded.net((x - mean) / 0.5), atol=1e-6)
    # defaults come from the registry
    d = load_model(f"resnet20:{path}")
    assert d.mean == model_cfg("resnet20").mean and d.std == model_cfg("resnet20").std


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(mean="0.1,0.2"), "--mean has 2 values but the model takes 3"),
    (dict(std="0.1,0.2,0.3,0.4"), "--std has 4 values"),
    (dict(std="0.2,0,0.2"), "--std values must be > 0"),
    (dict(mean="x,y,z"), "--mean: expected comma-separated numbers"),
])
def test_mean_std_errors(kwargs, pattern, resnet20_ckpt):
    _, path = resnet20_ckpt
    with pytest.raises(PrivsnnError, match=pattern):
        load_model(f"resnet20:{path}", **kwargs)


def test_mean_wrong_length_via_cli(capsys):
    rc = main(["evaluate", "--model", "digits", "--mean", "0.1,0.2,0.3", "--data", "digits"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: --mean has 3 values")


# --------------------------------------------------------------------------- embedded models

def test_embedded_digits_model_is_accurate(digits_model):
    assert digits_model.arch == "digits_cnn" and digits_model.num_classes == 10
    assert digits_model.input_shape == (1, 8, 8)
    data = load_data("digits")
    acc = accuracy(digits_model.module(), data, digits_model.num_classes)
    assert acc >= 0.97


def test_digits_evaluator_is_a_different_architecture(digits_model):
    ev = load_model("digits-evaluator")
    assert ev.arch == "digits_mlp" != digits_model.arch
    assert type(ev.net) is not type(digits_model.net)
    assert ev.sha256 != digits_model.sha256
    acc = accuracy(ev.module(), load_data("digits"), ev.num_classes)
    assert acc >= 0.9  # measured 0.956
