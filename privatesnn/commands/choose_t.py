"""`privsnn choose-t`: the smallest T at which the SNN agrees with its ANN, on synthetic images only."""

from __future__ import annotations

import argparse

from .common import add_device_arg, add_model_args, emit, positive_int, resolve_device

DESCRIPTION = """Pick the number of timesteps without real data: the SNN's top-1 agreement with the
ANN on held-out synthetic images (made with another --seed than the training set) at each T, and
the smallest T that reaches --agreement. No real data is read.

  privsnn synthesize --model digits --num 500 --seed 1 --out heldout.npz
  privsnn choose-t --snn private.pt --model digits --synthetic heldout.npz --agreement 0.98
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--snn", required=True, help="SNN artifact (from convert/train)")
    add_model_args(p)
    p.add_argument("--synthetic", required=True, metavar="NPZ",
                   help="held-out synthetic images (not those the SNN was converted or trained on)")
    p.add_argument("--timesteps", default="1,2,4,8,16,32", help="candidate T, comma separated (default 1..32)")
    p.add_argument("--agreement", type=float, default=0.98,
                   help="wanted top-1 agreement with the ANN, in (0, 1] (default 0.98)")
    p.add_argument("--batch-size", type=positive_int, default=100)
    p.add_argument("--json", default=None, metavar="PATH")
    add_device_arg(p)


def run(args: argparse.Namespace) -> int:
    from ..artifact import check_same_model, load_snn
    from ..choose_t import agreement_over_time, smallest_t
    from ..errors import PrivsnnError
    from ..snn_eval import parse_timesteps
    from ..synthesis.store import load_synthetic
    from .common import load_model_from_args

    if not 0.0 < args.agreement <= 1.0:
        raise PrivsnnError(f"--agreement must be in (0, 1], got {args.agreement}")
    ts = parse_timesteps(args.timesteps, 1)
    artifact = load_snn(args.snn)
    loaded = load_model_from_args(args)
    check_same_model(artifact, loaded)
    synth = load_synthetic(args.synthetic, expect_model_sha256=loaded.sha256)
    if tuple(synth.images.shape[1:]) != tuple(artifact.graph.input.shape):
        raise PrivsnnError(f"{args.synthetic}: images {tuple(synth.images.shape[1:])} do not fit the SNN input "
                           f"{tuple(artifact.graph.input.shape)}")
    agree = agreement_over_time(artifact.graph, loaded.module(), synth.images, ts, args.batch_size,
                                resolve_device(args.device))
    chosen = smallest_t(agree, args.agreement)
    for t in ts:
        print(f"T={t:<5d} agreement with the ANN on {len(synth.images)} synthetic images: {agree[t]:.4f}")
    print(f"smallest T with agreement >= {args.agreement}: {chosen if chosen else 'none of ' + args.timesteps}")
    emit({"snn": args.snn, "synthetic": args.synthetic, "images": len(synth.images), "target": args.agreement,
          "agreement": {str(t): a for t, a in agree.items()}, "chosen_timesteps": chosen, "real_data_read": False},
         args.json)
    return 0
