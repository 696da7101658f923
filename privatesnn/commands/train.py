"""`privsnn train`: encrypt an SNN's weights by temporal spike-based training with KD (synthetic data only)."""

from __future__ import annotations

import argparse

from .common import add_device_arg, add_model_args, emit, positive_int

DESCRIPTION = """Train a converted SNN with BPTT through all timesteps (surrogate gradients), knowledge
distillation from the ANN teacher and CE on the synthetic targets. This moves the weights away
from the ANN's (PrivateSNN's "encryption") and lets the SNN run at low T. No real data is read.

  privsnn train --snn snn.pt --teacher digits --synthetic synth.npz --epochs 5 --out private.pt
  privsnn train ... --reset zero --qat    # train what Lava/Loihi runs: reset to zero, 8-bit weights
  privsnn train ... --rate-reg 0.5        # fewer spikes, less energy
  torchrun --nproc_per_node 2 -m privatesnn.cli train ...   # DistributedDataParallel, same result
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--snn", required=True, help="converted SNN artifact (from `privsnn convert`)")
    add_model_args(p, flag="--teacher")
    p.add_argument("--synthetic", required=True, metavar="NPZ", help="synthetic images from `privsnn synthesize`")
    p.add_argument("--epochs", type=positive_int, default=5)
    p.add_argument("--timesteps", type=int, default=None, help="training T (default: the artifact's)")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--kd-alpha", type=float, default=0.7, help="weight of distillation vs CE (default 0.7)")
    p.add_argument("--kd-temperature", type=float, default=4.0)
    p.add_argument("--rate-reg", type=float, default=0.0, help="spike-rate penalty weight (default 0)")
    p.add_argument("--anchor", type=float, default=0.0,
                   help="weight of distillation on the network's T->infinity rate limit; keeps the "
                        "long-T accuracy of the conversion while training at low T (default 0)")
    p.add_argument("--leak", type=float, default=None, help="set the membrane leak of all neurons (LIF)")
    p.add_argument("--reset", choices=("subtract", "zero"), default=None,
                   help="set the reset rule; zero = the Lava/Loihi neuron (deployment)")
    p.add_argument("--surrogate-alpha", type=float, default=0.3)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--qat", action="store_true",
                   help="quantisation-aware: train on the 8-bit weight grid of Loihi targets, so that "
                        "`privsnn export --target lava` deploys exactly the trained weights")
    p.add_argument("--amp", action="store_true",
                   help="mixed precision (fp16 with loss scaling on CUDA, bf16 on CPU); off by default")
    p.add_argument("--resume", action="store_true", help="continue from <out>.ckpt.pt")
    p.add_argument("--out", required=True)
    p.add_argument("--json", default=None, metavar="PATH")
    p.add_argument("--seed", type=int, default=0)
    add_device_arg(p)


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from ..artifact import check_same_model, load_snn, save_snn
    from ..errors import PrivsnnError
    from ..io_utils import remove_stale_temps
    from ..manifest import Manifest, parent_entry
    from ..synthesis.store import load_synthetic
    from ..training import TrainSettings, train_snn
    from .common import load_model_from_args, resolve_device

    from .. import distributed

    ctx, device = distributed.setup(resolve_device(args.device))
    artifact = load_snn(args.snn)
    teacher = load_model_from_args(args, flag="teacher")
    check_same_model(artifact, teacher, role="--teacher")
    synth = load_synthetic(args.synthetic, expect_model_sha256=teacher.sha256)
    if tuple(synth.images.shape[1:]) != tuple(artifact.graph.input.shape):
        raise PrivsnnError(f"{args.synthetic}: images {tuple(synth.images.shape[1:])} do not fit the SNN input "
                           f"{tuple(artifact.graph.input.shape)}")
    settings = TrainSettings(epochs=args.epochs, timesteps=artifact.timesteps if args.timesteps is None else args.timesteps,
                             batch_size=args.batch_size, lr=args.lr, kd_alpha=args.kd_alpha,
                             kd_temperature=args.kd_temperature, rate_reg=args.rate_reg, anchor=args.anchor, leak=args.leak,
                             reset=args.reset, surrogate_alpha=args.surrogate_alpha, augment=not args.no_augment,
                             qat=args.qat, amp=args.amp, seed=args.seed)
    out = Path(args.out)
    ckpt = out.with_name(out.name + ".ckpt.pt")
    if ckpt.exists() and not args.resume:
        raise PrivsnnError(f"{ckpt} exists from an earlier run: pass --resume to continue it, or delete it")
    if ctx.is_main:
        for dest in (out, ckpt):
            remove_stale_temps(dest)  # left by a killed run
    t0 = time.time()
    graph = train_snn(artifact.graph, teacher.module(), synth.images, synth.labels, settings, ckpt,
                      resume=args.resume, device=device, ctx=ctx,
                      on_epoch=lambda e, r: print(f"epoch {e}: loss {r['loss']:.4f}, spike rate {r['spike_rate']:.4f}, "
                                                  f"agreement with teacher {r['teacher_agreement']:.3f} "
                                                  f"({r['seconds']:.0f}s)"))
    if not ctx.is_main:  # rank 0 writes the artifact
        return 0
    graph.meta["timesteps"] = settings.timesteps
    record = {k: v for k, v in settings.__dict__.items()}
    record["timesteps"] = settings.timesteps
    record["processes"] = ctx.world_size
    parents = [parent_entry(args.snn, "snn"), parent_entry(args.synthetic, "synthetic")]
    private = artifact.private
    manifest = Manifest(kind="private-snn", command="train", settings=record,
                        inputs={"snn": parents[0]["sha256"], "synthetic": parents[1]["sha256"], "teacher": teacher.sha256},
                        real_data_read=bool(artifact.manifest and artifact.manifest.real_data_read), private=private,
                        seed=args.seed, parents=[*parents, {"role": "teacher", **teacher.describe()}])
    save_snn(out, graph, record, manifest)
    ckpt.unlink(missing_ok=True)
    print(f"trained {args.snn} -> {out} in {time.time() - t0:.0f}s ({settings.epochs} epochs, T={settings.timesteps})")
    emit({"out": str(out), "history": settings.history, "seconds": time.time() - t0}, args.json)
    return 0
