"""Post-conversion bias calibration on synthetic images (Li et al., ICML 2021, "A free lunch from
ANN": bias correction, layer by layer).

At low T a spiking layer's mean output drifts from the activation its ANN counterpart produces
(quantisation and unevenness errors pile up with depth). For each neuron layer in order, on a batch
of synthetic images: simulate the SNN for T steps, compare each channel's mean spike rate with the
mean of the ANN activation that the layer stands for (in spike units: ``clamp(I / theta, 0, 1)``,
or the QCFS staircase the graph was fine-tuned with), and add the difference, times the threshold,
to the bias of the synaptic layer that feeds it. Later layers are calibrated on the corrected
earlier ones. The result is tuned for that T (recorded in ``graph.meta["calibration"]``).
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .errors import PrivsnnError
from .graph import Add, Conv, Graph, Linear, Neuron
from .layers import build_synapses
from .snn import SpikingNetwork, static_forward


def _reference_activation(graph: Graph):
    """The static activation (spike units) the graph's weights were trained or converted for."""
    levels = (graph.meta.get("qcfs") or {}).get("levels")
    if levels:
        from .qcfs import qcfs

        return lambda node, i: qcfs(i, torch.tensor(node.threshold), int(levels))
    return lambda node, i: (i / node.threshold).clamp(0.0, 1.0)


def _channel_mean(a: torch.Tensor) -> torch.Tensor:
    """Mean over every axis but the channel one: (..., N, C[, H, W]) -> (C,)."""
    if a.dim() >= 4:  # (T?, N, C, H, W) or (N, C, H, W)
        return a.transpose(-3, 0).reshape(a.shape[-3], -1).mean(1)
    return a.reshape(-1, a.shape[-1]).mean(0)


def bias_node(graph: Graph, neuron: Neuron) -> Conv | Linear:
    """The trainable synaptic layer whose bias drives ``neuron`` (through an Add on residual paths)."""
    src = graph[neuron.inputs[0]]
    candidates = [graph[s] for s in src.inputs] if isinstance(src, Add) else [src]
    for node in candidates:
        if isinstance(node, (Conv, Linear)) and node.trainable:
            return node
    raise PrivsnnError(f"neuron layer {neuron.name!r}: no trainable conv/linear layer feeds it, so its bias "
                       f"cannot be calibrated")


@torch.no_grad()
def calibrate_biases(graph: Graph, images: torch.Tensor, timesteps: int, iterations: int = 1,
                     device: torch.device | str = "cpu", progress: bool = True) -> dict[str, float]:
    """Correct biases in place (see module docstring); returns each layer's mean |rate error| before
    its correction. ``iterations`` > 1 repeats the whole sweep."""
    if timesteps <= 0:
        raise PrivsnnError(f"calibration T must be > 0, got {timesteps}")
    if len(images) == 0:
        raise PrivsnnError("no calibration images")
    x = images.to(device)
    graph.meta.pop("host_current_grid", None)  # new biases: a chip grid recorded by --qat no longer holds
    targets: dict[str, torch.Tensor] = {}
    static_forward(graph, x, build_synapses(graph).to(device), _reference_activation(graph), clamp_rate_input=True,
                   record=targets)
    targets = {k: _channel_mean(v) for k, v in targets.items()}
    errors: dict[str, float] = {}
    neurons = graph.neurons()
    for sweep in range(iterations):
        for node in tqdm(neurons, desc=f"bias calibration T={timesteps} ({sweep + 1}/{iterations})", leave=False,
                         disable=not progress):
            layer = bias_node(graph, node)
            snn = SpikingNetwork(graph, timesteps).eval().to(device)
            rates: dict[str, torch.Tensor] = {}
            snn.spike_observer = lambda name, s: rates.__setitem__(name, _channel_mean(s.float())) if name == node.name else None
            snn.run(x, timesteps)
            diff = (targets[node.name] - rates[node.name]).cpu()
            errors.setdefault(node.name, float(diff.abs().mean()))
            correction = diff * node.threshold
            layer.bias = correction.clone() if layer.bias is None else layer.bias + correction
    graph.meta["calibration"] = {"method": "bias", "timesteps": int(timesteps), "images": int(len(images)),
                                 "iterations": int(iterations)}
    return errors
