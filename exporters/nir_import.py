"""NIR -> privsnn layer graph, so a graph made elsewhere can be evaluated and deployed.

Supported nodes: Input, Output, Conv2d (dilation 1), Affine, Linear, AvgPool2d, SumPool2d (its
k*k factor is folded into the next weighted layer), Flatten (to 1-D), IF, LIF and CubaLIF (only
when its synaptic time constant equals ``dt``, i.e. the synaptic current is the input of that
step), Identity. A node with several incoming edges sums them (an ``Add`` is inserted).

Discretisation (NIR is continuous-time; ``dt`` from the file's metadata, else the ``dt``
argument): Euler steps, as privsnn's exporter writes them. ``IF(r)``: ``v += r*dt*I``; ``LIF(tau,
r)``: ``v = (1 - dt/tau) v + (dt/tau) r I``. The input gain (``r*dt`` or ``dt*r/tau``) is moved
into the threshold, so the privsnn neuron ``v = leak*v + I`` spikes at the same steps. Reset is
to ``v_reset`` (must be 0) unless privsnn metadata says "subtract"; ``v_init`` comes from
privsnn metadata (else 0).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from privatesnn.errors import ArtifactError, PrivsnnError, UnsupportedLayerError
from privatesnn.graph import Add, AvgPool, Conv, Flatten, Graph, GraphError, Input, Linear, Neuron

from .nir_export import NIR_META_KEY

SUPPORTED = ("Input", "Output", "Conv2d", "Affine", "Linear", "AvgPool2d", "SumPool2d", "Flatten", "IF", "LIF",
             "CubaLIF", "Identity")


def _uniform(name: str, what: str, arr: Any) -> float:
    a = np.asarray(arr, dtype=np.float64)
    if a.size == 0:
        raise UnsupportedLayerError(f"NIR node {name!r}: empty {what}")
    v = float(a.reshape(-1)[0])
    if not np.allclose(a, v, rtol=0, atol=abs(v) * 1e-6 + 1e-12):
        raise UnsupportedLayerError(f"NIR node {name!r}: per-neuron {what} values differ "
                                    f"(min {a.min():.4g}, max {a.max():.4g}); privsnn needs one value per layer")
    return v


def _md(node) -> dict[str, Any]:
    md = getattr(node, "metadata", None)
    return dict(md) if isinstance(md, dict) else {}


def _scalar(v: Any) -> Any:
    if isinstance(v, np.ndarray) and v.shape == ():
        v = v.item()
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bytes):
        v = v.decode("utf8")
    return v


def _pair(v: Any, what: str, name: str) -> tuple[int, int]:
    a = np.asarray(v).reshape(-1)
    if a.size == 1:
        return int(a[0]), int(a[0])
    if a.size == 2:
        return int(a[0]), int(a[1])
    raise UnsupportedLayerError(f"NIR node {name!r}: {what} must have 1 or 2 values, got {a.tolist()}")


def scan_nir_file(path: str | Path) -> list[tuple[str, str]]:
    """(name, type) of every top-level node, read with h5py only; raises ArtifactError for a file
    that is not a readable NIR file (missing, truncated, another format)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"NIR file not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            if "node" not in f or "nodes" not in f["node"]:
                raise ArtifactError(f"{path}: not a NIR graph file (no /node/nodes group)")
            out = []
            for name, grp in f["node"]["nodes"].items():
                t = grp["type"][()] if "type" in grp else b"?"
                out.append((name, t.decode("utf8") if isinstance(t, bytes) else str(t)))
            return out
    except ArtifactError:
        raise
    except (OSError, KeyError, ValueError) as e:
        raise ArtifactError(f"{path}: not a readable NIR file (truncated or another format: "
                            f"{str(e).splitlines()[0][:200]})") from None


