"""Spiking neuron dynamics: a pure step function and a thin module that loops it over time.

Why our own cell: the conversion method needs reset by subtraction and a multiplicative leak
``v = leak * v + I`` (Rathi/PrivateSNN), which Norse 1.1.0 lacks (its IAF resets to a value; its
LIF scales the input by ``dt * tau_mem_inv``). We keep Norse for the surrogate-gradient threshold
(``norse.torch.functional.threshold.threshold``), and for ``reset="zero", leak=1`` our step is
exactly Norse's ``iaf_feed_forward_step`` (checked in tests/test_neurons.py) — the Lava/Loihi IF.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from norse.torch.functional.threshold import threshold as norse_threshold

SURROGATES = ("triangle", "super", "tanh", "circ", "heaviside")


def neuron_step(current: torch.Tensor, v: torch.Tensor, threshold: float | torch.Tensor, leak: float = 1.0,
                reset: str = "subtract", method: str = "triangle", alpha: float = 0.3
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """One step: ``v = leak*v + I; s = v > threshold; reset``. Returns (spikes, new membrane).

    The surrogate gradient sees the normalised distance ``v/threshold - 1`` (as in Rathi et al.).
    """
    v = leak * v + current
    z = norse_threshold(v / threshold - 1.0, method, alpha)
    if reset == "subtract":
        v = v - z * threshold
    else:
        v = v * (1.0 - z)
    return z, v


def signed_neuron_step(current: torch.Tensor, v: torch.Tensor, count: torch.Tensor, threshold: float | torch.Tensor,
                       leak: float = 1.0, method: str = "triangle", alpha: float = 0.3
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step of a signed IF/LIF neuron (reset by subtraction). Returns (spikes in {-1, 0, 1},
    new membrane, new net spike count).

    As :func:`neuron_step`, and in addition the neuron fires a *negative* spike when its membrane
    falls below zero while it has fired more positive than negative spikes (``v += threshold``,
    ``count -= 1``). Its net count after T steps then tracks ``floor(v_init + sum(I) / threshold)``
    whatever the order in which the input arrived: this removes the unevenness (temporal) error of
    ANN-to-SNN conversion at low T (the signed neuron of Wang et al., IJCAI 2022, and Fast-SNN, Hu et
    al., TPAMI 2023). A spike of either sign is one synaptic event (Loihi 2's signed graded spikes).
    The surrogate gradient of the negative spike sees ``-v / threshold``; the count is not differentiated.
    """
    v = leak * v + current
    pos = norse_threshold(v / threshold - 1.0, method, alpha)
    neg = norse_threshold(-v / threshold, method, alpha) * (count > 0).to(v.dtype)
    z = pos - neg
    return z, v - z * threshold, count + z.detach()


@torch.no_grad()
def signed_steps(currents: torch.Tensor, v: torch.Tensor, count: torch.Tensor, threshold: float, leak: float,
                 out: torch.Tensor) -> torch.Tensor:
    """``out.shape[0]`` steps of :func:`signed_neuron_step` in place on ``v`` and ``count`` (no autograd);
    ``currents`` is (steps or 1, ...). The inference loop of signed layers, here and in streaming."""
    for t in range(out.shape[0]):
        if leak != 1.0:
            v.mul_(leak)
        v.add_(currents[t] if currents.shape[0] > 1 else currents[0])
        z = out[t]
        torch.gt(v, threshold, out=z)  # strict '>' as Norse's heaviside (and lt below)
        z.sub_(((v < 0) & (count > 0)).to(z.dtype))
        v.sub_(z, alpha=threshold)
        count.add_(z)
    return out


def windowed_spikes(currents: torch.Tensor, v_init: torch.Tensor | float, threshold: torch.Tensor | float,
                    timesteps: int, method: str = "triangle", alpha: float = 0.3) -> torch.Tensor:
    """Spikes (T, ...) of a *windowed* IF neuron (reset by subtraction): it integrates the whole
    window's input ``v = v_init * threshold + sum_t I[t]`` (``currents`` (T or 1, ...); a single step
    stands for T equal ones) before it fires, then fires ``s[t] = [v - t * threshold > threshold]``,
    which is what ``v > threshold: s = 1, v -= threshold`` does step by step. Its spike count is the
    QCFS staircase of the total input, ``clamp(ceil(v / threshold) - 1, 0, T)``, whatever order the
    input arrived in: no temporal (unevenness) error, and binary spikes. The price is latency: on a
    chip each layer fires in its own window, after its inputs' windows (the layer-wise time windows
    of TTFS conversion, Stanojevic et al., Nat. Commun. 2024, and FS-neurons, Stoeckl & Maass, Nat.
    Mach. Intell. 2021, here with rate-coded windows). Differentiable through the surrogate of each step.
    """
    if currents.shape[0] not in (1, timesteps):
        raise ValueError(f"windowed neuron: {currents.shape[0]} input steps for a window of {timesteps}")
    total = currents.sum(0) if currents.shape[0] > 1 else currents[0] * timesteps
    x = total / threshold + v_init
    steps = torch.arange(1, timesteps + 1, dtype=x.dtype, device=x.device).view(-1, *([1] * x.dim()))
    if not torch.is_grad_enabled() or not (x.requires_grad):
        return (x.unsqueeze(0) > steps).to(x.dtype)  # strict '>' as Norse's heaviside
    return norse_threshold(x.unsqueeze(0) - steps, method, alpha)


