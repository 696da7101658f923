"""`privsnn calibrate`: layer-wise bias calibration of an SNN at a chosen T (synthetic images only)."""

from __future__ import annotations

import argparse

from .common import add_device_arg, emit, positive_int, resolve_device

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
    import time

    import torch

    from ..artifact import load_snn, save_snn
    from ..calibration import calibrate_biases
    from ..errors import PrivsnnError
    from ..manifest import Manifest, parent_entry
    from ..synthesis.store import load_synthetic

    if not 0 < args.timesteps <= 100_000:
        raise PrivsnnError(f"--timesteps must be in 1..100000, got {args.timesteps}")
    artifact = load_snn(args.snn)
    synth = load_synthetic(args.synthetic, expect_model_sha256=(artifact.model or {}).get("sha256"))
    if tuple(synth.images.shape[1:]) != tuple(artifact.graph.input.shape):
        raise PrivsnnError(f"{args.synthetic}: images {tuple(synth.images.shape[1:])} do not fit the SNN input "
                           f"{tuple(artifact.graph.input.shape)}")
    pick = torch.randperm(len(synth.images), generator=torch.Generator().manual_seed(args.seed))[:args.images]
    graph = artifact.graph.copy()
    t0 = time.time()
    errors = calibrate_biases(graph, synth.images[pick], args.timesteps, args.iterations, resolve_device(args.device))
    graph.meta["timesteps"] = args.timesteps
    record = {"method": "bias", "timesteps": args.timesteps, "images": len(pick), "iterations": args.iterations,
              "mean_rate_error_before": errors}
    parents = [parent_entry(args.snn, "snn"), parent_entry(args.synthetic, "synthetic")]
    manifest = Manifest(kind="snn", command="calibrate", settings=record,
                        inputs={"snn": parents[0]["sha256"], "synthetic": parents[1]["sha256"]},
                        real_data_read=bool(artifact.manifest and artifact.manifest.real_data_read),
                        private=artifact.private, seed=args.seed, parents=parents)
    save_snn(args.out, graph, {**artifact.settings, "calibration_bias": record, "timesteps": args.timesteps}, manifest)
    print(f"calibrated {args.snn} -> {args.out} for T={args.timesteps} on {len(pick)} synthetic images "
          f"({time.time() - t0:.0f}s)")
    emit({"out": args.out, "mean_rate_error_before": errors, "seconds": time.time() - t0}, args.json)
    return 0
