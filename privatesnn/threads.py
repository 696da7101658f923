"""How many torch threads a command uses.

Default: torch's own (one per core), with the OpenMP workers told to sleep rather than spin while
they wait (``OMP_WAIT_POLICY=PASSIVE``, set in ``privatesnn/__init__.py`` before torch loads). That
is what keeps a shared CPU from collapsing: measured with `python bench/demo_time.py --fixed-threads
2` (bench/results/demo_time.json), two passive threads ran the demo 1.09x slower next to a busy
process, while taking only the CPUs free at start (one thread there) was 1.20x slower. Override with
PRIVSNN_THREADS (or OMP_NUM_THREADS, or a command's ``--threads``).
"""

from __future__ import annotations

import os


def configure_threads() -> int | None:
    """Apply PRIVSNN_THREADS if set; returns the count set, or None (torch's default stands)."""
    value = os.environ.get("PRIVSNN_THREADS")
    if not value:
        return None
    try:
        n = max(1, int(value))
    except ValueError:
        from .errors import PrivsnnError

        raise PrivsnnError(f"PRIVSNN_THREADS must be an integer, got {value!r}") from None
    import torch

    torch.set_num_threads(n)
    return n
