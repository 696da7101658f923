"""What the fused C neuron kernels buy (not a test; writes bench/results/fused_neurons.json).

Same model (the shared ResNet-20, converted on noise images), T, images and thread count, one
process; each simulator with its fused neuron kernel and with the torch passes it replaces, timed in
turns (best of --repeats rounds), image-timesteps per second:
  * the float SNN (`SpikingNetwork.logits_over_time`, `privatesnn/neuron_kernel.c`);
  * the chip model (`simulate --engine reference`, `hw_targets/fused_lif.c`; int8 convolutions where
    exact).
Both paths give identical results (tests/test_fast_simulation.py); this only times them.

    .venv/bin/python bench/fused_neurons.py --threads 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import set_threads, shared_available, speed_workload, write_results  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--timesteps", type=int, default=32)
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    set_threads(args.threads)
    import torch

    import privatesnn.streaming as streaming
    from privatesnn.hw_targets.fused_lif import fused_lif_available
    from privatesnn.hw_targets.loihi import build_plan, quantize_plan
    from privatesnn.neuron_kernel import fused_neurons_available
    from privatesnn.simulation import run_chip_model
    from privatesnn.snn import SpikingNetwork

    if not shared_available():
        raise SystemExit("needs ../shared/data (the ResNet-20 checkpoint and CIFAR-10 test images)")
    if not (fused_neurons_available() and fused_lif_available()):
        raise SystemExit("the fused kernels are not available here (no C compiler, or PRIVSNN_FUSED=0)")
    torch.set_grad_enabled(False)
    T, b = args.timesteps, args.batch
    _, x, graph = speed_workload(args.images, T)
    net = SpikingNetwork(graph).eval()
    fixed = quantize_plan(build_plan(graph, T))
    fused_chunk = streaming.neuron_chunk

    def float_snn(fused: bool):
        def run():
            # the kernel declines (returns False) -> streaming runs its torch passes
            streaming.neuron_chunk = fused_chunk if fused else (lambda *a: False)
            try:
                for i in range(0, len(x), b):
                    net.logits_over_time(x[i:i + b], [T])
            finally:
                streaming.neuron_chunk = fused_chunk
        return run

    fns = {"float_snn_fused": float_snn(True), "float_snn_torch_passes": float_snn(False),
           "chip_model_fused": lambda: run_chip_model(fixed, x, b, progress=False, fused=True),
           "chip_model_torch_passes": lambda: run_chip_model(fixed, x, b, progress=False, fused=False)}
    best = {k: float("inf") for k in fns}
    for _ in range(args.repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    rate = {k: len(x) * T / s for k, s in best.items()}
    rows = [{"simulator": name, "fused_image_timesteps_per_s": rate[f"{name}_fused"],
             "torch_passes_image_timesteps_per_s": rate[f"{name}_torch_passes"],
             "speedup": rate[f"{name}_fused"] / rate[f"{name}_torch_passes"]} for name in ("float_snn", "chip_model")]
    for r in rows:
        print(f"{r['simulator']:>10}: fused {r['fused_image_timesteps_per_s']:7.0f}  torch passes "
              f"{r['torch_passes_image_timesteps_per_s']:7.0f}  image-timesteps/s  ({r['speedup']:.2f}x)", flush=True)
    write_results("fused_neurons.json", {"model": "resnet20", "timesteps": T, "images": len(x), "batch": b,
                                           "threads": args.threads, "repeats": args.repeats, "rows": rows,
                                           "command": "bench/fused_neurons.py " + " ".join(sys.argv[1:])})


if __name__ == "__main__":
    main()
