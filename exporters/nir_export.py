"""privsnn layer graph -> NIR, built with ``nir`` node constructors (not Norse's ``to_nir``).

Mapping (per sample shapes, no batch dimension; ``dt`` = the neurons' explicit step):

* ``Input`` -> ``nir.Input`` (the *normalised* image: direct coding feeds it every step as an
  analog current; mean/std, encoding and T are in the graph metadata);
* ``Conv`` -> ``nir.Conv2d`` (zero bias written when the layer has none);
* ``Linear`` -> ``nir.Affine`` (``nir.Linear`` when it has no bias);
* ``AvgPool`` -> ``nir.AvgPool2d``; ``Flatten`` -> ``nir.Flatten(start_dim=0)`` over (C, H, W);
* ``Neuron`` with ``leak == 1`` -> ``nir.IF(r = 1/dt, v_threshold, v_reset = 0)``: Euler with
  step dt gives ``v += I`` as in privsnn; ``leak < 1`` -> ``nir.LIF(tau = dt/(1-leak),
  r = 1/(1-leak), v_leak = 0)``: Euler gives ``v = leak*v + I``. Parameters are arrays of the
  layer's shape (NIR is per neuron).
* ``Add`` is not a node: its inputs become several edges into its consumer (NIR sums them).
* the output ``Linear`` feeds ``nir.Output``; its per-step currents, averaged over T, are the
  logits (recorded in metadata).

NIR 1.0 cannot express two privsnn details; both are recorded in the node's metadata and
restored by :mod:`privatesnn.exporters.nir_import`: reset by subtraction (``metadata["reset"] =
"subtract"``; NIR's own semantics is reset to ``v_reset``) and the initial membrane
(``metadata["v_init"]``, a fraction of the threshold). Other NIR consumers start at 0 and reset
to ``v_reset``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from privatesnn.errors import ArtifactError, UnsupportedLayerError
from privatesnn.graph import Add, AvgPool, Conv, Flatten, Graph, Input, Linear, MaxPool, Neuron
from privatesnn.io_utils import atomic_path

NIR_META_KEY = "privsnn_graph_meta"


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def _consumers_through_adds(graph: Graph, name: str) -> list[str]:
    """Real (non-Add) consumers of ``name``: an Add's inputs feed the Add's consumers directly."""
    out: list[str] = []
    for c in graph.consumers(name):
        if isinstance(c, Add):
            out.extend(_consumers_through_adds(graph, c.name))
        else:
            out.append(c.name)
    return out


def graph_to_nir(graph: Graph, type_check: bool = True):
    """A ``nir.NIRGraph`` equivalent to ``graph`` (see module docstring)."""
    import nir

    nodes: dict[str, Any] = {}
    for node in graph:
        md: dict[str, Any] = {"privsnn_type": node.TYPE}
        if isinstance(node, Input):
            md.update(encoding=node.encoding, input_scale=float(node.input_scale))
            n = nir.Input(input_type=np.array(node.shape), metadata=md)
        elif isinstance(node, Conv):
            co = node.weight.shape[0]
            bias = _np(node.bias) if node.bias is not None else np.zeros(co, np.float32)
            md.update(has_bias=node.bias is not None, trainable=bool(node.trainable))
            n = nir.Conv2d(input_shape=tuple(int(s) for s in graph[node.inputs[0]].shape[1:]),
                           weight=_np(node.weight), stride=tuple(node.stride), padding=tuple(node.padding),
                           dilation=(1, 1), groups=int(node.groups), bias=bias, metadata=md)
            if node.groups != 1:  # nir 1.0.8 infers the input channels as weight.shape[1], ignoring groups
                n.input_type = {"input": np.array(graph[node.inputs[0]].shape)}
        elif isinstance(node, Linear):
            md.update(trainable=bool(node.trainable))
            if node.bias is not None:
                n = nir.Affine(weight=_np(node.weight), bias=_np(node.bias), metadata=md)
            else:
                n = nir.Linear(weight=_np(node.weight), metadata=md)
        elif isinstance(node, MaxPool):
            raise UnsupportedLayerError(f"maxpool {node.name!r}: NIR 1.0 has no max-pooling node")
        elif isinstance(node, AvgPool):
            n = nir.AvgPool2d(kernel_size=np.array(node.kernel), stride=np.array(node.stride),
                              padding=np.array(node.padding), metadata=md)
        elif isinstance(node, Flatten):
            n = nir.Flatten(input_type={"input": np.array(graph[node.inputs[0]].shape)}, start_dim=0, end_dim=-1,
                            metadata=md)
        elif isinstance(node, Add):
            continue
        elif isinstance(node, Neuron):
            shape = tuple(node.shape)
            th = np.full(shape, node.threshold, np.float64)
            md.update(reset=node.reset, v_init=float(node.v_init), dt=float(node.dt), leak=float(node.leak))
            if node.clip is not None:  # the ANN's ReLU6 ceiling, for readers of the graph as an ANN
                md.update(clip=float(node.clip))
            if node.signed:  # NIR 1.0 has no signed neuron: an IF node whose metadata says it also fires -1
                md.update(signed=True)
            if node.windowed:  # nor a windowed one: an IF node whose metadata says it integrates its window first
                md.update(windowed=True)
            if node.leak >= 1.0:
                n = nir.IF(r=np.full(shape, 1.0 / node.dt, np.float64), v_threshold=th,
                           v_reset=np.zeros(shape, np.float64), metadata=md)
            else:
                tau = node.dt / (1.0 - node.leak)
                n = nir.LIF(tau=np.full(shape, tau, np.float64), r=np.full(shape, 1.0 / (1.0 - node.leak), np.float64),
                            v_leak=np.zeros(shape, np.float64), v_threshold=th,
                            v_reset=np.zeros(shape, np.float64), metadata=md)
        else:  # pragma: no cover - the graph's node types are closed
            raise UnsupportedLayerError(f"node {node.name!r}: type {node.TYPE} has no NIR mapping")
        nodes[node.name] = n
    out_name = "output"
    while out_name in nodes:
        out_name += "_"
    nodes[out_name] = nir.Output(output_type=np.array(graph[graph.output].shape))
    edges: list[tuple[str, str]] = []
    for node in graph:
        if isinstance(node, Add):
            continue
        for dst in _consumers_through_adds(graph, node.name):
            edges.append((node.name, dst))
    if isinstance(graph[graph.output], Add):  # a readout split over a concatenation: NIR sums the edges
        edges.extend((s, out_name) for s in graph[graph.output].inputs)
    else:
        edges.append((graph.output, out_name))
    meta = dict(graph.meta)
    metadata = {
        NIR_META_KEY: json.dumps(meta, default=_json_default),
        "producer": "privsnn",
        "readout": "output currents averaged over T steps are the logits",
        "dt": float(graph.neurons()[0].dt) if graph.neurons() else 1e-3,
        "encoding": graph.input.encoding,
    }
    if "timesteps" in meta:
        metadata["timesteps"] = int(meta["timesteps"])
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=type_check)


def _json_default(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


def write_nir(graph: Graph, path: str | Path) -> Path:
    """Write ``graph`` as a NIR file atomically, then prove it: read it back with type checking
    and check that the import reproduces the graph exactly. Nothing is left at ``path`` if any
    step fails."""
    import nir

    from .nir_import import read_nir_graph

    path = Path(path)
    ng = graph_to_nir(graph)
    with atomic_path(path) as tmp:
        nir.write(tmp, ng)
        back = read_nir_graph(tmp)
        diff = graphs_max_param_diff(graph, back)
        if diff != 0.0:
            raise ArtifactError(f"internal check failed: the NIR file does not reproduce the graph "
                                f"(max parameter difference {diff:.3g})")
    return path


def graphs_max_param_diff(a: Graph, b: Graph) -> float:
    """Largest absolute difference between the tensors and neuron parameters of two graphs with
    the same node names (inf if they do not correspond)."""
    import torch

    worst = 0.0
    for node in a:
        if isinstance(node, Add):
            continue
        if node.name not in b.nodes:
            return float("inf")
        other = b[node.name]
        for attr in ("weight", "bias"):
            x, y = getattr(node, attr, None), getattr(other, attr, None)
            if x is None and y is None:
                continue
            if x is None:
                x = torch.zeros_like(y)
            if y is None:
                y = torch.zeros_like(x)
            if x.shape != y.shape:
                return float("inf")
            worst = max(worst, float((x.float() - y.float()).abs().max()) if x.numel() else 0.0)
        if isinstance(node, Neuron):
            for attr in ("threshold", "leak", "v_init"):
                worst = max(worst, abs(float(getattr(node, attr)) - float(getattr(other, attr))))
            if node.reset != other.reset or node.signed != other.signed or node.windowed != other.windowed \
                    or (node.clip is None) != (other.clip is None):
                return float("inf")
            if node.clip is not None:
                worst = max(worst, abs(node.clip - other.clip))
    return worst


NORSE_NODES = ("Input", "Output", "Affine", "Linear", "Conv2d", "Flatten", "IF")


def norse_check(graph: Graph, path: str | Path, timesteps: int, n_images: int = 3, seed: int = 0) -> dict[str, Any]:
    """Re-import the NIR file with ``norse.torch.from_nir`` (Norse 1.1.0) and compare its outputs
    with privsnn's SNN, where Norse can represent the graph exactly: only Affine/Linear/Conv2d/
    Flatten/IF nodes (1.1.0 imports neither AvgPool2d nor privsnn's LIF exactly), IF neurons that
    reset to zero and start at v = 0 (Norse's IAF starts at 0), no residual adds, direct coding.
    Norse is run per sample (unbatched), because NIR's per-sample ``Flatten(start_dim=0)`` would
    flatten a batch dimension too."""
    import nir
    import torch

    reasons = []
    for node in graph:
        if isinstance(node, AvgPool):
            reasons.append(f"{node.name}: AvgPool2d (Norse 1.1.0 imports only SumPool2d)")
        elif isinstance(node, Neuron):
            if node.leak != 1.0:
                reasons.append(f"{node.name}: LIF (Norse's LIFBox integrates dt/tau * (v_leak - v + I))")
            if node.reset != "zero":
                reasons.append(f"{node.name}: reset by subtraction (Norse resets to v_reset)")
            if node.signed:
                reasons.append(f"{node.name}: signed neuron (Norse's neurons fire only +1)")
            if node.windowed:
                reasons.append(f"{node.name}: windowed neuron (Norse's neurons fire as the input comes in)")
            if node.v_init != 0.0:
                reasons.append(f"{node.name}: v_init={node.v_init:g} (Norse's IAF starts at 0)")
        elif isinstance(node, Add):
            reasons.append(f"{node.name}: residual add")
    if graph.input.encoding != "direct":
        reasons.append("rate-coded input")
    if reasons:
        return {"ran": False, "reason": "; ".join(reasons[:4]) + (" ..." if len(reasons) > 4 else "")}
    import logging
    import warnings

    import norse.torch as norse

    from privatesnn.snn import SpikingNetwork, _normalize

    from privatesnn.exporters.nir_import import fix_grouped_conv_types

    ng = nir.read(str(path), type_check=False)
    fix_grouped_conv_types(ng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            module = norse.from_nir(ng, ignore_warnings=True)
        finally:
            logging.disable(logging.NOTSET)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n_images, *graph.input.shape, generator=gen)
    with torch.no_grad():
        ref = SpikingNetwork(graph).eval()(x, timesteps)
        xn = _normalize(graph, x)
        outs = []
        for i in range(n_images):
            state, acc = None, 0.0
            for _ in range(timesteps):
                y, state = module(xn[i], state)
                acc = acc + y
            outs.append(acc / timesteps)
        got = torch.stack(outs)
    diff = float((got - ref).abs().max())
    return {"ran": True, "images": n_images, "timesteps": timesteps, "max_abs_diff": diff,
            "importer": "norse.torch.from_nir (norse 1.1.0, nirtorch.load)"}
