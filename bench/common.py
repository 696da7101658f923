"""Helpers shared by the benchmark scripts (not part of the package, never run by CI)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results"
RUNS = ROOT / "runs" / "bench"
RESNET20 = SHARED / "models" / "resnet20-12fca82f.th"
CIFAR_TEST = f"npy:{SHARED / 'cifar10' / 'test_x.npy'}:{SHARED / 'cifar10' / 'test_y.npy'}"
CIFAR_TRAIN4000 = f"npy:{SHARED / 'cifar10' / 'train4000_x.npy'}:{SHARED / 'cifar10' / 'train4000_y.npy'}"
IMAGENET_NORM = ["--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225"]


def shared_available() -> bool:
    return RESNET20.exists() and (SHARED / "cifar10" / "test_x.npy").exists()


def privsnn(*args: str) -> float:
    """Run one `privsnn` command in-process; return its wall time; raise if it fails."""
    from privatesnn.cli import main

    t0 = time.time()
    rc = main([str(a) for a in args])
    if rc != 0:
        raise SystemExit(f"privsnn {' '.join(map(str, args))} failed with exit code {rc}")
    return time.time() - t0


def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def relative_paths(obj):
    """``obj`` with this machine's absolute paths made relative to the repository (``../`` for
    ../shared): committed results must not carry the paths of the machine that made them."""
    if isinstance(obj, str):
        return obj.replace(str(ROOT) + "/", "").replace(str(ROOT.parent) + "/", "../")
    if isinstance(obj, dict):
        return {k: relative_paths(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [relative_paths(v) for v in obj]
    return obj


def write_results(name: str, obj: dict) -> Path:
    sys.path.insert(0, str(ROOT))
    from privatesnn.io_utils import write_json

    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    write_json(path, relative_paths(obj))
    print(f"wrote {path}")
    return path


def set_threads(n: int | None) -> None:
    import torch

    if n:
        torch.set_num_threads(n)
        os.environ["PRIVSNN_THREADS"] = str(n)
