"""Options shared by several subcommands, defined once."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..devices import resolve_device  # noqa: F401  (re-exported for the commands)
from ..io_utils import write_json


def add_model_args(p: argparse.ArgumentParser, required: bool = True, flag: str = "--model") -> None:
    p.add_argument(flag, required=required, metavar="SPEC",
                   help="digits | ARCH:CHECKPOINT (e.g. resnet20:model.th) | PATH.onnx")
    p.add_argument("--num-classes", type=int, default=None, help="classifier head size (default: per architecture)")
    p.add_argument("--mean", default=None, help="per-channel mean for pixels in [0,1], comma separated")
    p.add_argument("--std", default=None, help="per-channel std, comma separated")


def add_output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", default=None, metavar="PATH", help="write machine-readable results here")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def add_device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default cpu)")


def load_model_from_args(args: argparse.Namespace, flag: str = "model"):
    from ..models import load_model

    return load_model(getattr(args, flag), num_classes=args.num_classes, mean=args.mean, std=args.std)


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def emit(result: dict[str, Any], json_path: str | None) -> None:
    """Write ``result`` to ``--json`` (atomically) when asked."""
    if json_path:
        write_json(json_path, result)
        print(f"wrote {json_path}", file=sys.stderr)


def not_implemented(stage: str, issue: str) -> int:
    print(f"privsnn {stage}: not implemented yet ({issue}); nothing was done.", file=sys.stderr)
    return 1
