"""The ``privsnn`` command line: only assembles subcommands; each lives in ``privatesnn/commands``.

Exit codes: 0 ok, 2 bad input (one line on stderr, no traceback), 1 internal error or a stage
that is not implemented. ``--debug`` (or PRIVSNN_DEBUG=1) shows tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from typing import Sequence

from . import __version__
from .errors import PrivsnnError

# The pipeline, in the order a user walks it. Each name maps to privatesnn.commands.<module>.
COMMANDS = [
    ("demo", "demo", "run the whole private pipeline on the embedded digits default"),
    ("evaluate", "evaluate", "accuracy of an ANN or SNN on real labelled test data"),
    ("synthesize", "synthesize", "synthesize images from a pretrained ANN (no real data)"),
    ("convert", "convert", "convert an ANN to a spiking network using synthetic images"),
    ("calibrate", "calibrate", "bias calibration of an SNN for a chosen T on synthetic images"),
    ("train", "train", "encrypt an SNN's weights: temporal spike-based training + KD on synthetic data"),
    ("choose-t", "choose_t", "pick the smallest T that agrees with the ANN on held-out synthetic images"),
    ("attack", "attack", "privacy audit: class-leakage attacks on ANN / converted / encrypted SNN"),
    ("energy", "energy", "synaptic-operation counts and energy estimates"),
    ("export", "export", "export an SNN to NIR, Lava (netx HDF5) or ONNX"),
    ("simulate", "simulate", "run an exported SNN in Lava on the CPU"),
    ("verify", "verify", "check an artifact's hashes and provenance chain"),
    ("report", "report", "one self-contained HTML page from run folders (accuracy, energy, privacy, deployment)"),
]
# Commands that run under `torchrun --nproc_per_node N` (see privatesnn/distributed.py).
DISTRIBUTED = {"synthesize", "train", "evaluate"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="privsnn",
        description="Private, low-power SNNs from pretrained ANNs without real data (PrivateSNN), "
                    "deployed through NIR to Lava. Pipeline: synthesize -> convert -> train -> "
                    "evaluate/attack/energy -> export -> simulate.")
    parser.add_argument("--version", action="version", version=f"privsnn {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module, help_text in COMMANDS:
        mod = importlib.import_module(f"privatesnn.commands.{module}")
        p = sub.add_parser(name, help=help_text, description=getattr(mod, "DESCRIPTION", help_text),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _exit_watchdog(rc: int, seconds: float, where: str) -> None:
    """The work is done and written. Should leaving the process group or exiting hang (seen rarely
    with gloo on a loaded 2-core machine), print every thread's stack and exit with the work's own
    code after ``seconds`` instead of waiting forever (a timer thread); should even that thread not
    run (a hang holding the interpreter), faulthandler's C watchdog exits with 1 a minute later."""
    import faulthandler
    import threading

    def leave() -> None:
        faulthandler.dump_traceback(all_threads=True)
        print(f"{where}warning: exit hung {seconds:g} s after the work was done; leaving with its exit code {rc}",
              file=sys.stderr, flush=True)
        os._exit(rc)

    timer = threading.Timer(seconds, leave)
    timer.daemon = True
    timer.start()
    faulthandler.dump_traceback_later(seconds + 60, exit=True)


def main(argv: Sequence[str] | None = None) -> int:
    rank = int(os.environ.get("RANK", "0"))
    if rank > 0:  # under torchrun only rank 0 talks; the others report errors only
        os.environ["TQDM_DISABLE"] = "1"  # read by tqdm when it is first imported (below)
        sys.stdout = open(os.devnull, "w")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    debug = args.debug or os.environ.get("PRIVSNN_DEBUG") == "1"
    where = f"[rank {rank}] " if rank > 0 else ""
    try:
        from .distributed import launched_by_torchrun, shutdown
        from .threads import configure_threads

        configure_threads()  # PRIVSNN_THREADS if set (the default: torch's, with passive OpenMP waits)

        if launched_by_torchrun() and args.command not in DISTRIBUTED:
            raise PrivsnnError(f"`privsnn {args.command}` runs as one process; under torchrun only "
                               f"{', '.join(sorted(DISTRIBUTED))} are supported")
        try:
            rc = args._run(args)
        except BaseException:
            shutdown(clean=False)  # other ranks may be inside a collective: no barrier
            raise
        if launched_by_torchrun():
            _exit_watchdog(int(rc or 0), float(os.environ.get("PRIVSNN_DIST_EXIT_TIMEOUT_S", "120")), where)
        shutdown(clean=True)
        return int(rc or 0)
    except PrivsnnError as e:
        if debug:
            traceback.print_exc()
        print(f"{where}error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # internal error: short message unless --debug
        if debug:
            traceback.print_exc()
        else:
            print(f"{where}internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
