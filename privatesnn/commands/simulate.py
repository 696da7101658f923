"""`privsnn simulate`: run real test images through Lava on the CPU and compare with the SNN."""

from __future__ import annotations

import argparse

DESCRIPTION = """Run an exported SNN on real labelled test images as the chip would, and compare with
the trained SNN (privatesnn's torch simulation of the same graph).

Engines: `lava` (default): Lava processes on the CPU (Loihi2SimCfg, fixed_pt and/or floating_pt),
one image after another with the state reset in between. `reference`: the integer chip model
(Lava's fixed_pt arithmetic, bit-exact, batched: whole test sets in minutes); it also runs the
first --check-lava images through Lava and reports whether the two agree bit for bit.

  privsnn simulate --artifact lava_dir --target lava --data digits --limit 100 --json sim.json
  privsnn simulate --artifact model.nir --target lava --data npy:X.npy:Y.npy --limit 200 --tag both
  privsnn simulate --artifact lava_dir --engine reference --data cifar10:DIR --check-lava 20

--artifact: a `privsnn export --target lava` directory, a .nir file (e.g. made by another tool)
or a lava-dl netx .net file. Reports accuracy, agreement of the Lava predictions with the SNN's,
spikes per layer per image and seconds per image. --reset zero deploys Lava's stock LIF (reset to
zero) even where the SNN resets by subtraction, to measure that difference.

The lava engine needs Lava, the privsnn[lava] extra (lava-nc 0.10, lava-dl 0.6; Python 3.10 only).
Without it the artifact is still checked, then the command stops with one error line (exit 2);
`--engine reference` works without Lava (its cross-check is then skipped, and says so).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--artifact", required=True, metavar="DIR|FILE", help="lava export dir, .nir or .net file")
    p.add_argument("--target", default="lava", choices=("lava",))
    p.add_argument("--data", required=True, metavar="SPEC", help="digits | cifar10:DIR | npy:X.npy:Y.npy | ...")
    p.add_argument("--limit", type=int, default=None, help="first N test images (default: all)")
    p.add_argument("--timesteps", type=int, default=None, help="T (default: the artifact's)")
    p.add_argument("--engine", default="lava", choices=("lava", "reference"),
                   help="lava (default): Lava processes; reference: the batched integer chip model")
    p.add_argument("--check-lava", type=int, default=20, metavar="N",
                   help="with --engine reference: images also run through Lava and compared bit for bit "
                        "(default 20; 0 = none)")
    p.add_argument("--batch-size", type=int, default=100, help="images per batch of the chip model and SNN")
    p.add_argument("--tag", default="fixed_pt", choices=("fixed_pt", "floating_pt", "both"),
                   help="Lava models to run (default fixed_pt: bit-accurate Loihi arithmetic)")
    p.add_argument("--reset", default=None, choices=("match", "zero"),
                   help="neuron reset on Lava (default: the export's, else match)")
    p.add_argument("--chunk", type=int, default=100, help="images per Lava run call (default 100)")
    p.add_argument("--lava-conv", action="store_true",
                   help="use Lava's stock (scipy, slow) Conv model instead of the bit-identical im2col one")
    p.add_argument("--json", default=None, metavar="PATH")
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..api import simulate
    from .common import emit

    result = simulate(args.artifact, args.data, engine=args.engine, limit=args.limit, timesteps=args.timesteps,
                      check_lava=args.check_lava, batch_size=args.batch_size, tag=args.tag, reset=args.reset,
                      chunk=args.chunk, lava_conv=args.lava_conv, seed=args.seed,
                      results_dir=Path(args.json).parent if args.json else None)
    emit(result, args.json)
    return 0
