"""`privsnn evaluate`: accuracy on real labelled test data (the only place real data is read)."""

from __future__ import annotations

import argparse

from .common import (add_device_arg, add_model_args, add_output_args, emit, load_model_from_args, positive_int,
                     resolve_device)

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
    from ..data import load_data
    from ..errors import PrivsnnError
    from ..evaluation import accuracy

    if not args.model and not args.snn:
        raise PrivsnnError("evaluate needs --model SPEC and/or --snn FILE")
    if args.limit is not None and args.limit <= 0:
        raise PrivsnnError(f"--limit must be > 0, got {args.limit}")
    from .. import distributed

    ctx, device = distributed.setup(resolve_device(args.device))
    data = load_data(args.data).limit(args.limit)
    result: dict = {"data": args.data, "n": len(data)}
    if args.model:
        loaded = load_model_from_args(args)
        acc = accuracy(loaded.module(), data, loaded.num_classes, args.batch_size, device)
        print(f"ANN {loaded.spec}: accuracy {acc:.4f} on {len(data)} images of {args.data}")
        result.update(model=loaded.spec, accuracy=acc, ann_accuracy=acc)
    if args.snn:
        from ..snn_eval import evaluate_snn_command

        evaluate_snn_command(args, data, device, result)
    if ctx.is_main:
        emit(result, args.json)
    return 0
