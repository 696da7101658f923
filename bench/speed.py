"""Simulation speed on this stack (not a test; merges into bench/results/speed.json, one entry per
Python + torch stack, so the 3.10 + Lava stack and the core on a current torch sit side by side).

Measures, with a fixed thread count: the ANN (images/s) and the SNN's ``logits_over_time``
(image-timesteps/s) at several batch sizes, on the shared ResNet-20 (an SNN converted here on
uniform-noise images; accuracy is not the point) or, without ../shared/data, on the digits CNN.

    .venv/bin/python bench/speed.py --threads 1                 # the 3.10 + Lava stack
    .venv-core/bin/python bench/speed.py --threads 1            # the core on the newest Python

Run one at a time on an idle machine: two busy processes make both slow. The SpikingJelly
comparison of issue 12 is not part of this script yet.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import RESNET20, RESULTS, relative_paths, set_threads, shared_available  # noqa: E402


def _best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--timesteps", type=int, default=32)
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--batch-sizes", default="5,25,100")
    p.add_argument("--repeats", type=int, default=2, help="best of N timed runs per setting")
    args = p.parse_args()
    set_threads(args.threads)
    import torch

    from privatesnn.conversion import ConversionSettings, convert
    from privatesnn.models import load_model
    from privatesnn.snn import SpikingNetwork

    torch.set_grad_enabled(False)
    if shared_available():
        loaded = load_model(f"resnet20:{RESNET20}", mean="0.485,0.456,0.406", std="0.229,0.224,0.225")
    else:
        loaded = load_model("digits")
    gen = torch.Generator().manual_seed(0)
    calib = torch.rand(256, *loaded.input_shape, generator=gen)
    graph = convert(loaded, calib, ConversionSettings(timesteps=args.timesteps), progress=False)
    x = torch.rand(args.images, *loaded.input_shape, generator=gen)
    ann = loaded.module().eval()
    net = SpikingNetwork(graph).eval()
    T = args.timesteps
    ann_s = _best_of(lambda: [ann(x[i:i + 100]) for i in range(0, len(x), 100)], args.repeats)
    rows = []
    for b in [int(v) for v in args.batch_sizes.split(",")]:
        s = _best_of(lambda: [net.logits_over_time(x[i:i + b], [T]) for i in range(0, len(x), b)], args.repeats)
        rows.append({"batch": b, "seconds": s, "image_timesteps_per_s": len(x) * T / s})
        print(f"SNN batch {b:>4}: {len(x) * T / s:8.0f} image-timesteps/s", flush=True)
    stack = f"python {platform.python_version()}, torch {torch.__version__.split('+')[0]}"
    entry = {"model": loaded.describe().get("arch", loaded.spec), "timesteps": T, "images": len(x),
             "threads": args.threads, "ann_images_per_s": len(x) / ann_s, "snn": rows,
             "best_image_timesteps_per_s": max(r["image_timesteps_per_s"] for r in rows),
             "command": " ".join(sys.argv)}
    print(f"{stack}: ANN {entry['ann_images_per_s']:.0f} images/s; SNN best "
          f"{entry['best_image_timesteps_per_s']:.0f} image-timesteps/s")
    path = RESULTS / "speed.json"
    results = json.loads(path.read_text()) if path.exists() else {"stacks": {}}
    results["stacks"][stack] = entry
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from privatesnn.io_utils import write_json

    write_json(path, relative_paths(results))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
