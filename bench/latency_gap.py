"""Where the low-T accuracy goes: quantisation vs temporal error (not a test; writes
bench/results/latency_gap.json).

For each SNN artifact, the static network in which every spiking layer is replaced by the staircase
it approximates at T steps (``clamp(floor(I T / theta + v_init), 0, T) / T``, i.e. QCFS with L = T,
the exact spike count of an IF neuron under a constant input) is evaluated next to the SNN itself.
The static network has the quantisation error of T steps but none of the temporal (unevenness)
error; the gap between the two columns is what only training through the spiking dynamics can
close.

    python bench/latency_gap.py                                   # the accuracy bench's CIFAR SNNs
    python bench/latency_gap.py --snn runs/bench/cifar10_resnet20/snn_synthetic.pt --limit 500
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import CIFAR_TEST, ROOT, set_threads, snn_paths, write_results  # noqa: E402

TIMESTEPS = (1, 2, 4, 8, 16, 32)


def static_accuracy(graph, data, T: int, batch: int = 250) -> float:
    """Accuracy of the graph with every neuron as its T-step staircase (constant-input spike count)."""
    import torch

    from privatesnn.snn import SpikingNetwork

    net = SpikingNetwork(graph).eval()
    hits = 0
    with torch.no_grad():
        for k in range(0, len(data), batch):
            hits += int((net.rate_limit(data.x[k:k + batch], levels=T).argmax(1) == data.y[k:k + batch]).sum())
    return hits / len(data)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--snn", action="append", help="SNN artifact(s) (default: the accuracy bench's CIFAR SNNs)")
    p.add_argument("--data", default=CIFAR_TEST)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    set_threads(args.threads)
    from privatesnn.artifact import load_snn
    from privatesnn.data import load_data
    from privatesnn.snn_eval import snn_accuracy_over_time

    paths = snn_paths(args.snn, ("snn_synthetic.pt", "snn_qcfs.pt", "private_low_latency.pt"))
    if paths is None:
        return
    data = load_data(args.data).limit(args.limit)
    rows = []
    print(f"{'snn':<28} {'':<8} " + " ".join(f"T={t:<5}" for t in TIMESTEPS))
    for path in paths:
        art = load_snn(path)
        static = {t: static_accuracy(art.graph, data, t) for t in TIMESTEPS}
        spiking, _ = snn_accuracy_over_time(art, data, list(TIMESTEPS), desc=path.name)
        name = str(path.resolve().relative_to(ROOT)) if path.resolve().is_relative_to(ROOT) else path.name
        rows.append({"snn": name, "static_staircase": static, "spiking": spiking})
        for label, accs in (("static", static), ("spiking", spiking)):
            print(f"{path.name[:28]:<28} {label:<8} " + " ".join(f"{100 * accs[t]:5.1f}%" for t in TIMESTEPS))
    write_results("latency_gap.json", {"data": "cifar10 test (shared)" if args.data == CIFAR_TEST else args.data,
                                       "n": len(data), "timesteps": list(TIMESTEPS), "snns": rows,
                                       "command": " ".join(sys.argv)})


if __name__ == "__main__":
    main()
