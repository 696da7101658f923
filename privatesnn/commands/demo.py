"""`privsnn demo`: the whole private pipeline on the embedded digits default."""

from __future__ import annotations

import argparse

DESCRIPTION = """Run the private pipeline end to end on scikit-learn's real handwritten digits
(embedded, no download): evaluate the ANN, synthesize images from it, convert, encrypt by temporal
training, audit privacy, count energy, export to NIR and Lava and simulate on Lava."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--quick", action="store_true", help="smaller settings (used by the tests)")
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    return run_demo(args)
