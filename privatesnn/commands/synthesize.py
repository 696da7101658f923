"""`privsnn synthesize`: class-balanced synthetic images from a pretrained ANN, without real data."""

from __future__ import annotations

import argparse
import sys

from .common import add_device_arg, add_model_args, add_output_args, emit

DESCRIPTION = """Synthesize class-balanced images from a pretrained classifier (no real data is read).

Methods: dirichlet (PrivateSNN / ZSKD data impressions: soft Dirichlet targets from the last
layer's class similarity) and bn-inversion (DeepInversion-style BatchNorm-statistics matching;
the default when the model has BatchNorm2d layers). Writes OUT (npz), a PNG preview next to it
and OUT.manifest.json. An interrupted run resumes from OUT.partial.npz when rerun with the same
settings. Under `torchrun --nproc_per_node N` the batches are shared out over N processes (the
images are the same as from one process).

examples:
  privsnn synthesize --model digits --num 1000 --out synth.npz
  privsnn synthesize --model resnet20:resnet20.th --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 \\
      --num 2560 --out cifar_synth.npz
  privsnn synthesize --model digits-evaluator --method dirichlet --num 500 --out mlp_synth.npz
  torchrun --nproc_per_node 2 -m privatesnn.cli synthesize --model digits --num 1000 --out synth.npz
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    p.add_argument("--method", choices=["dirichlet", "bn-inversion"], default=None,
                   help="default: bn-inversion if the model has BatchNorm2d layers, else dirichlet")
    # --num-images: the same option, a spelling that newer torchrun (whose --numa-binding makes a bare
    # --num ambiguous in its own parser) passes through to the script
    p.add_argument("--num", "--num-images", dest="num", type=int, required=True, metavar="N",
                   help="number of images (classes balanced)")
    p.add_argument("--out", required=True, metavar="FILE", help="output .npz (PNG preview and manifest next to it)")
    p.add_argument("--batch-size", type=int, default=256, help="images optimised together (default 256)")
    p.add_argument("--iterations", type=int, default=None,
                   help="optimisation steps per batch (default 120 for bn-inversion, 200 for dirichlet)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate in pixel space (default 0.05)")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="random horizontal flips (bn-inversion; default on for RGB, off for 1-channel images)")
    p.add_argument("--beta", type=float, default=1.0, help="dirichlet: concentration scale (default 1.0)")
    p.add_argument("--temperature", type=float, default=20.0, help="dirichlet: softmax temperature (default 20)")
    p.add_argument("--r-feature", type=float, default=None, help="bn-inversion: BN-statistics weight (default 0.5)")
    p.add_argument("--tv", type=float, default=None, help="bn-inversion: total-variation weight (default per image size)")
    p.add_argument("--boundary", type=float, default=None, metavar="M",
                   help="bn-inversion: each image's target mixes in a second class with weight ~ U(0, M), M < 0.5, "
                        "for images nearer the decision boundaries (default 0: one-hot targets)")
    p.add_argument("--crop", type=float, default=None, metavar="A",
                   help="bn-inversion: invert through random resized crops of at least this area fraction "
                        "(e.g. 0.25), so objects appear at varied sizes and places (default 0: off)")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT.partial.npz (also done by default when its settings match)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT and discard any partial run")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's; 1 is often faster on a busy machine)")
    add_output_args(p)
    add_device_arg(p)


def run(args: argparse.Namespace) -> int:

    from ..api import load_model, synthesize
    from ..distributed import current
    from ..errors import PrivsnnError
    from ..synthesis.driver import partial_path

    if args.resume and args.overwrite:
        raise PrivsnnError("--resume and --overwrite contradict each other; pass one")
    if args.threads is not None:
        if args.threads <= 0:
            raise PrivsnnError(f"--threads must be > 0, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    if args.resume and not partial_path(args.out).exists():
        print(f"note: no partial run at {partial_path(args.out)}; starting from the first batch", file=sys.stderr)
    loaded = load_model(args.model, num_classes=args.num_classes, mean=args.mean, std=args.std)
    synth = synthesize(loaded, args.num, args.out, method=args.method, batch_size=args.batch_size,
                       iterations=args.iterations, lr=args.lr, seed=args.seed, flip=args.flip, device=args.device,
                       overwrite=args.overwrite, beta=args.beta, temperature=args.temperature,
                       r_feature=args.r_feature, tv=args.tv, boundary=args.boundary,
                       crop=args.crop)
    if current().is_main:
        emit(synth.meta["summary"], args.json)
    return 0
