"""`privsnn convert`: ANN -> SNN with thresholds set on synthetic images (no real data)."""

from __future__ import annotations

import argparse

from .common import add_device_arg, add_model_args, emit, load_model_from_args, positive_int, resolve_device

DESCRIPTION = """Convert a pretrained ANN into a spiking network (IF neurons, reset by subtraction),
balancing thresholds on images synthesized from the ANN itself (`privsnn synthesize`).

  privsnn convert --model digits --synthetic synth.npz --timesteps 16 --out snn.pt

--calibration-data SPEC converts the conventional way on real images instead (the non-private
baseline); that artifact is marked "private": false and "real_data_read": true.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--synthetic", metavar="NPZ", help="synthetic images from `privsnn synthesize`")
    src.add_argument("--calibration-data", metavar="SPEC",
                     help="NON-PRIVATE baseline: calibrate on real images (data spec, e.g. npy:X:Y)")
    p.add_argument("--calibration-limit", type=positive_int, default=None,
                   help="use at most N calibration images (default: all synthetic / 256 real)")
    p.add_argument("--timesteps", type=int, default=32, help="simulation length T (default 32)")
    p.add_argument("--threshold", default="percentile:99.9",
                   help="max | percentile:P of ReLU activations (default percentile:99.9)")
    p.add_argument("--balance", choices=("none", "snn"), default="none",
                   help="snn: layer-by-layer rate matching on the spiking network after normalisation")
    p.add_argument("--encoding", choices=("direct", "rate"), default="direct",
                   help="direct: analog first layer (default); rate: signed Bernoulli spikes")
    p.add_argument("--reset", choices=("subtract", "zero"), default="subtract",
                   help="neuron reset (zero = the Lava/Loihi IF neuron)")
    p.add_argument("--leak", type=float, default=1.0, help="membrane leak factor per step (1 = IF)")
    p.add_argument("--v-init", type=float, default=0.5, help="initial membrane / threshold (default 0.5)")
    p.add_argument("--keep-pooling", action="store_true",
                   help="keep average pools (default: fold them exactly into the next layer so it reads spikes)")
    low = p.add_argument_group("low latency (few timesteps; synthetic images only)")
    low.add_argument("--qcfs-levels", type=int, default=0, metavar="L",
                     help="fine-tune the converted network as a QCFS ANN with L activation levels by "
                          "distillation from the ANN before spiking (Bu et al. 2022; 4 suits T=4-8; default 0 = off)")
    low.add_argument("--qcfs-epochs", type=positive_int, default=30, help="QCFS fine-tuning epochs (default 30)")
    low.add_argument("--qcfs-lr", type=float, default=1e-4, help="QCFS fine-tuning Adam learning rate (default 1e-4)")
    low.add_argument("--qcfs-optimizer", choices=("adam", "sgd"), default="adam",
                     help="adam (default; stable on deep residual networks) or sgd (Nesterov, one-cycle; "
                          "keeps small networks closer to the ANN)")
    low.add_argument("--qcfs-feature-weight", type=float, default=1.0,
                     help="weight of layer-wise activation matching against the ANN during QCFS fine-tuning "
                          "(default 1; 0 = logit distillation only)")
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--out", required=True, help="output SNN artifact (.pt)")
    p.add_argument("--json", default=None, metavar="PATH")
    p.add_argument("--seed", type=int, default=0)
    add_device_arg(p)


def run(args: argparse.Namespace) -> int:
    import time

    import torch

    from ..artifact import save_snn
    from ..conversion import ConversionSettings, convert
    from ..errors import PrivsnnError
    from ..manifest import Manifest, parent_entry

    if args.timesteps <= 0 or args.timesteps > 100_000:
        raise PrivsnnError(f"--timesteps must be in 1..100000, got {args.timesteps}")
    if not 0.0 <= args.leak <= 1.0:
        raise PrivsnnError(f"--leak must be in [0, 1], got {args.leak}")
    if args.qcfs_levels < 0 or args.qcfs_levels > 1024:
        raise PrivsnnError(f"--qcfs-levels must be in 0..1024, got {args.qcfs_levels}")
    if not (args.qcfs_lr > 0 and args.qcfs_lr < 10):
        raise PrivsnnError(f"--qcfs-lr must be in (0, 10), got {args.qcfs_lr}")
    torch.manual_seed(args.seed)
    loaded = load_model_from_args(args)
    private = args.synthetic is not None
    if private:
        from ..synthesis.store import load_synthetic

        synth = load_synthetic(args.synthetic, expect_model_sha256=loaded.sha256)
        images = synth.images
        if tuple(images.shape[1:]) != tuple(loaded.input_shape):
            raise PrivsnnError(f"{args.synthetic}: images are {tuple(images.shape[1:])}, the model takes "
                               f"{tuple(loaded.input_shape)}")
        parents = [parent_entry(args.synthetic, "synthetic")]
        inputs = {"model": loaded.sha256, "synthetic": parents[0]["sha256"]}
    else:
        from ..data import load_data

        images = load_data(args.calibration_data).x
        parents, inputs = [], {"model": loaded.sha256}
    limit = args.calibration_limit or (None if private else 256)
    if limit:
        images = images[:limit]
    settings = ConversionSettings(timesteps=args.timesteps, threshold=args.threshold, encoding=args.encoding,
                                  balance=args.balance, reset=args.reset, leak=args.leak, v_init=args.v_init,
                                  batch_size=args.batch_size, fold_pooling=not args.keep_pooling,
                                  qcfs_levels=args.qcfs_levels, qcfs_epochs=args.qcfs_epochs, qcfs_lr=args.qcfs_lr,
                                  qcfs_feature_weight=args.qcfs_feature_weight, qcfs_optimizer=args.qcfs_optimizer)
    t0 = time.time()
    graph = convert(loaded, images, settings, resolve_device(args.device))
    elapsed = time.time() - t0
    record = {**settings.__dict__, "calibration_images": len(images), "private": private,
              "calibration": "synthetic" if private else f"real:{args.calibration_data}"}
    manifest = Manifest(kind="snn", command="convert", settings=record, inputs=inputs, real_data_read=not private,
                        private=private, seed=args.seed, parents=[{"role": "model", **loaded.describe()}, *parents])
    save_snn(args.out, graph, record, manifest)
    n_neurons = sum(int(torch.tensor(n.shape).prod()) for n in graph.neurons())
    print(f"converted {loaded.spec} -> {args.out}: {len(graph.neurons())} spiking layers, {n_neurons} neurons, "
          f"T={args.timesteps}, calibrated on {len(images)} {'synthetic' if private else 'REAL'} images "
          f"({elapsed:.1f}s)")
    emit({"out": args.out, "private": private, "calibration_images": len(images), "seconds": elapsed,
          "activation_scales": graph.meta.get("activation_scales")}, args.json)
    return 0
