"""`privsnn energy`: synaptic operations counted during simulation, and energy under four conventions."""

from __future__ import annotations

import argparse

from .common import add_device_arg, add_model_args, add_output_args, emit, positive_int

DESCRIPTION = """Count an SNN's operations while it runs (per layer, per image: spikes, accumulates,
multiply-accumulates, neuron updates, the dense count) and estimate its energy against the ANN
under four conventions, side by side: the paper's per-timestep convention, the honest
all-timesteps count (45 nm), a memory-aware model against an int8 ANN, and a Loihi-1 proxy.

  privsnn energy --snn snn.pt --data digits --out energy/
  privsnn energy --snn snn.pt --synthetic synth.npz --timesteps 16 --out energy/   (no real data)

Writes energy.json, energy.md and PNG plots into --out. --energy-model FILE replaces the table of
constants (hw_targets/energy_models.json; every field needs a value and a citation).
Definitions: docs/energy.md.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--snn", required=True, metavar="FILE", help="an SNN artifact from convert/train")
    add_model_args(p, required=False)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", metavar="SPEC", help="real labelled images (reports accuracy too), e.g. digits")
    src.add_argument("--synthetic", metavar="NPZ", help="synthetic images from `privsnn synthesize` (no real data)")
    p.add_argument("--timesteps", type=positive_int, default=None, help="simulation length T (default: the artifact's)")
    p.add_argument("--limit", type=positive_int, default=None, help="count on the first N images only")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--energy-model", default=None, metavar="FILE",
                   help="energy constants (JSON, same fields as hw_targets/energy_models.json)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    add_output_args(p)
    add_device_arg(p)


def run(args: argparse.Namespace) -> int:
    from ..api import energy, load_model

    model = None
    if args.model:
        model = load_model(args.model, num_classes=args.num_classes, mean=args.mean, std=args.std)
    res = energy(args.snn, args.out, data=args.data, synthetic=args.synthetic, model=model,
                 timesteps=args.timesteps, limit=args.limit, batch_size=args.batch_size,
                 energy_model=args.energy_model, seed=args.seed, device=args.device)
    emit(res, args.json)
    return 0
