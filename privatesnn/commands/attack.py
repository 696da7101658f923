"""`privsnn attack`: the privacy audit (class-leakage attacks on ANN / converted / encrypted SNN)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_device_arg, add_model_args, positive_int

DESCRIPTION = """Measure how much class information an SNN leaks, for every available variant: the ANN,
the plainly converted SNN and the encrypted (trained) SNN.

  scenario 1: the SNN's weights read as a ReLU ANN (best of several rescalings): its accuracy on the
              real test data, and model inversion (class-representative images) of that ANN;
  scenario 2: model inversion directly through the SNN, in time, with surrogate gradients (where
              that ascent stalls, through a ReLU surrogate distilled from the SNN's outputs: --distil).

Threat models side by side: (a) the paper's attacker (the weights in a plain ReLU ANN), (b) the
rescaling-aware attacker (thresholds and per-layer scales undone: scenario 1), (c) inversion
through the SNN (scenario 2), (d) an attacker with auxiliary public data (real images of the
classes it does not attack, --prior-data): inversion started from those images with a VAE prior
learnt from them.

Inverted images are scored by an independent evaluator (another architecture than the victim):
attack accuracy = how often it assigns an image to the class it was generated for (chance = 1/K).
The real test data is the auditor's and only scores. Writes DIR/privacy.json, DIR/privacy.md and
PNG grids of the inverted images; the verdict line is computed from the numbers.

examples:
  privsnn attack --snn private.pt --data digits --out audit/
  privsnn attack --snn private.pt --model resnet20:resnet20.th --data cifar10:DIR \\
                 --evaluator cifar_eval.onnx --out audit/ --limit-classes 5 --iterations 100
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--snn", required=True, metavar="FILE", help="the SNN artifact to attack (from convert or train)")
    add_model_args(p, required=False)
    p.add_argument("--data", required=True, metavar="SPEC",
                   help="real labelled test data used only to score: digits | cifar10:DIR | npy:X.npy:Y.npy | ...")
    p.add_argument("--evaluator", default=None, metavar="SPEC",
                   help="independent classifier scoring the inverted images (default for --data digits: "
                        "digits-evaluator)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder for privacy.json/.md and PNGs")
    p.add_argument("--limit-classes", type=positive_int, default=None, metavar="N",
                   help="invert only the first N classes")
    p.add_argument("--iterations", type=positive_int, default=None, help="inversion iterations (default 200)")
    p.add_argument("--per-class", type=positive_int, default=None, help="inverted images per class (default 8)")
    p.add_argument("--timesteps", type=positive_int, default=None, help="SNN timesteps (default: the artifact's)")
    p.add_argument("--inversion-timesteps", type=positive_int, default=None, metavar="T",
                   help="T of the SNN during scenario-2 inversion (default: the SNN's; lower is faster)")
    p.add_argument("--limit", type=positive_int, default=None, help="score accuracies on the first N test images")
    p.add_argument("--no-snn-inversion", action="store_true", help="skip attack scenario 2 (the slowest part)")
    p.add_argument("--prior-data", default="auto", metavar="SPEC",
                   help="threat model (d): real public images for the attacker's image prior; only the upper half "
                        "of the classes is used, and (d) attacks the lower half (default auto: digits-train for "
                        "--data digits, else skipped; 'none' skips)")
    p.add_argument("--objectives", default="logit", metavar="LIST",
                   help="comma list of inversion objectives, each attack runs once per objective and the strongest "
                        "run counts: 'logit' (maximise the class logit; transfers best) and 'ce' (maximise its log "
                        "probability; reaches its class where logit ascent stalls); e.g. logit,ce (default logit)")
    p.add_argument("--distil", default="auto", choices=("auto", "always", "off"),
                   help="attacker (c): where the ascent through the SNN does not reach its class (auto), or always, "
                        "also invert a ReLU surrogate distilled from the SNN's outputs on the attacker's public images "
                        "and noise; the stronger run counts (default auto)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the report here")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_device_arg(p)


def run(args: argparse.Namespace) -> int:
    from ..api import audit
    from ..privacy.inversion import InversionSettings

    report = audit(args.snn, args.data, args.out, model=args.model, evaluator=args.evaluator,
                   limit_classes=args.limit_classes, iterations=args.iterations, seed=args.seed,
                   per_class=args.per_class, timesteps=args.timesteps, limit=args.limit,
                   snn_inversion=not args.no_snn_inversion,
                   inversion=InversionSettings(timesteps=args.inversion_timesteps),
                   model_kwargs={"num_classes": args.num_classes, "mean": args.mean, "std": args.std},
                   device=args.device, json_path=args.json,
                   prior_data=None if args.prior_data == "none" else args.prior_data,
                   objectives=[o.strip() for o in args.objectives.split(",") if o.strip()], distil=args.distil)
    print(f"verdict: {report['verdict']}")
    out = Path(args.out)
    print(f"wrote {out / 'privacy.json'}, {out / 'privacy.md'}" + (f" and {args.json}" if args.json else ""))
    return 0
