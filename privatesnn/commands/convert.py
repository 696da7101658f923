"""`privsnn convert` (not implemented yet)."""

from __future__ import annotations

import argparse

from .common import not_implemented


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    return not_implemented("convert", "see the project's issues")
