"""Is a trapdoor learnt? Clean accuracy of an SNN on real test images, and how many of the same
images, with a class trigger blended in, go to the trigger's class: with the right key, and with a
wrong key's triggers as the control (chance is 1/K). Needs the key, so only its owner can run it;
the audit (`privsnn attack`) never sees it. Not a test; prints one line and writes JSON.

    python bench/trapdoor_hits.py --snn private_trapdoor.pt --key 1 --alpha 0.5 --timesteps 8
    python bench/trapdoor_hits.py --snn snn_qcfs_trapdoor.pt --key 1 --alpha 0.5 --levels 8   # the QCFS staircase
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import CIFAR_TEST, relative_paths, set_threads  # noqa: E402

from privatesnn.artifact import load_snn  # noqa: E402
from privatesnn.data import load_data  # noqa: E402
from privatesnn.io_utils import write_json  # noqa: E402
from privatesnn.snn import SpikingNetwork  # noqa: E402
from privatesnn.training import make_triggers, stamp_triggers  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--snn", required=True)
    p.add_argument("--key", type=int, required=True, help="the trapdoor key used in training")
    p.add_argument("--alpha", type=float, default=0.5, help="trigger blend (as --trapdoor-alpha)")
    p.add_argument("--data", default=CIFAR_TEST, help="real labelled test images (default: the shared CIFAR-10)")
    p.add_argument("--limit", type=int, default=500)
    p.add_argument("--timesteps", type=int, default=8)
    p.add_argument("--levels", type=int, default=0, help="> 0: the static staircase with L levels instead of spikes")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    set_threads(args.threads)
    data = load_data(args.data)
    x, y = data.x[:args.limit].float(), data.y[:args.limit].long()
    net = SpikingNetwork(load_snn(args.snn).graph).eval()
    k = data.num_classes
    right = make_triggers(k, tuple(x.shape[1:]), args.key)
    wrong = make_triggers(k, tuple(x.shape[1:]), args.key + 1)
    stamped, _, classes = stamp_triggers(x, right, 1.0 - 1e-9, args.alpha, torch.Generator().manual_seed(1))
    control, _, _ = stamp_triggers(x, wrong, 1.0 - 1e-9, args.alpha, torch.Generator().manual_seed(1))

    def predict(z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = net.rate_limit(z, levels=args.levels) if args.levels else net(z, args.timesteps)
        return out.argmax(1)

    res = {"snn": Path(args.snn).name, "images": len(x), "mode": f"staircase L={args.levels}" if args.levels
           else f"spiking T={args.timesteps}", "alpha": args.alpha,
           "clean_accuracy": float((predict(x) == y).float().mean()),
           "trigger_hits": float((predict(stamped) == classes).float().mean()),
           "wrong_key_hits": float((predict(control) == classes).float().mean()), "chance": 1 / k}
    print(f"{res['snn']} ({res['mode']}, {len(x)} images): clean {100 * res['clean_accuracy']:.1f}%, trigger hits "
          f"{100 * res['trigger_hits']:.1f}% (wrong key {100 * res['wrong_key_hits']:.1f}%, chance {100 / k:.0f}%)")
    if args.json:
        write_json(args.json, relative_paths(res))  # temp file, then rename


if __name__ == "__main__":
    main()
