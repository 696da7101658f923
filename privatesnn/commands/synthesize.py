"""`privsnn synthesize`: images synthesized from a pretrained ANN alone (no real data)."""

from __future__ import annotations

import argparse

from .common import add_device_arg, add_model_args, emit, positive_int

DESCRIPTION = """Synthesize class-balanced images from a pretrained ANN, without any real data.

  bn-inversion  match every BatchNorm layer's running mean/variance + CE to the target class +
                image priors (TV, jitter, flips) - the default for models with BatchNorm
  dirichlet     the paper's class-similarity Dirichlet "data impressions" (soft targets from the
                last layer's weights, temperature 20) - works without BatchNorm

An interrupted run continues from <out>.partial.npz when rerun with the same settings.

  privsnn synthesize --model digits --num 2000 --out synth.npz
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    p.add_argument("--method", choices=("dirichlet", "bn-inversion"), default=None,
                   help="default: bn-inversion when the model has BatchNorm, else dirichlet")
    p.add_argument("--num", type=int, required=True, help="number of images (balanced over classes)")
    p.add_argument("--out", required=True, help="output .npz (a .png preview and a manifest go next to it)")
    p.add_argument("--batch-size", type=positive_int, default=256, help="images optimised together (default 256)")
    p.add_argument("--iterations", type=positive_int, default=None, help="optimisation steps per batch")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate on the pixels")
    p.add_argument("--no-flip", action="store_true", help="no random horizontal flips (bn-inversion)")
    p.add_argument("--resume", action="store_true", help="continue from <out>.partial.npz (also the default)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output or partial run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, metavar="PATH")
    add_device_arg(p)


def run(args: argparse.Namespace) -> int:
    from ..synthesis.driver import make_config, synthesize
    from .common import load_model_from_args, resolve_device

    device = resolve_device(args.device)
    loaded = load_model_from_args(args)
    cfg = make_config(loaded, args.num, method=args.method, batch_size=args.batch_size, iterations=args.iterations,
                      lr=args.lr, seed=args.seed, flip=False if args.no_flip else None)
    summary = synthesize(loaded, cfg, args.out, device=device, overwrite=args.overwrite)
    print(f"synthesized {summary['n']} images ({cfg.method}) from {loaded.spec} -> {args.out} in "
          f"{summary['seconds']:.0f}s; the model assigns {100 * summary['target_agreement']:.1f}% of them to their "
          f"target class; preview {summary['preview']}")
    emit(summary, args.json)
    return 0
