"""`privsnn calibrate`: layer-wise bias calibration of an SNN at a chosen T (synthetic images only)."""

from __future__ import annotations

import argparse

from .common import add_device_arg, emit, positive_int

DESCRIPTION = """Correct each spiking layer's bias so its mean spike rate at --timesteps matches the ANN
activation it stands for, layer after layer, on synthetic images (Li et al. 2021, bias correction).
Tunes the SNN for that T (it may lose accuracy at much longer T). No real data is read.

  privsnn calibrate --snn snn.pt --synthetic synth.npz --timesteps 4 --out snn_cal.pt
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--snn", required=True, help="SNN artifact (from convert or train)")
    p.add_argument("--synthetic", required=True, metavar="NPZ", help="synthetic images from `privsnn synthesize`")
    p.add_argument("--timesteps", type=int, required=True, help="the T to calibrate for")
    p.add_argument("--images", type=positive_int, default=256, help="synthetic images to use (default 256)")
    p.add_argument("--iterations", type=positive_int, default=1, help="sweeps over all layers (default 1)")
    p.add_argument("--out", required=True)
    p.add_argument("--json", default=None, metavar="PATH")
    p.add_argument("--seed", type=int, default=0)
    add_device_arg(p)


def run(args: argparse.Namespace) -> int:
    from ..api import calibrate

    art = calibrate(args.snn, args.synthetic, args.timesteps, args.out, images=args.images,
                    iterations=args.iterations, seed=args.seed, device=args.device)
    emit({"out": args.out, "mean_rate_error_before": art.settings["calibration_bias"]["mean_rate_error_before"],
          "seconds": art.settings["seconds"]}, args.json)
    return 0