class SpikingNeuron(nn.Module):
    """A layer of IF/LIF neurons over time.

    Input: currents of shape (T, N, ...) or (1, N, ...) (a constant current, e.g. a direct-coded
    first layer). Output: spikes (T, N, ...) in {0, 1}, or in {-1, 0, 1} for ``signed`` neurons
    (:func:`signed_neuron_step`; reset by subtraction only). A ``windowed`` layer integrates the whole
    window before it fires (:func:`windowed_spikes`): its spikes depend on T, not only on the past.

    Example: ``SpikingNeuron(1.0)(torch.rand(10, 5, 2), timesteps=10).shape == (10, 5, 2)``.
    """

    def __init__(self, threshold: float = 1.0, leak: float = 1.0, reset: str = "subtract", v_init: float = 0.5,
                 surrogate: str = "triangle", alpha: float = 0.3, signed: bool = False, windowed: bool = False):
        super().__init__()
        if surrogate not in SURROGATES:
            raise ValueError(f"unknown surrogate {surrogate!r}; supported: {', '.join(SURROGATES)}")
        if signed and reset != "subtract":
            raise ValueError(f"signed neurons reset by subtraction, got reset={reset!r}")
        if windowed and (reset != "subtract" or leak != 1.0 or signed):
            raise ValueError(f"windowed neurons are IF neurons reset by subtraction, not signed; got reset={reset!r}, "
                             f"leak={leak}, signed={signed}")
        self.threshold, self.leak, self.reset, self.v_init = float(threshold), float(leak), reset, float(v_init)
        self.surrogate, self.alpha, self.signed, self.windowed = surrogate, float(alpha), bool(signed), bool(windowed)

    def extra_repr(self) -> str:
        return (f"threshold={self.threshold:.4g}, leak={self.leak}, reset={self.reset}, v_init={self.v_init}"
                + (", signed" if self.signed else "") + (", windowed" if self.windowed else ""))

    def make_trainable(self) -> None:
        """Learn this layer's threshold (as its logarithm: always positive, and one learning rate
        suits layers of any scale) and its initial membrane (a fraction of the threshold), as in
        DIET-SNN (Rathi & Roy 2021). One value per layer: what a Loihi-style layer can hold. The
        float attributes follow the parameters after each :meth:`refresh`."""
        self.log_threshold = nn.Parameter(torch.tensor(math.log(self.threshold)))
        self.v_init_fraction = nn.Parameter(torch.tensor(self.v_init))

    @property
    def trainable(self) -> bool:
        return hasattr(self, "log_threshold")

    @torch.no_grad()
    def refresh(self) -> None:
        """Keep the initial membrane in [0, 1) of the threshold and copy the learnt values into the
        float attributes that inference, export and the graph read."""
        if self.trainable:
            self.v_init_fraction.clamp_(0.0, 0.999)
            self.threshold, self.v_init = float(self.log_threshold.exp()), float(self.v_init_fraction)

    def forward(self, currents: torch.Tensor, timesteps: int) -> torch.Tensor:
        if self.windowed:
            if self.trainable:
                return windowed_spikes(currents, self.v_init_fraction, self.log_threshold.exp(), timesteps,
                                       self.surrogate, self.alpha)
            return windowed_spikes(currents, self.v_init, self.threshold, timesteps, self.surrogate, self.alpha)
        if not (torch.is_grad_enabled() and (currents.requires_grad or self.trainable)):
            return self._forward_inference(currents, timesteps)
        if self.trainable:
            th, v0 = self.log_threshold.exp(), self.v_init_fraction
            v = torch.zeros_like(currents[0]) + v0 * th
        else:
            th = self.threshold
            v = torch.full_like(currents[0], self.v_init * th)
        out = []
        count = torch.zeros_like(v)
        for t in range(timesteps):
            i = currents[t] if currents.shape[0] > 1 else currents[0]
            if self.signed:
                z, v, count = signed_neuron_step(i, v, count, th, self.leak, self.surrogate, self.alpha)
            else:
                z, v = neuron_step(i, v, th, self.leak, self.reset, self.surrogate, self.alpha)
            out.append(z)
        return torch.stack(out)

    @torch.no_grad()
    def _forward_inference(self, currents: torch.Tensor, timesteps: int) -> torch.Tensor:
        """The same dynamics as :func:`neuron_step`, in place and without autograd (about 3x faster)."""
        th = self.threshold
        v = torch.full_like(currents[0], self.v_init * th)
        out = torch.empty((timesteps,) + tuple(currents.shape[1:]), dtype=currents.dtype, device=currents.device)
        if self.signed:
            return signed_steps(currents, v, torch.zeros_like(v), th, self.leak, out)
        for t in range(timesteps):
            if self.leak != 1.0:
                v.mul_(self.leak)
            v.add_(currents[t] if currents.shape[0] > 1 else currents[0])
            z = out[t]
            torch.gt(v, th, out=z)  # strict '>' as Norse's heaviside
            if self.reset == "subtract":
                v.sub_(z, alpha=th)
            else:
                v.mul_(1.0 - z)
        return out


class SpikingMaxPool(nn.Module):
    """Max pooling of spikes, gated by accumulated spike counts (Rueckauer et al. 2017): at each
    step a window passes the current spike of the input that has spiked most so far."""

    def __init__(self, kernel, stride, padding):
        super().__init__()
        self.pool = nn.MaxPool2d(kernel, stride, padding, return_indices=True)

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:  # (T, N, C, H, W)
        counts = torch.zeros_like(spikes[0])
        out = []
        for t in range(spikes.shape[0]):
            counts = counts + spikes[t]
            # tie-break towards the current spike so a fresh spike in an all-zero window passes
            _, idx = self.pool(counts + 0.5 * spikes[t])
            flat = spikes[t].flatten(2)
            out.append(flat.gather(2, idx.flatten(2)).view(idx.shape))
        return torch.stack(out)
