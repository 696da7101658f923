"""Loihi-style deployment of a privsnn layer graph, one module per job, gathered here for callers:

* :mod:`.targets`: hardware targets (capacities with citations);
* :mod:`.plan`: the deployment plan (layers, synaptic terms, host-fed layers, lags, relays);
* :mod:`.fixed_point`: Loihi-style fixed point (8-bit weights, thresholds, biases, decays);
* :mod:`.chip_model`: the integer chip model, bit-exact with Lava's ``fixed_pt`` models;
* :mod:`.mapping`: cores per layer and whether a network fits.

Nothing here imports Lava; :mod:`privatesnn.hw_targets.lava_sim` builds Lava processes from a
:class:`DeployPlan` and its :class:`FixedPlan`. Each module's docstring gives its semantics.
"""

from .chip_model import ChipModel, reference_fixed, reference_fixed_simple
from .fixed_point import (A_IN_MAX, BIAS_EXP, BIAS_MANT_MAX, DECAY_MAX, UV_MAX, VTH_MAX, VTH_TARGET, W_MANT_MAX,
                          FixedPlan, QLayer, QTerm, quantize_plan)
from .mapping import check_fits, resource_map
from .plan import RESET_MODES, DeployPlan, Layer, Term, build_plan, host_currents
from .targets import DAVIES_2018, LAVA_FIXED, LOIHI2_BRIEF, TARGETS, Target, TargetLimitError, get_target

__all__ = ["A_IN_MAX", "BIAS_EXP", "BIAS_MANT_MAX", "DAVIES_2018", "DECAY_MAX", "LAVA_FIXED", "LOIHI2_BRIEF",
           "RESET_MODES", "TARGETS", "UV_MAX", "VTH_MAX", "VTH_TARGET", "W_MANT_MAX", "ChipModel", "DeployPlan",
           "FixedPlan", "Layer", "QLayer", "QTerm", "Target", "TargetLimitError", "Term", "build_plan", "check_fits",
           "get_target", "host_currents", "quantize_plan", "reference_fixed", "reference_fixed_simple",
           "resource_map"]
