"""`privsnn report`: one self-contained HTML page from one or more run folders."""

from __future__ import annotations

import argparse

DESCRIPTION = """Gather everything the run folders hold into one HTML page a person reads: accuracy
against T (the ANN and every SNN variant), energy under each convention with per-layer bars and the
on-chip delay, the privacy audit's verdict and inverted images, the chip agreement and core mapping,
and the provenance chain (every artifact, its SHA-256, whether real data was read). Interactive plots
(hover values); images and scripts inlined, so the page opens offline and prints.

  privsnn report demo_out --out report.html
  privsnn report runs/cifar runs/digits --out report.html --title "ResNet-20 and digits"
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="folders written by privsnn commands or the demo")
    p.add_argument("--out", required=True, metavar="HTML", help="the page to write")
    p.add_argument("--title", default="privsnn report")


def run(args: argparse.Namespace) -> int:
    from ..html_report import write_report

    path = write_report(args.runs, args.out, args.title)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, self-contained)")
    return 0
