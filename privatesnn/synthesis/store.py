"""The synthetic-set file format (``synth.npz``), its resumable partial, and the PNG preview.

``synth.npz`` holds ``images`` float32 (N, C, H, W) in [0, 1], ``labels`` int64 (N,) and ``meta``,
a JSON string in a 0-d unicode array. It is always read with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ArtifactError
from ..io_utils import atomic_write

FORMAT = "privsnn-synthetic/1"
PARTIAL_FORMAT = "privsnn-synthetic-partial/1"


@dataclass
class SyntheticSet:
    """Synthetic images (float32 NCHW in [0, 1]), their int64 target labels, and metadata."""

    images: torch.Tensor
    labels: torch.Tensor
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None  # the npz it was read from (its manifest sits next to it)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _write_npz(path: str | Path, **arrays: np.ndarray) -> Path:
    def _w(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would otherwise append ".npz"
            np.savez(f, **arrays)

    return atomic_write(path, _w)


def _check_arrays(images: np.ndarray, labels: np.ndarray, where: str) -> None:
    if images.ndim != 4 or images.dtype != np.float32:
        raise ArtifactError(f"{where}: expected 'images' float32 (N, C, H, W), "
                            f"found {images.dtype} {tuple(images.shape)}")
    if labels.ndim != 1 or labels.dtype != np.int64 or labels.shape[0] != images.shape[0]:
        raise ArtifactError(f"{where}: expected 'labels' int64 ({images.shape[0]},), "
                            f"found {labels.dtype} {tuple(labels.shape)}")


def save_synthetic(path: str | Path, images: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray,
                   meta: dict[str, Any]) -> Path:
    """Write a synthetic set atomically; ``meta`` gets ``format`` added."""
    imgs = np.ascontiguousarray(torch.as_tensor(images).detach().cpu().numpy(), dtype=np.float32)
    labs = np.ascontiguousarray(torch.as_tensor(labels).detach().cpu().numpy(), dtype=np.int64)
    _check_arrays(imgs, labs, str(path))
    meta = {"format": FORMAT, **{k: v for k, v in meta.items() if k != "format"}}
    return _write_npz(path, images=imgs, labels=labs, meta=np.array(json.dumps(meta)))


def _read_npz(path: Path, what: str, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    if not path.exists():
        raise ArtifactError(f"{what} not found: {path}")
    if not path.is_file():
        raise ArtifactError(f"{what} {path} is not a file")
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError("a bare .npy array, not an .npz archive")
        with z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise ArtifactError(f"{path} is not a privsnn {what}: missing {', '.join(missing)} "
                                    f"(expected npz keys {', '.join(keys)}; found {', '.join(z.files) or 'none'})")
            return {k: z[k] for k in keys}
    except ArtifactError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, RuntimeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ArtifactError(f"{path} is not a readable {what} (expected an .npz with "
                            f"{', '.join(keys)}; truncated or corrupt? {msg})") from None


def _meta(arr: np.ndarray, path: Path, fmt: str) -> dict[str, Any]:
    try:
        meta = json.loads(str(arr.item())) if arr.ndim == 0 and arr.dtype.kind == "U" else None
    except json.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise ArtifactError(f"{path}: 'meta' is not privsnn metadata (expected a JSON string with format {fmt!r})")
    return meta


def load_synthetic(path: str | Path, expect_model_sha256: str | None = None) -> SyntheticSet:
    """Read a synthetic set written by :func:`save_synthetic`.

    Raises ArtifactError naming ``path`` if it is missing, corrupt, not ours, or (with
    ``expect_model_sha256``) was made from a different model.
    """
    path = Path(path)
    z = _read_npz(path, "synthetic set", ("images", "labels", "meta"))
    meta = _meta(z["meta"], path, FORMAT)
    _check_arrays(z["images"], z["labels"], str(path))
    shape = meta.get("input_shape")
    if shape is not None and list(z["images"].shape[1:]) != list(shape):
        raise ArtifactError(f"{path}: images have shape {tuple(z['images'].shape[1:])} but meta says {tuple(shape)}")
    imgs = z["images"]
    if imgs.size and not (np.isfinite(imgs).all() and imgs.min() >= 0.0 and imgs.max() <= 1.0):
        bad = int((~np.isfinite(imgs)).sum())
        raise ArtifactError(f"{path}: images must be finite pixels in [0, 1] "
                            f"({bad} NaN/Inf values; range {np.nanmin(imgs):.3g}..{np.nanmax(imgs):.3g})")
    if expect_model_sha256 is not None:
        got = (meta.get("model") or {}).get("sha256")
        if got != expect_model_sha256:
            raise ArtifactError(f"{path}: this synthetic set was made from another model "
                                f"(sha256 {str(got)[:12]}..., expected {expect_model_sha256[:12]}...)")
    return SyntheticSet(torch.from_numpy(z["images"]), torch.from_numpy(z["labels"]), meta, path)


# --- resumable partial: the finished batches so far ----------------------------------------------

def save_partial(path: str | Path, images: np.ndarray, labels: np.ndarray, settings_hash: str,
                 batches_done: int) -> Path:
    meta = {"format": PARTIAL_FORMAT, "settings_hash": settings_hash, "batches_done": batches_done}
    return _write_npz(path, images=images.astype(np.float32), labels=labels.astype(np.int64),
                      meta=np.array(json.dumps(meta)))


def load_partial(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``(images, labels, meta)`` of a partial; ArtifactError if it is unreadable."""
    path = Path(path)
    z = _read_npz(path, "partial synthetic set", ("images", "labels", "meta"))
    return z["images"], z["labels"], _meta(z["meta"], path, PARTIAL_FORMAT)


# --- preview ---------------------------------------------------------------------------------------

def save_preview(path: str | Path, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
                 per_class: int = 10, max_classes: int = 10) -> Path:
    """A PNG grid: one row per class (first ``max_classes``), up to ``per_class`` images each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = min(num_classes, max_classes)
    fig, axes = plt.subplots(rows, per_class, figsize=(per_class * 0.9, rows * 0.9 + 0.3), squeeze=False)
    for k in range(rows):
        idx = torch.nonzero(labels == k).flatten()[:per_class].tolist()
        for j in range(per_class):
            ax = axes[k][j]
            ax.set_xticks([]), ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if j < len(idx):
                img = images[idx[j]].detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
                if img.shape[2] == 1:
                    ax.imshow(img[:, :, 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                else:
                    ax.imshow(img, interpolation="nearest")
            if j == 0:
                ax.set_ylabel(str(k), rotation=0, labelpad=10, va="center")
    fig.tight_layout(pad=0.2)

    def _w(tmp: Path) -> None:
        fig.savefig(tmp, format="png", dpi=80)

    try:
        return atomic_write(path, _w)
    finally:
        plt.close(fig)
