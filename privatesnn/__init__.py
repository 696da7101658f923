"""privsnn: private, low-power spiking neural networks from pretrained ANNs (PrivateSNN, AAAI 2022)."""

import os as _os

# The threading default (set before torch loads, so importing privatesnn first is what counts):
# OpenMP worker threads that spin while they wait make torch up to 10x slower when another process
# shares the CPU (issue 12: 1.8 vs 18.6 it/s on 2 busy cores); sleeping ones cost next to nothing on
# an idle machine. A value the user set wins; so do OMP_NUM_THREADS / --threads / PRIVSNN_THREADS.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
