"""Delayed readout (not a test): accuracy of an SNN when its output is averaged over steps k+1..T
instead of 1..T, for several total T and k, on the real CIFAR-10 test images. Writes
bench/results/delayed_readout.json.

    python bench/delayed_readout.py --snn runs/exp11/private_low_latency_e15.pt --limit 500
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import CIFAR_TEST, set_threads, write_results  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--snn", required=True)
    p.add_argument("--data", default=CIFAR_TEST)
    p.add_argument("--limit", type=int, default=500)
    p.add_argument("--totals", default="4,6,8,12,16")
    p.add_argument("--max-skip", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    set_threads(args.threads)
    import torch

    from privatesnn.artifact import load_snn
    from privatesnn.data import load_data
    from privatesnn.snn import SpikingNetwork
    from privatesnn.streaming import SUB_BATCH, run_streaming

    data = load_data(args.data).limit(args.limit)
    net = SpikingNetwork(load_snn(args.snn).graph).eval()
    totals = [int(t) for t in args.totals.split(",")]
    T = max(totals)
    with torch.no_grad():  # per-step output currents (T, N, K), in sub-batches as logits_over_time runs them
        outs = [run_streaming(net, data.x[i:i + SUB_BATCH], T, None) for i in range(0, len(data), SUB_BATCH)]
        out = torch.cat([o.expand(T, *o.shape[1:]) for o in outs], 1)
    rows = []
    print(f"{args.snn}: accuracy (%) with the readout averaged over steps k+1..T ({len(data)} images)")
    for total in totals:
        accs = {k: float((out[k:total].mean(0).argmax(1) == data.y).float().mean())
                for k in range(min(total, args.max_skip + 1))}
        rows.append({"timesteps": total, "accuracy_by_skipped_steps": accs})
        print(f"T={total:<3d} " + "  ".join(f"k={k}: {100 * a:.1f}" for k, a in accs.items()))
    write_results("delayed_readout.json", {"snn": args.snn, "data": args.data, "images": len(data), "rows": rows,
                                           "command": " ".join(sys.argv)})


if __name__ == "__main__":
    main()
