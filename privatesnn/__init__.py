"""privsnn: private, low-power spiking neural networks from pretrained ANNs (PrivateSNN, AAAI 2022)."""

import os as _os

# The threading default (set before torch loads, so importing privatesnn first is what counts):
# OpenMP worker threads that spin while they wait make torch up to 10x slower when another process
# shares the CPU (issue 12: 1.8 vs 18.6 it/s on 2 busy cores); sleeping ones cost next to nothing on
# an idle machine. A value the user set wins; so do OMP_NUM_THREADS / --threads / PRIVSNN_THREADS.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

# The Python API (privatesnn/api.py), loaded on first use so that `import privatesnn` stays light.
__all__ = ["load_model", "synthesize", "convert", "calibrate", "train", "evaluate", "energy", "audit", "export",
           "simulate", "report"]


def __getattr__(name: str):
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'privatesnn' has no attribute {name!r}")
