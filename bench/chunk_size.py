"""How many image-timesteps per convolution call the streaming simulation should use on this CPU.

Sweeps (images per simulation) x (timesteps per chunk) for the shared ResNet-20 at T = 32 on 200
CIFAR-10 test images (or digits without the shared data), one thread, best of --repeats; the
product is what ``privatesnn.streaming.DEFAULT_CHUNK_BATCH`` sets. Not a test; writes
bench/results/chunk_size.json.

    .venv/bin/python bench/chunk_size.py --threads 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import set_threads, speed_workload, write_results  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--timesteps", type=int, default=32)
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--batches", default="10,25,50")
    p.add_argument("--chunks", default="1,2,4,10")
    p.add_argument("--repeats", type=int, default=4)
    args = p.parse_args()
    set_threads(args.threads)
    import torch

    from privatesnn.snn import SpikingNetwork
    from privatesnn.streaming import DEFAULT_CHUNK_BATCH, run_streaming

    torch.set_grad_enabled(False)
    loaded, x, graph = speed_workload(args.images, args.timesteps)
    net = SpikingNetwork(graph).eval()
    T, n = args.timesteps, len(x)
    settings = [(int(b), int(c)) for b in args.batches.split(",") for c in args.chunks.split(",")]
    best = {s: 0.0 for s in settings}
    for _ in range(args.repeats):  # interleaved, so that a slow spell of the machine hits every setting
        for b, c in settings:
            t0 = time.perf_counter()
            for i in range(0, n, b):
                run_streaming(net, x[i:i + b], T, c)
            best[(b, c)] = max(best[(b, c)], n * T / (time.perf_counter() - t0))
    rows = [{"images": b, "chunk": c, "image_timesteps_per_call": b * c, "image_timesteps_per_s": v}
            for (b, c), v in best.items()]
    print(f"{'images':>7}{'chunk':>7}{'per call':>10}{'image-timesteps/s':>20}")
    for r in sorted(rows, key=lambda r: r["image_timesteps_per_call"]):
        print(f"{r['images']:>7}{r['chunk']:>7}{r['image_timesteps_per_call']:>10}{r['image_timesteps_per_s']:>20.0f}")
    write_results("chunk_size.json", {"command": " ".join(["bench/chunk_size.py", *sys.argv[1:]]),
                                      "model": loaded.describe().get("arch", loaded.spec), "timesteps": T,
                                      "threads": args.threads, "default_chunk_batch": DEFAULT_CHUNK_BATCH,
                                      "rows": rows})


if __name__ == "__main__":
    main()