def read_nir_graph(path: str | Path, dt: float | None = None) -> Graph:
    """Read a ``.nir`` file into a privsnn graph (type-checked by ``nir.read`` first)."""
    import nir

    path = Path(path)
    for name, t in scan_nir_file(path):
        if t not in SUPPORTED:
            raise UnsupportedLayerError(f"{path}: NIR node {name!r} has type {t}, which privsnn does not support "
                                        f"(supported: {', '.join(SUPPORTED)})")
    try:
        ng = nir.read(path, type_check=False)
    except (OSError, KeyError, ValueError, TypeError, AssertionError) as e:
        raise ArtifactError(f"{path}: unreadable NIR graph ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    fix_grouped_conv_types(ng)
    try:
        ng.infer_types()
        ng.check_types()
    except (ValueError, AssertionError, TypeError, IndexError) as e:
        raise GraphError(f"{path}: the NIR graph's shapes do not chain: {str(e).splitlines()[0][:300]}") from None
    return nir_to_graph(ng, dt=dt, source=str(path))


def fix_grouped_conv_types(ng) -> None:
    """nir 1.0.8 builds a Conv2d's input type as ``weight.shape[1]`` channels, ignoring ``groups``
    (wrong for grouped and depthwise convolutions); set it to ``weight.shape[1] * groups``."""
    import nir

    for node in ng.nodes.values():
        if isinstance(node, nir.Conv2d) and node.input_type.get("input") is not None:
            groups = int(np.asarray(node.groups).reshape(-1)[0])
            if groups != 1:
                t = np.asarray(node.input_type["input"])
                node.input_type = {"input": np.array([node.weight.shape[1] * groups, *t[1:]])}


def nir_to_graph(ng, dt: float | None = None, source: str = "<nir>") -> Graph:
    """A privsnn :class:`Graph` from a ``nir.NIRGraph`` (see module docstring)."""
    import nir

    gmeta = {k: _scalar(v) for k, v in (getattr(ng, "metadata", None) or {}).items()}
    dt_default = float(dt if dt is not None else gmeta.get("dt", 1e-3))
    for name, node in ng.nodes.items():
        t = type(node).__name__
        if t not in SUPPORTED:
            raise UnsupportedLayerError(f"{source}: NIR node {name!r} has type {t}, which privsnn does not support "
                                        f"(supported: {', '.join(SUPPORTED)})")
    preds: dict[str, list[str]] = {n: [] for n in ng.nodes}
    succ: dict[str, list[str]] = {n: [] for n in ng.nodes}
    for a, b in ng.edges:
        if a not in ng.nodes or b not in ng.nodes:
            raise GraphError(f"{source}: edge ({a!r}, {b!r}) names a node that does not exist")
        preds[b].append(a)
        succ[a].append(b)
    inputs = [n for n, node in ng.nodes.items() if isinstance(node, nir.Input)]
    outputs = [n for n, node in ng.nodes.items() if isinstance(node, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise UnsupportedLayerError(f"{source}: privsnn needs exactly one Input and one Output node, "
                                    f"found {len(inputs)} and {len(outputs)}")
    # topological order (Kahn), stable in file order
    indeg = {n: len(p) for n, p in preds.items()}
    ready = [n for n in ng.nodes if indeg[n] == 0]
    order: list[str] = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for m in succ[n]:
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
    if len(order) != len(ng.nodes):
        raise UnsupportedLayerError(f"{source}: the NIR graph has a cycle (recurrent connections are not supported)")
    if order[0] != inputs[0]:
        stray = [n for n in order if not preds[n] and n != inputs[0]]
        raise GraphError(f"{source}: nodes {stray} have no input edge")

    nodes: dict[str, Any] = {}
    value_of: dict[str, str] = {}  # NIR node -> privsnn node carrying its output
    sum_scale: dict[str, float] = {}  # privsnn AvgPool made from a SumPool2d -> k*k
    out_name = None

    def unique(base: str) -> str:
        name, i = base, 0
        while name in nodes or (name in ng.nodes and name != base):
            i += 1
            name = f"{base}_{i}"
        return name

    def source_of(name: str) -> list[str]:
        srcs = [value_of[p] for p in preds[name]]
        if not srcs:
            raise GraphError(f"{source}: NIR node {name!r} has no input edge")
        if len(srcs) == 1:
            return srcs
        add = unique(f"{name}__sum")
        nodes[add] = Add(add, srcs)
        return [add]

    def sumpool_factor(start: str) -> float:
        """k*k of the SumPool2d nodes between a weighted layer and its source (through flatten)."""
        f, cur = 1.0, nodes[start]
        while isinstance(cur, (AvgPool, Flatten)):
            f *= sum_scale.get(cur.name, 1.0)
            cur = nodes[cur.inputs[0]]
        return f

    for name in order:
        node = ng.nodes[name]
        md = {k: _scalar(v) for k, v in _md(node).items()}
        if isinstance(node, nir.Input):
            shape = tuple(int(s) for s in np.asarray(node.input_type["input"]).reshape(-1))
            enc = md.get("encoding", gmeta.get("encoding", "direct"))
            nodes[name] = Input(name, [], shape, encoding=str(enc), input_scale=float(md.get("input_scale", 1.0)))
            value_of[name] = name
            continue
        if isinstance(node, nir.Output):
            out_name = source_of(name)[0]
            continue
        ins = source_of(name)
        if type(node).__name__ == "Identity":
            value_of[name] = ins[0]
            continue
        if isinstance(node, nir.Conv2d):
            if isinstance(node.padding, str):
                k = np.asarray(node.weight).shape[-2:]
                if node.padding == "valid":
                    pad = (0, 0)
                elif all(s % 2 == 1 for s in k) and _pair(node.stride, "stride", name) == (1, 1):
                    pad = (k[0] // 2, k[1] // 2)
                else:
                    raise UnsupportedLayerError(f"NIR node {name!r} (Conv2d): padding 'same' with an even kernel "
                                                f"or a stride is not supported")
            else:
                pad = _pair(node.padding, "padding", name)
            if _pair(node.dilation, "dilation", name) != (1, 1):
                raise UnsupportedLayerError(f"NIR node {name!r} (Conv2d): dilation {node.dilation} is not supported")
            w = torch.as_tensor(np.asarray(node.weight, dtype=np.float32)).clone()
            b = torch.as_tensor(np.asarray(node.bias, dtype=np.float32)).clone().reshape(-1)
            if md.get("has_bias") is False and not bool(b.abs().sum()):
                b = None
            w = w * sumpool_factor(ins[0])
            nodes[name] = Conv(name, ins, weight=w, bias=b, stride=_pair(node.stride, "stride", name), padding=pad,
                               groups=int(np.asarray(node.groups).reshape(-1)[0]),
                               trainable=bool(md.get("trainable", True)))
        elif isinstance(node, (nir.Affine, nir.Linear)):
            w = np.asarray(node.weight, dtype=np.float32)
            if w.ndim != 2:
                raise UnsupportedLayerError(f"NIR node {name!r} ({type(node).__name__}): weight must be 2-D, got {w.shape}")
            b = None
            if isinstance(node, nir.Affine) and node.bias is not None:
                b = torch.as_tensor(np.asarray(node.bias, dtype=np.float32)).clone().reshape(-1)
            wt = torch.as_tensor(w).clone() * sumpool_factor(ins[0])
            nodes[name] = Linear(name, ins, weight=wt, bias=b, trainable=bool(md.get("trainable", True)))
        elif isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
            k = _pair(node.kernel_size, "kernel_size", name)
            nodes[name] = AvgPool(name, ins, kernel=k, stride=_pair(node.stride, "stride", name),
                                  padding=_pair(node.padding, "padding", name))
            if isinstance(node, nir.SumPool2d):
                sum_scale[name] = float(k[0] * k[1])
        elif isinstance(node, nir.Flatten):
            nodes[name] = Flatten(name, ins)
        elif isinstance(node, (nir.IF, nir.LIF, nir.CubaLIF)):
            nodes[name] = _neuron(name, node, ins, md, dt_default)
        else:  # pragma: no cover - filtered above
            raise UnsupportedLayerError(f"NIR node {name!r}: unsupported type {type(node).__name__}")
        value_of[name] = name
    if out_name is None:
        raise UnsupportedLayerError(f"{source}: no Output node")
    # SumPools must feed weighted layers (their factor was folded there)
    for name in sum_scale:
        for c in [n for n in nodes.values() if name in n.inputs]:
            cur = c
            while isinstance(cur, Flatten):
                nxt = [n for n in nodes.values() if cur.name in n.inputs]
                if len(nxt) != 1:
                    break
                cur = nxt[0]
            if not isinstance(cur, (Conv, Linear)):
                raise UnsupportedLayerError(f"NIR node {name!r} (SumPool2d) must feed a weighted layer")

    meta: dict[str, Any] = {}
    if NIR_META_KEY in gmeta:
        try:
            meta = json.loads(gmeta[NIR_META_KEY])
        except (TypeError, ValueError):
            meta = {}
    first = nodes[order[0]]
    c = first.shape[0] if len(first.shape) == 3 else 1
    meta.setdefault("mean", [0.0] * c)
    meta.setdefault("std", [1.0] * c)
    meta.setdefault("num_classes", int(math.prod(nodes[out_name].shape)) if nodes[out_name].shape else 0)
    meta.setdefault("model", {"spec": source, "arch": "nir", "sha256": None})
    if "timesteps" in gmeta and "timesteps" not in meta:
        meta["timesteps"] = int(gmeta["timesteps"])
    try:
        graph = Graph(nodes=nodes, output=out_name, meta=meta)
    except PrivsnnError:
        raise
    if not graph.meta.get("num_classes"):
        graph.meta["num_classes"] = int(math.prod(graph[out_name].shape))
    return graph


def _neuron(name: str, node, ins: list[str], md: dict[str, Any], dt_default: float) -> Neuron:
    import nir

    dt = float(md.get("dt", dt_default))
    if not dt > 0:
        raise UnsupportedLayerError(f"NIR node {name!r}: dt must be > 0, got {dt}")
    v_th = _uniform(name, "v_threshold", node.v_threshold)
    v_reset = _uniform(name, "v_reset", node.v_reset) if getattr(node, "v_reset", None) is not None else 0.0
    reset = str(md.get("reset", "zero"))
    if reset not in ("zero", "subtract"):
        reset = "zero"
    if reset == "zero" and abs(v_reset) > 1e-12:
        raise UnsupportedLayerError(f"NIR node {name!r} ({type(node).__name__}): v_reset = {v_reset:g}; privsnn "
                                    f"neurons reset to 0 (or subtract the threshold)")
    if isinstance(node, nir.IF):
        leak = 1.0
        gain = _uniform(name, "r", node.r) * dt
    else:
        if isinstance(node, nir.CubaLIF):
            tau_syn = _uniform(name, "tau_syn", node.tau_syn)
            if abs(tau_syn - dt) > 1e-6 * dt:
                raise UnsupportedLayerError(
                    f"NIR node {name!r} (CubaLIF): tau_syn = {tau_syn:g} s differs from dt = {dt:g} s; privsnn "
                    f"neurons have no synaptic current state (only tau_syn = dt maps exactly)")
            tau = _uniform(name, "tau_mem", node.tau_mem)
            w_in = _uniform(name, "w_in", node.w_in)
        else:
            tau = _uniform(name, "tau", node.tau)
            w_in = 1.0
        if abs(_uniform(name, "v_leak", node.v_leak)) > 1e-12:
            raise UnsupportedLayerError(f"NIR node {name!r} ({type(node).__name__}): non-zero v_leak is not supported")
        if not tau >= dt:
            raise UnsupportedLayerError(f"NIR node {name!r}: tau = {tau:g} s is shorter than dt = {dt:g} s")
        leak = float(md["leak"]) if "leak" in md else 1.0 - dt / tau
        gain = dt / tau * _uniform(name, "r", node.r) * w_in
    if not gain > 0:
        raise UnsupportedLayerError(f"NIR node {name!r}: input gain r*dt must be > 0, got {gain:g}")
    if abs(gain - 1.0) < 1e-6:
        gain = 1.0
    return Neuron(name, ins, threshold=v_th / gain, leak=float(min(1.0, max(0.0, leak))), reset=reset,
                  v_init=float(md.get("v_init", 0.0)), dt=dt,
                  clip=float(md["clip"]) if md.get("clip") is not None else None, signed=bool(md.get("signed", False)),
                  windowed=bool(md.get("windowed", False)))
