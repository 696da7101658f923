"""Atomic file writing and hashing: nothing half-written is ever left at a destination path."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def relative_path(path: str | os.PathLike, base_dir: str | os.PathLike) -> str:
    """``path`` relative to ``base_dir`` (e.g. the run folder a report is written to), so that results
    carry no absolute paths of the machine that made them and stay valid when the folder moves."""
    return os.path.relpath(Path(path).resolve(), Path(base_dir).resolve())


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; rename it onto ``dest`` only if the block succeeds."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file ordinary permissions
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def remove_stale_temps(dest: str | os.PathLike) -> list[Path]:
    """Delete temporary files that :func:`atomic_path` left for ``dest`` when a process was killed
    (SIGKILL skips the clean-up); call it when a run (re)starts writing ``dest``."""
    dest = Path(dest)
    stale = list(dest.parent.glob(f".{dest.name}.*.tmp")) if dest.parent.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def atomic_write(dest: str | os.PathLike, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp_path)`` and atomically move the result to ``dest``."""
    with atomic_path(dest) as tmp:
        writer(tmp)
    return Path(dest)


def write_json(dest: str | os.PathLike, obj: Any) -> Path:
    """Write JSON atomically (indented, keys kept in insertion order)."""

    def _w(tmp: Path) -> None:
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")

    return atomic_write(dest, _w)


def torch_save(dest: str | os.PathLike, obj: Any) -> Path:
    """``torch.save`` atomically. Objects must be plain containers of tensors/numbers/strings
    so that they load back with ``weights_only=True``."""
    return atomic_write(dest, lambda tmp: torch.save(obj, tmp))


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
