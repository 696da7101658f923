"""`privsnn export`: an SNN artifact -> NIR, Lava (netx HDF5 + fixed point + mapping) or ONNX."""

from __future__ import annotations

import argparse

DESCRIPTION = """Export an SNN artifact (from convert/train) for deployment. Every export writes a
manifest (kind nir | lava | onnx) chained to the SNN's.

  privsnn export --snn private.pt --target nir --out model.nir
      NIR graph built with nir's node constructors; read back with type checking and checked
      to reproduce the SNN exactly (and, where Norse 1.1 can import the graph, run in Norse).
  privsnn export --snn private.pt --target lava --out lava_dir [--hw loihi2] [--chips 1]
      lava_dir/: model.nir (the SNN), network.net (lava-dl netx HDF5, sequential networks only,
      average pooling folded into the next layer), fixed_point.json (Loihi-style 8-bit weights
      with a per-layer exponent, threshold mantissas, 12-bit decays, per-layer quantisation
      error), mapping.json (cores per layer, fits one chip?), manifest.json. A network that
      needs more cores than --chips chips have is refused (exit 2), naming the layer.
  privsnn export --snn private.pt --target onnx --out model.onnx
      one timestep with the membrane state as inputs/outputs; checked with onnx.checker and
      run with onnx.reference.ReferenceEvaluator against the torch SNN.

Then: privsnn simulate --artifact lava_dir --target lava --data digits --limit 100
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--snn", required=True, metavar="FILE", help="SNN artifact (snn.pt / private.pt)")
    p.add_argument("--target", required=True, choices=("nir", "lava", "onnx"))
    p.add_argument("--out", required=True, metavar="PATH", help="model.nir | DIR | model.onnx")
    p.add_argument("--timesteps", type=int, default=None, help="T recorded in the export (default: the artifact's)")
    p.add_argument("--hw", default="loihi2", choices=("loihi1", "loihi2"), help="lava: hardware for the mapping")
    p.add_argument("--chips", type=int, default=1, help="lava: chips available (default 1)")
    p.add_argument("--reset", default="match", choices=("match", "zero"),
                   help="lava: match = deploy each layer's trained reset rule (reset-by-subtraction layers get a "
                        "subtracting LIF); zero = Lava's stock LIF everywhere (measure the difference with simulate)")
    p.add_argument("--force", action="store_true", help="replace an existing output")
    p.add_argument("--json", default=None, metavar="PATH", help="write a summary here")


def run(args: argparse.Namespace) -> int:
    from ..api import export
    from .common import emit

    summary = export(args.snn, args.target, args.out, timesteps=args.timesteps, hw=args.hw, chips=args.chips,
                     reset=args.reset, force=args.force)
    emit(summary, args.json)
    return 0
