"""SNN -> ONNX: one timestep, with the neuron state as explicit inputs and outputs.

The exported graph computes, for one step ``t``::

    inputs : x (N, C, H, W), v_<neuron> (N, *shape) for every neuron layer,
             net_<neuron> (N, *shape) for every signed neuron layer (its net spike count so far),
             count_<maxpool> (N, *shape) for every spiking max pool (spike counts so far)
    outputs: current (N, K)  (the output layer's current at step t),
             v_<neuron>__next, net_<neuron>__next, count_<maxpool>__next

``x`` is the pixel image in [0, 1] for direct coding (normalisation is inside the graph) or the
step's signed input spikes for rate coding (the host draws them). A host loop starts with
``v = v_init * threshold`` and ``count = 0``, feeds the outputs back as the next inputs for T
steps (``net = 0`` too), and averages ``current`` over T: the logits, exactly as
:class:`privatesnn.snn.SpikingNetwork`. :func:`run_onnx_steps` is that loop on
``onnx.reference.ReferenceEvaluator``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from privatesnn.errors import ArtifactError
from privatesnn.graph import Add, Graph, Input, MaxPool, Neuron
from privatesnn.io_utils import atomic_path
from privatesnn.layers import build_synapses, module_key

OPSET = 17


def _states(graph: Graph) -> list[tuple[str, str]]:
    """(node name, kind) of every state tensor, in input order: kind v, net (signed neurons) or count."""
    out = []
    for n in graph:
        if isinstance(n, Neuron):
            out += [(n.name, "v")] + ([(n.name, "net")] if n.signed else [])
        elif isinstance(n, MaxPool):
            out.append((n.name, "count"))
    return out


def state_names(graph: Graph) -> list[str]:
    return [f"{kind}_{module_key(name)}" for name, kind in _states(graph)]


class SNNStep(nn.Module):
    """One step of the graph's SNN with explicit state (see module docstring)."""

    def __init__(self, graph: Graph):
        super().__init__()
        self.graph = graph
        self.synapses = build_synapses(graph)
        self.pools = nn.ModuleDict({module_key(n.name): nn.MaxPool2d(n.kernel, n.stride, n.padding, return_indices=True)
                                    for n in graph if isinstance(n, MaxPool)})
        self.register_buffer("mean", torch.tensor(graph.meta["mean"], dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(graph.meta["std"], dtype=torch.float32).view(1, -1, 1, 1))
        self.stateful = _states(graph)

    def initial_state(self, n: int) -> list[torch.Tensor]:
        out = []
        for name, kind in self.stateful:
            node = self.graph[name]
            if kind == "v":
                out.append(torch.full((n, *node.shape), node.v_init * node.threshold))
            elif kind == "net":
                out.append(torch.zeros((n, *node.shape)))
            else:
                out.append(torch.zeros((n, *self.graph[node.inputs[0]].shape)))
        return out

    def forward(self, x: torch.Tensor, *state: torch.Tensor):
        st = dict(zip(self.stateful, state))
        new: dict[tuple[str, str], torch.Tensor] = {}
        vals: dict[str, torch.Tensor] = {}
        for node in self.graph:
            if isinstance(node, Input):
                y = (x - self.mean) / self.std if node.encoding == "direct" else x
            elif isinstance(node, Add):
                y = vals[node.inputs[0]]
                for s in node.inputs[1:]:
                    y = y + vals[s]
            elif isinstance(node, Neuron):
                v = st[(node.name, "v")]
                if node.leak != 1.0:
                    v = v * node.leak
                v = v + vals[node.inputs[0]]
                s = (v > node.threshold).to(v.dtype)
                if node.signed:  # a -1 spike where v < 0 and the net count is positive
                    net = st[(node.name, "net")]
                    s = s - ((v < 0.0) & (net > 0.0)).to(v.dtype)
                    new[(node.name, "net")] = net + s
                v = v - s * node.threshold if node.reset == "subtract" else v * (1.0 - s)
                new[(node.name, "v")] = v
                y = s
            elif isinstance(node, MaxPool):
                spikes = vals[node.inputs[0]]
                counts = st[(node.name, "count")] + spikes
                # SpikingMaxPool passes the spike of the window's input with the largest
                # counts + 0.5*spike (first on ties); that key's fractional part *is* the spike, so
                # 2*frac(max key) equals the gathered spike without a Gather (ONNX's reference
                # GatherElements is limited to 32 choices)
                m, _ = self.pools[module_key(node.name)](counts + 0.5 * spikes)
                y = 2.0 * (m - torch.floor(m))
                new[(node.name, "count")] = counts
            else:
                y = self.synapses[module_key(node.name)](vals[node.inputs[0]])
            vals[node.name] = y
        return (vals[self.graph.output], *[new[n] for n in self.stateful])


def torch_onnx_export(model: torch.nn.Module, args: tuple, path: str | Path, **kwargs: Any) -> None:
    """``torch.onnx.export`` with the TorchScript-based exporter on every torch version: newer torch
    (2.14 here) defaults to the dynamo exporter, which needs the onnxscript package and writes other graphs."""
    import inspect

    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs.setdefault("dynamo", False)
    torch.onnx.export(model, args, str(path), **kwargs)


def export_onnx(graph: Graph, path: str | Path, timesteps: int | None = None, check_images: int = 4,
                seed: int = 0, tolerance: float = 1e-4) -> dict[str, Any]:
    """Write the one-step ONNX model atomically, check it with ``onnx.checker`` and run it with
    ``onnx.reference.ReferenceEvaluator`` for T steps on random images against the torch SNN.
    Returns the check's results; raises ArtifactError (and writes nothing) if it fails."""
    import onnx

    path = Path(path)
    graph.refuse_neurons("windowed", "is windowed (fires only after its whole window of T steps is in): the ONNX "
                                     "export is one timestep of the whole network; export it with --target nir, or "
                                     "simulate it with `privsnn evaluate`")
    T = int(timesteps or graph.meta.get("timesteps", 16))
    step = SNNStep(graph).eval()
    inp = graph.input
    x0 = torch.rand(2, *inp.shape)
    state0 = step.initial_state(2)
    snames = state_names(graph)
    input_names = ["x"] + snames
    output_names = ["current"] + [f"{s}__next" for s in snames]
    dyn = {n: {0: "batch"} for n in input_names + output_names}
    with atomic_path(path) as tmp:
        with torch.no_grad():
            torch_onnx_export(step, (x0, *state0), tmp, input_names=input_names, output_names=output_names,
                              dynamic_axes=dyn, opset_version=OPSET, do_constant_folding=True)
        model = onnx.load(str(tmp))
        model.doc_string = (f"privsnn SNN, one timestep with explicit state; T={T}; logits = mean over T of "
                            f"'current'. Inputs: {', '.join(input_names)}")
        meta = model.metadata_props.add()
        meta.key, meta.value = "timesteps", str(T)
        meta = model.metadata_props.add()
        meta.key, meta.value = "encoding", inp.encoding
        onnx.save(model, str(tmp))
        onnx.checker.check_model(str(tmp), full_check=True)
        result = verify_onnx(graph, tmp, T, check_images, seed)
        if not result["max_abs_diff"] <= tolerance:
            raise ArtifactError(f"internal check failed: the ONNX model differs from the torch SNN by "
                                f"{result['max_abs_diff']:.3g} (tolerance {tolerance})")
    result.update(path=str(path), opset=OPSET, timesteps=T, inputs=input_names, outputs=output_names)
    return result


def run_onnx_steps(model_path: str | Path, graph: Graph, x: torch.Tensor, T: int,
                   spikes: list[torch.Tensor] | None = None) -> np.ndarray:
    """Logits from T steps of the ONNX model on ``onnx.reference.ReferenceEvaluator``.
    ``spikes``: per-step inputs for rate coding (default: ``x`` every step)."""
    from onnx.reference import ReferenceEvaluator

    sess = ReferenceEvaluator(str(model_path))
    step = SNNStep(graph)
    names = state_names(graph)
    state = [s.numpy().astype(np.float32) for s in step.initial_state(x.shape[0])]
    acc = None
    for t in range(T):
        xt = (spikes[t] if spikes is not None else x).numpy().astype(np.float32)
        outs = sess.run(None, {"x": xt, **dict(zip(names, state))})
        acc = outs[0] if acc is None else acc + outs[0]
        state = list(outs[1:])
    return acc / T


def verify_onnx(graph: Graph, model_path: str | Path, T: int, n_images: int = 4, seed: int = 0) -> dict[str, Any]:
    """Compare the ONNX model (reference evaluator) with :class:`SpikingNetwork` on random images."""
    from privatesnn.snn import SpikingNetwork

    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n_images, *graph.input.shape, generator=gen)
    net = SpikingNetwork(graph).eval()
    spikes = None
    with torch.no_grad():
        if graph.input.encoding == "rate":
            torch.manual_seed(seed)
            spikes = list(net.encode(x, T))
            net.encode = lambda _x, _T: torch.stack(spikes)  # the same input spikes for both
        ref = net(x, T).numpy()
    got = run_onnx_steps(model_path, graph, x, T, spikes)
    diff = float(np.abs(got - ref).max())
    return {"checker": "onnx.checker.check_model(full_check=True): ok", "evaluator": "onnx.reference.ReferenceEvaluator",
            "images": n_images, "max_abs_diff": diff,
            "predictions_agree": bool((got.argmax(1) == ref.argmax(1)).all())}
