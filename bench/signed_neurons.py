"""Signed vs plain IF neurons on the same SNN (not a test; writes bench/results/signed_neurons.json).

Each SNN artifact is evaluated on the real test images at T = 1 ... 32 twice: with its neurons as
plain IF neurons and as signed neurons (`convert --signed`: a -1 spike takes back an early +1 when the
membrane falls below zero), weights, thresholds and initial membranes unchanged. The difference is what
the signed neuron alone removes of the temporal (unevenness) error, without any training. Also the
spikes per image at each T (a -1 spike is an event too), for the energy side of the trade.

    python bench/signed_neurons.py                        # the accuracy bench's signed CIFAR SNNs
    python bench/signed_neurons.py --snn runs/bench/cifar10_resnet20/snn_qcfs.pt --limit 500
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import CIFAR_TEST, set_threads, snn_paths, write_results  # noqa: E402

TIMESTEPS = (1, 2, 4, 8, 16, 32)
DEFAULT = ("snn_qcfs_signed.pt", "snn_qcfs_signed_calibrated.pt", "snn_qcfs_signed_t8_calibrated.pt")


def spikes_per_image(graph, x, T: int, batch: int = 100) -> float:
    """Spike events (|s|, both signs) per image over T steps."""
    import torch

    from privatesnn.snn import SpikingNetwork

    net = SpikingNetwork(graph).eval()
    total = 0.0
    with torch.no_grad():
        for k in range(0, len(x), batch):
            _, spikes = net.run(x[k:k + batch], T, return_spikes=True)
            total += sum(float(s.abs().sum()) for s in spikes.values())
    return total / len(x)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--snn", action="append", help="SNN artifact(s) (default: the accuracy bench's signed CIFAR SNNs)")
    p.add_argument("--data", default=CIFAR_TEST)
    p.add_argument("--limit", type=int, default=None, help="first N test images (default all)")
    p.add_argument("--spike-images", type=int, default=100, help="images for the spike count (default 100)")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    set_threads(args.threads)
    from privatesnn.artifact import load_snn
    from privatesnn.data import load_data
    from privatesnn.snn_eval import snn_accuracy_over_time

    paths = snn_paths(args.snn, DEFAULT)
    if paths is None:
        return
    missing = [str(q) for q in paths if not q.exists()]
    if missing or not paths:
        raise SystemExit(f"missing SNN artifact(s): {', '.join(missing) or ', '.join(DEFAULT)} "
                         f"(run python bench/accuracy.py --cases cifar10)")
    data = load_data(args.data).limit(args.limit)
    rows = []
    for path in paths:
        art = load_snn(path)
        for signed in (False, True):
            for n in art.graph.neurons():
                n.signed = signed
            t0 = time.time()
            accs, _ = snn_accuracy_over_time(art, data, list(TIMESTEPS), desc=path.stem)
            spikes = {T: spikes_per_image(art.graph, data.x[:args.spike_images], T) for T in (4, 8, 16)}
            rows.append({"snn": str(path),  # write_results makes paths relative to the repo
                         "neurons": "signed" if signed else "plain", "accuracy": {str(t): a for t, a in accs.items()},
                         "spikes_per_image": {str(t): s for t, s in spikes.items()}, "seconds": time.time() - t0})
    print(f"\n{'SNN':<34} {'neurons':<7} " + " ".join(f"T={t:<5}" for t in TIMESTEPS) + "  spikes/img T=4, 8")
    for r in rows:
        print(f"{Path(r['snn']).stem:<34} {r['neurons']:<7} "
              + " ".join(f"{100 * r['accuracy'][str(t)]:6.2f}" for t in TIMESTEPS)
              + f"  {r['spikes_per_image']['4']:.0f}, {r['spikes_per_image']['8']:.0f}")
    write_results("signed_neurons.json", {"images": len(data), "timesteps": list(TIMESTEPS), "rows": rows,
                                          "command": " ".join(sys.argv)})


if __name__ == "__main__":
    main()
