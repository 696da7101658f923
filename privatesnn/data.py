"""Real labelled test data, for evaluation and auditing only (never on the private path).

Specs: ``digits`` (scikit-learn's embedded digits, held-out split), ``digits-train`` (its training
split: only as an auditor's auxiliary "public" data for the prior-aided attacker), ``cifar10:DIR``,
``cifar100:DIR`` (torchvision's python layout, never downloaded), ``tinyimagenet:DIR``
(``tiny-imagenet-200`` with ``val/val_annotations.txt``), ``npy:X.npy:Y.npy``.
Images come back as float32 NCHW in [0, 1].
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .errors import DataError

DIGITS_SEED = 0
DIGITS_TEST_FRACTION = 0.25


@dataclass
class ImageSet:
    """Labelled images: ``x`` float32 (N, C, H, W) in [0, 1], ``y`` int64 (N,)."""

    x: torch.Tensor
    y: torch.Tensor
    spec: str
    num_classes: int

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def limit(self, n: int | None) -> "ImageSet":
        if n is None or n >= len(self):
            return self
        if n <= 0:
            raise DataError(f"--limit must be > 0, got {n}")
        return ImageSet(self.x[:n], self.y[:n], self.spec, self.num_classes)

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(0, len(self), batch_size):
            yield self.x[i:i + batch_size], self.y[i:i + batch_size]


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn digits as (x_train, y_train, x_test, y_test), x float32 (N,1,8,8) in [0,1].

    A fixed stratified split (seed 0, 25% test). Only the digits model's training script reads
    the train part.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None]
    y = d.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SEED, stratify=y)
    return xtr, ytr, xte, yte


def load_data(spec: str) -> ImageSet:
    """Read the labelled test split named by ``spec`` (see module docstring)."""
    spec = str(spec)
    kind, _, rest = spec.partition(":")
    kind = kind.lower()
    if kind == "digits" and not rest:
        _, _, x, y = digits_split()
        return ImageSet(torch.from_numpy(x), torch.from_numpy(y), spec, 10)
    if kind == "digits-train" and not rest:
        x, y, _, _ = digits_split()
        return ImageSet(torch.from_numpy(x), torch.from_numpy(y), spec, 10)
    if kind in ("cifar10", "cifar100") and rest:
        x, y = _read_cifar(Path(rest), kind)
        return ImageSet(x, y, spec, 10 if kind == "cifar10" else 100)
    if kind == "tinyimagenet" and rest:
        x, y = _read_tinyimagenet(Path(rest))
        return ImageSet(x, y, spec, 200)
    if kind == "npy" and rest:
        parts = rest.split(":")
        if len(parts) != 2 or not all(parts):
            raise DataError(f"data spec {spec!r}: expected npy:X.npy:Y.npy")
        x, y = _read_npy(Path(parts[0]), Path(parts[1]))
        return ImageSet(x, y, spec, int(y.max().item()) + 1 if len(y) else 0)
    raise DataError(f"data spec {spec!r} not understood: expected digits, digits-train, cifar10:DIR, cifar100:DIR, "
                    f"tinyimagenet:DIR or npy:X.npy:Y.npy")


def _to_float_nchw(x: np.ndarray, source: str) -> torch.Tensor:
    if x.ndim != 4:
        raise DataError(f"{source}: expected 4-D images (N,H,W,C uint8 or N,C,H,W float), got shape {x.shape}")
    if x.dtype == np.uint8:
        if x.shape[-1] not in (1, 3):
            raise DataError(f"{source}: uint8 images must be NHWC with 1 or 3 channels, got shape {x.shape}")
        return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).float().div_(255.0)
    if np.issubdtype(x.dtype, np.floating):
        if x.shape[1] not in (1, 3):
            raise DataError(f"{source}: float images must be NCHW with 1 or 3 channels, got shape {x.shape}")
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise DataError(f"{source}: float images must be finite and in [0, 1]")
        return torch.from_numpy(x.astype(np.float32))
    raise DataError(f"{source}: unsupported image dtype {x.dtype} (expected uint8 or float)")


def _read_npy(xp: Path, yp: Path) -> tuple[torch.Tensor, torch.Tensor]:
    arrs = []
    for p in (xp, yp):
        if not p.is_file():
            raise DataError(f"data file not found: {p}")
        try:
            arrs.append(np.load(p, allow_pickle=False))
        except (ValueError, OSError, EOFError) as e:
            raise DataError(f"{p}: not a readable .npy array ({e})") from None
    x, y = arrs
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{yp}: labels must be a 1-D integer array, got {y.dtype} {y.shape}")
    if len(x) != len(y):
        raise DataError(f"{xp} has {len(x)} images but {yp} has {len(y)} labels")
    if len(y) and y.min() < 0:
        raise DataError(f"{yp}: labels must be >= 0")
    return _to_float_nchw(x, str(xp)), torch.from_numpy(y.astype(np.int64))


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """CIFAR's python batches are pickles; allow only what they contain (dicts, lists, numpy arrays)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype"),
               ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
               ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_cifar(root: Path, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    sub, fname, label_key = (("cifar-10-batches-py", "test_batch", b"labels") if kind == "cifar10"
                             else ("cifar-100-python", "test", b"fine_labels"))
    candidates = [root / sub / fname, root / fname]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise DataError(f"{kind} test split not found: looked for {' and '.join(map(str, candidates))} "
                        f"(privsnn never downloads data; unpack the python version there)")
    try:
        with open(path, "rb") as f:
            d = _NumpyOnlyUnpickler(io.BytesIO(f.read()), encoding="bytes").load()
        x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        y = np.asarray(d[label_key], dtype=np.int64)
    except (pickle.UnpicklingError, KeyError, ValueError, EOFError, TypeError) as e:
        raise DataError(f"{path}: not a valid {kind} batch ({e})") from None
    return _to_float_nchw(x, str(path)), torch.from_numpy(y)


def _read_tinyimagenet(root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image

    if (root / "tiny-imagenet-200").is_dir():
        root = root / "tiny-imagenet-200"
    wnids_p, ann_p = root / "wnids.txt", root / "val" / "val_annotations.txt"
    for p in (wnids_p, ann_p):
        if not p.is_file():
            raise DataError(f"tinyimagenet: {p} not found (expected the tiny-imagenet-200 layout; never downloaded)")
    wnids = sorted(w.strip() for w in wnids_p.read_text().split() if w.strip())
    index = {w: i for i, w in enumerate(wnids)}
    xs, ys = [], []
    for line in ann_p.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) < 2:
            continue
        fname, wnid = parts[0], parts[1]
        if wnid not in index:
            raise DataError(f"{ann_p}: class {wnid!r} of {fname} is not in {wnids_p}")
        img_p = root / "val" / "images" / fname
        try:
            with Image.open(img_p) as im:
                xs.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
        except OSError as e:
            raise DataError(f"tinyimagenet: cannot read {img_p} ({e})") from None
        ys.append(index[wnid])
    if not xs:
        raise DataError(f"{ann_p}: no images listed")
    return _to_float_nchw(np.stack(xs), str(root)), torch.tensor(ys, dtype=torch.int64)
