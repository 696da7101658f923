"""Labelled test data specs: digits, npy, CIFAR-10/100 python batches, Tiny ImageNet; bad input fails cleanly."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from privatesnn.data import load_data
from privatesnn.errors import DataError


# --------------------------------------------------------------------------- digits

def test_digits_split():
    d = load_data("digits")
    assert d.x.dtype == torch.float32 and d.y.dtype == torch.int64
    assert d.x.shape == (len(d), 1, 8, 8)
    assert len(d) == 450  # 25% of sklearn's 1797 digits
    assert float(d.x.min()) >= 0.0 and float(d.x.max()) <= 1.0 and float(d.x.max()) == 1.0
    assert d.num_classes == 10
    assert sorted(d.y.unique().tolist()) == list(range(10))
    again = load_data("digits")
    assert torch.equal(d.x, again.x) and torch.equal(d.y, again.y)


def test_limit():
    d = load_data("digits")
    assert len(d.limit(7)) == 7 and torch.equal(d.limit(7).x, d.x[:7])
    assert d.limit(None) is d and d.limit(10_000) is d
    with pytest.raises(DataError, match="--limit"):
        d.limit(0)
    sizes = [len(y) for _, y in d.limit(10).batches(4)]
    assert sizes == [4, 4, 2]


# --------------------------------------------------------------------------- npy

def _save(tmp_path: Path, x, y, xname="x.npy", yname="y.npy"):
    xp, yp = tmp_path / xname, tmp_path / yname
    np.save(xp, x)
    np.save(yp, y)
    return xp, yp


def test_npy_uint8_nhwc(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(5, 4, 6, 3), dtype=np.uint8)
    y = np.array([0, 3, 1, 2, 3])
    xp, yp = _save(tmp_path, x, y)
    d = load_data(f"npy:{xp}:{yp}")
    assert d.x.shape == (5, 3, 4, 6) and d.x.dtype == torch.float32
    assert torch.allclose(d.x, torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32) / 255.0))
    assert d.y.tolist() == [0, 3, 1, 2, 3] and d.y.dtype == torch.int64
    assert d.num_classes == 4


def test_npy_float_nchw(tmp_path):
    x = np.random.default_rng(1).random((4, 1, 8, 8)).astype(np.float64)
    xp, yp = _save(tmp_path, x, np.array([1, 0, 1, 1], dtype=np.int32))
    d = load_data(f"npy:{xp}:{yp}")
    assert d.x.shape == (4, 1, 8, 8) and d.x.dtype == torch.float32
    assert torch.allclose(d.x, torch.from_numpy(x.astype(np.float32)))
    assert d.y.dtype == torch.int64


def test_npy_mismatched_lengths(tmp_path):
    xp, yp = _save(tmp_path, np.zeros((5, 8, 8, 1), np.uint8), np.zeros(4, np.int64))
    with pytest.raises(DataError, match="5 images but .* 4 labels") as ei:
        load_data(f"npy:{xp}:{yp}")
    assert str(xp) in str(ei.value) and str(yp) in str(ei.value)


def test_npy_missing_file(tmp_path):
    xp, _ = _save(tmp_path, np.zeros((2, 8, 8, 1), np.uint8), np.zeros(2, np.int64))
    missing = tmp_path / "nope.npy"
    with pytest.raises(DataError, match="not found") as ei:
        load_data(f"npy:{xp}:{missing}")
    assert str(missing) in str(ei.value)


def test_npy_2d_images(tmp_path):
    xp, yp = _save(tmp_path, np.zeros((3, 64), np.float32), np.zeros(3, np.int64))
    with pytest.raises(DataError, match="4-D") as ei:
        load_data(f"npy:{xp}:{yp}")
    assert str(xp) in str(ei.value)


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan")])
def test_npy_float_out_of_range(tmp_path, bad):
    x = np.full((2, 3, 4, 4), 0.5, np.float32)
    x[1, 2, 3, 3] = bad
    xp, yp = _save(tmp_path, x, np.zeros(2, np.int64))
    with pytest.raises(DataError, match=r"\[0, 1\]") as ei:
        load_data(f"npy:{xp}:{yp}")
    assert str(xp) in str(ei.value)


def test_npy_object_array_is_refused(tmp_path):
    xp, yp = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(xp, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    np.save(yp, np.zeros(2, np.int64))
    with pytest.raises(DataError, match="not a readable .npy") as ei:
        load_data(f"npy:{xp}:{yp}")
    assert str(xp) in str(ei.value)


def test_npy_bad_labels(tmp_path):
    xp, yp = _save(tmp_path, np.zeros((2, 8, 8, 1), np.uint8), np.array([0.0, 1.0]))
    with pytest.raises(DataError, match="labels must be a 1-D integer array"):
        load_data(f"npy:{xp}:{yp}")
    xp, yp = _save(tmp_path, np.zeros((2, 8, 8, 1), np.uint8), np.array([0, -1]))
    with pytest.raises(DataError, match=">= 0"):
        load_data(f"npy:{xp}:{yp}")


@pytest.mark.parametrize("spec", ["foo", "npy:onlyone", "cifar10:", "npy:a.npy:", "tinyimagenet:", "digits:x"])
def test_bad_spec_strings(spec):
    with pytest.raises(DataError) as ei:
        load_data(spec)
    assert repr(spec) in str(ei.value)


# --------------------------------------------------------------------------- CIFAR python batches

def _cifar_batch(n: int, label_key: bytes, seed: int = 0):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, size=n)]
    return data, labels, {b"batch_label": b"testing batch 1 of 1", b"data": data, label_key: labels,
                          b"filenames": [b"img%d.png" % i for i in range(n)]}


def _write_pickle(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def test_cifar10_batch(tmp_path):
    data, labels, batch = _cifar_batch(6, b"labels")
    _write_pickle(tmp_path / "cifar-10-batches-py" / "test_batch", batch)
    d = load_data(f"cifar10:{tmp_path}")
    assert d.x.shape == (6, 3, 32, 32) and d.x.dtype == torch.float32
    assert d.y.tolist() == labels and d.num_classes == 10
    # CIFAR stores each row as R plane, G plane, B plane (1024 each), row-major
    expected = torch.from_numpy(data.reshape(6, 3, 32, 32).astype(np.float32) / 255.0)
    assert torch.allclose(d.x, expected)
    assert float(d.x[2, 1, 0, 5]) == pytest.approx(data[2, 1024 + 5] / 255.0)


def test_cifar10_batch_directly_in_dir(tmp_path):
    _, labels, batch = _cifar_batch(3, b"labels", seed=2)
    _write_pickle(tmp_path / "test_batch", batch)
    assert load_data(f"cifar10:{tmp_path}").y.tolist() == labels


def test_cifar100_batch(tmp_path):
    data, labels, batch = _cifar_batch(4, b"fine_labels", seed=3)
    batch[b"coarse_labels"] = [0] * 4
    _write_pickle(tmp_path / "cifar-100-python" / "test", batch)
    d = load_data(f"cifar100:{tmp_path}")
    assert d.x.shape == (4, 3, 32, 32) and d.num_classes == 100
    assert d.y.tolist() == labels
    assert torch.allclose(d.x, torch.from_numpy(data.reshape(4, 3, 32, 32).astype(np.float32) / 255.0))


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def test_malicious_cifar_batch_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    _, labels, batch = _cifar_batch(2, b"labels")
    batch[b"data"] = _Evil(marker)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    _write_pickle(path, batch)
    with pytest.raises(DataError, match="refusing to load") as ei:
        load_data(f"cifar10:{tmp_path}")
    assert str(path) in str(ei.value)
    assert not marker.exists()


def test_cifar_batch_missing_key(tmp_path):
    _, _, batch = _cifar_batch(2, b"labels")
    _write_pickle(tmp_path / "cifar-100-python" / "test", batch)  # cifar10 labels in a cifar100 file
    with pytest.raises(DataError, match="not a valid cifar100 batch"):
        load_data(f"cifar100:{tmp_path}")


def test_missing_cifar_dir_says_where_it_looked(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(DataError, match="never downloads") as ei:
        load_data(f"cifar10:{root}")
    assert str(root / "cifar-10-batches-py" / "test_batch") in str(ei.value)
    assert str(root / "test_batch") in str(ei.value)


# --------------------------------------------------------------------------- Tiny ImageNet

def _tiny(root: Path, annotations: bool = True) -> list[np.ndarray]:
    from PIL import Image

    base = root / "tiny-imagenet-200"
    (base / "val" / "images").mkdir(parents=True)
    (base / "wnids.txt").write_text("n02124075\nn01443537\n")  # deliberately unsorted
    rng = np.random.default_rng(0)
    rows, imgs = [], []
    for i, wnid in enumerate(["n01443537", "n02124075", "n01443537"]):
        arr = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
        fname = f"val_{i}.png"
        Image.fromarray(arr).save(base / "val" / "images" / fname)
        rows.append(f"{fname}\t{wnid}\t0\t0\t63\t63")
        imgs.append(arr)
    if annotations:
        (base / "val" / "val_annotations.txt").write_text("\n".join(rows) + "\n")
    return imgs


def test_tinyimagenet(tmp_path):
    imgs = _tiny(tmp_path)
    d = load_data(f"tinyimagenet:{tmp_path}")
    assert d.x.shape == (3, 3, 64, 64) and d.num_classes == 200
    assert d.y.tolist() == [0, 1, 0]  # classes index the sorted wnids
    assert torch.allclose(d.x[1], torch.from_numpy(imgs[1].transpose(2, 0, 1).astype(np.float32) / 255.0))
    # the root may also be the tiny-imagenet-200 folder itself
    assert torch.equal(load_data(f"tinyimagenet:{tmp_path / 'tiny-imagenet-200'}").y, d.y)


def test_tinyimagenet_missing_annotations(tmp_path):
    _tiny(tmp_path, annotations=False)
    with pytest.raises(DataError, match="val_annotations.txt not found"):
        load_data(f"tinyimagenet:{tmp_path}")


def test_tinyimagenet_unknown_class(tmp_path):
    _tiny(tmp_path)
    ann = tmp_path / "tiny-imagenet-200" / "val" / "val_annotations.txt"
    ann.write_text(ann.read_text() + "val_0.png\tn99999999\t0\t0\t1\t1\n")
    with pytest.raises(DataError, match="n99999999"):
        load_data(f"tinyimagenet:{tmp_path}")
