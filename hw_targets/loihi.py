"""Loihi-style deployment of a privsnn layer graph, one module per job, gathered here:

* :mod:`.targets`: hardware targets (capacities with citations);
* :mod:`.plan`: the deployment plan (layers, synaptic terms, host-fed layers, lags, relays);
* :mod:`.fixed_point`: Loihi-style fixed point (8-bit weights, thresholds, biases, decays);
* :mod:`.chip_model`: the integer chip model, bit-exact with Lava's ``fixed_pt`` models;
* :mod:`.mapping`: cores per layer and whether a network fits.

Nothing here imports Lava; :mod:`privatesnn.hw_targets.lava_sim` builds Lava processes from a
:class:`DeployPlan` and its :class:`FixedPlan`.

Deployment plan (:func:`build_plan`)
    Every neuron layer (and the output readout) receives a list of synaptic *terms*
    (``Term``: one Conv or Dense connection from one source layer). Average pooling and flatten
    between a source and a weighted layer are folded into that layer exactly:
    ``conv(avgpool_k(x))`` is one convolution with a ``k*K`` kernel, stride ``k*S`` and padding
    ``k*P`` whose taps are ``W/k^2`` (exact for non-overlapping pools, kernel = stride, and inputs
    that the pool tiles exactly); ``linear(flatten(avgpool_k(x)))`` is one dense layer over the
    unpooled map. An ``Add`` becomes several terms into one neuron layer (several connections
    into one Lava port). Max pooling has no Lava equivalent and is refused.

    The layers fed only by the image (the direct-coded first layer) are *host-fed*: their input
    current is computed on the host exactly as the SNN computes it and injected as the neuron
    bias (the way Loihi takes analog values); it is constant over the T steps of an image.

    Time: each Lava Dense/Conv delays by one step. A layer's *lag* is the number of synaptic
    hops from the host-fed layers; a layer of lag L computes SNN step ``k - L + 1`` at local step k
    of an image period ``P = T + lag(output)``, and resets its state at local step L (as netx's
    staggered ``reset_offset`` does). Residual paths with fewer hops get identity *relay*
    layers (an identity connection into neurons that spike iff they received a spike), so all
    terms into a neuron arrive in step.

Fixed point (:func:`quantize_plan`, following Lava's ``fixed_pt`` models and lava-dl netx)
    * weights: 8-bit signed mantissa ``m`` in [-128, 127] with a per-term exponent ``e >= 0``;
      Lava's Dense stores ``2m`` (even integers in [-256, 254], its mixed-sign 8-bit format) with
      ``weight_exp = e``. (Lava 0.10's CPU Conv model ignores ``weight_exp``, so the Conv gets
      ``2m << e``: the same numbers.)
    * per layer a scale ``A`` (integer units per float unit of current): the dominant term uses
      the full mantissa range, and ``A`` is raised by powers of two until the threshold
      mantissa ``vth = round(th * A)`` (17 bits; compared as ``vth << 6``) has >= 12 bits, unless
      the worst-case input current (every input spiking) would overflow the 24-bit current
      register (``|a_in| << 6 < 2^23``). The membrane then spans about +-2^17 / vth thresholds.
    * bias: ``bias_mant = round(b * A)`` (13-bit signed) with ``bias_exp = 6`` (netx's choice);
      host-fed layers receive their image current this way (the scale is chosen so the
      worst-case current fits).
    * decays: ``du = 4095`` (the current decays fully each step: ``u = a_in``),
      ``dv = round((1 - leak) * 4096)`` clipped to 12 bits (IF: ``dv = 0``).
    * the membrane starts at ``v0 = round(v_init * th * A) << 6`` and resets to zero on a spike
      (Lava's LIF), or, for layers trained with reset by subtraction and ``reset="match"``, loses
      ``vth << 6`` (a programmable neuron; with ``reset="zero"`` the difference is measured).

    The output layer's currents are read by a sink and summed over the T steps on the host
    (plus ``T * round(b * A)``); argmax gives the prediction.
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
