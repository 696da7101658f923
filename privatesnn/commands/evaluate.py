"""`privsnn evaluate`: accuracy on real labelled test data (the only place real data is read)."""

from __future__ import annotations

import argparse

from .common import (add_device_arg, add_model_args, add_output_args, emit, positive_int)

DESCRIPTION = """Accuracy of an ANN (--model) and/or an SNN artifact (--snn) on real test data.

examples:
  privsnn evaluate --model digits --data digits
  privsnn evaluate --model resnet20:resnet20.th --data npy:test_x.npy:test_y.npy --json r.json
  privsnn evaluate --snn private.pt --data digits --timesteps 8,16,32 --json r.json
  torchrun --nproc_per_node 2 -m privatesnn.cli evaluate --snn private.pt --data digits   # batches shared out
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p, required=False)
    p.add_argument("--snn", default=None, metavar="FILE", help="an SNN artifact from convert/train")
    p.add_argument("--data", required=True, metavar="SPEC",
                   help="digits | cifar10:DIR | cifar100:DIR | tinyimagenet:DIR | npy:X.npy:Y.npy")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N images only")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--timesteps", default=None, help="SNN timesteps, comma separated (default: the artifact's)")
    p.add_argument("--plot", default=None, metavar="PNG", help="accuracy-vs-T plot (default next to --json)")
    add_output_args(p)
    add_device_arg(p)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..api import evaluate
    from ..distributed import current

    plot = args.plot or (str(Path(args.json).with_suffix(".png")) if args.json else None)
    result = evaluate(args.data, model=args.model, num_classes=args.num_classes, mean=args.mean, std=args.std,
                      snn=args.snn, timesteps=args.timesteps, limit=args.limit,
                      batch_size=args.batch_size, seed=args.seed, device=args.device,
                      results_dir=Path(args.json).parent if args.json else None, plot=plot)
    if current().is_main:
        emit(result, args.json)
    return 0
