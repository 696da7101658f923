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
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
IMAGENET_NORM = ["--mean", ",".join(map(str, IMAGENET_MEAN)), "--std", ",".join(map(str, IMAGENET_STD))]


def shared_available() -> bool:
    return RESNET20.exists() and (SHARED / "cifar10" / "test_x.npy").exists()


def speed_workload(images: int, timesteps: int):
    """The speed benchmarks' network and images: the shared ResNet-20 converted on uniform-noise images
    (speed does not depend on the weights) and the first ``images`` CIFAR-10 test images; the digits CNN
    and noise images where ../shared/data is absent. Returns (loaded model, images, layer graph)."""
    import numpy as np
    import torch

    from privatesnn.conversion import ConversionSettings, convert
    from privatesnn.models import load_model

    gen = torch.Generator().manual_seed(0)
    if shared_available():
        loaded = load_model(f"resnet20:{RESNET20}", mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))
        x = torch.from_numpy(np.load(SHARED / "cifar10" / "test_x.npy")[:images]).permute(0, 3, 1, 2).float() / 255
    else:
        loaded = load_model("digits")
        x = torch.rand(images, *loaded.input_shape, generator=gen)
    graph = convert(loaded, torch.rand(256, *loaded.input_shape, generator=gen), ConversionSettings(timesteps=timesteps),
                    progress=False)
    return loaded, x, graph


def privsnn(*args: str) -> float:
    """Run one `privsnn` command in-process; return its wall time; raise if it fails."""
    from privatesnn.cli import main

    t0 = time.time()
    rc = main([str(a) for a in args])
    if rc != 0:
        raise SystemExit(f"privsnn {' '.join(map(str, args))} failed with exit code {rc}")
    return time.time() - t0


def train_argv(src, out, teacher: list, synthetic, cfg: dict) -> list:
    """The `privsnn train` arguments of a bench's encryption recipe, one place for every bench (they
    must not drift apart). ``teacher``: the model spec and its normalisation options; ``cfg`` keys:
    epochs, t, batch, lr and optionally anchor, kd_alpha, neuron_lr, kd_loss, seed, qat, ema,
    surrogate_alpha, rate_reg, rate_weighting (absent: `train`'s defaults, kd_alpha 0.7). ``synthetic``:
    one synthetic set or a list of them."""
    sets = list(synthetic) if isinstance(synthetic, (list, tuple)) else [synthetic]
    argv = ["train", "--snn", src, "--teacher", *teacher, "--synthetic", *sets, "--epochs", cfg["epochs"],
            "--timesteps", cfg["t"], "--batch-size", cfg["batch"], "--lr", cfg["lr"],
            "--anchor", cfg.get("anchor", 0.0), "--kd-alpha", cfg.get("kd_alpha", 0.7),
            "--neuron-lr", cfg.get("neuron_lr", 0.0), "--kd-loss", cfg.get("kd_loss", "kl"), "--out", out,
            "--seed", cfg.get("seed", 0)]
    argv += ["--qat"] if cfg.get("qat") else []
    argv += ["--ema", cfg["ema"]] if cfg.get("ema") else []
    argv += ["--surrogate-alpha", cfg["surrogate_alpha"]] if cfg.get("surrogate_alpha") else []
    argv += ["--rate-reg", cfg["rate_reg"]] if "rate_reg" in cfg else []
    argv += ["--rate-weighting", cfg["rate_weighting"]] if "rate_weighting" in cfg else []
    return argv


def snn_paths(given: list[str] | None, default_names: tuple[str, ...]) -> list[Path] | None:
    """The SNN artifacts a CIFAR analysis bench reads: ``given`` (``--snn``), else those of
    ``default_names`` under runs/bench/cifar10_resnet20/ that exist; None (and a note) when
    ../shared/data is absent and nothing was given."""
    if given:
        return [Path(s) for s in given]
    if not shared_available():
        print("../shared/data is absent: pass --snn and --data")
        return None
    work = RUNS / "cifar10_resnet20"
    return [work / name for name in default_names if (work / name).exists()]


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
