"""The lava-dl netx HDF5 format (``.net``) for sequential networks, written with h5py.

netx (lava-dl 0.6) loads ``input``, ``conv``, ``dense`` and ``flatten`` layers and raises
``NotImplementedError`` for ``pool``/``average``/``concat``; it connects each layer to the
previous one only. So the file is written from the deployment plan
(:func:`privatesnn.hw_targets.loihi.build_plan`), where **average pooling is already folded exactly into the
next layer**: ``conv(avgpool_k(x))`` becomes one conv with kernel ``k*K``, stride ``k*S``, padding
``k*P`` and taps ``W/k^2``; ``dense(flatten(avgpool_k(x)))`` becomes a dense layer over the
unpooled map. Residual networks (several paths into one layer) have no netx form; deploy them as
Lava processes (:mod:`privatesnn.hw_targets.lava_sim`).

Layout (anchors C.1-C.4): ``/layer/0`` is an ``input`` block whose neurons are the SNN's first
(host-fed) neuron layer: netx drives an input block through its neurons' bias, which is where
the host puts the image's first-layer current each image. Then one ``conv``/``dense`` per neuron
layer with ``neuron/{type=CUBA, iDecay=4096, vDecay, vThMant, refDelay=1, gradedSpike=0}``
(netx maps these to Lava ``LIF(du=iDecay-1, dv=vDecay, vth=vThMant, bias_exp=6)``), ``weight``
as integers in [-256, 254] (even: Lava's 8-bit mixed-sign format) and ``bias`` (bias mantissas
for ``bias_exp = 6``). The readout is a ``dense`` layer without ``neuron`` (netx then uses a
non-leaky integrator whose membrane accumulates the output currents).

What netx cannot carry, and this file therefore rounds: a synaptic weight exponent (netx
recomputes one from the integer weights), so a layer whose fixed-point plan uses ``weight_exp =
e > 0`` is written with ``vThMant`` and ``bias`` divided by ``2^e`` (a coarser threshold than the
Lava-process deployment); the initial membrane ``v_init`` (netx's ``LIFReset`` resets to 0). Both
are recorded under ``/privsnn`` (ignored by netx), together with T, the image period, the
input normalisation and the host-side first layer, so :func:`read_net` restores the SNN.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from privatesnn.errors import ArtifactError, UnsupportedLayerError
from privatesnn.graph import Conv, Flatten, Graph, GraphError, Input, Linear, Neuron
from privatesnn.io_utils import atomic_path

NETX_FORMAT = "privsnn-netx/1"
NETX_TYPES = ("input", "conv", "dense", "flatten")


def _bytes(s: str) -> np.ndarray:
    return np.array([s.encode("ascii")], dtype="S10")


def _neuron_group(g, vth: int, dv: int) -> None:
    g.create_dataset("type", (1,), "S10", [b"CUBA"])
    g.create_dataset("iDecay", data=4096)
    g.create_dataset("vDecay", data=int(dv))
    g.create_dataset("vThMant", data=int(vth))
    g.create_dataset("refDelay", data=1)
    g.create_dataset("gradedSpike", data=False)


def check_sequential(plan) -> list[str]:
    """Names of the plan's layers in chain order; raises UnsupportedLayerError when netx cannot
    express the network (residual paths, several host-fed layers)."""
    layers = list(plan.layers.values())
    if any(ly.windowed for ly in layers):
        raise UnsupportedLayerError(f"layer {layers[0].name!r} is windowed (fires after its whole window): netx's "
                                    f"neurons fire as input comes in - deploy it as Lava processes (the lava export)")
    host = [ly for ly in layers if ly.host_fed]
    if len(host) != 1 or not layers[0].host_fed:
        raise UnsupportedLayerError("netx needs exactly one first layer fed by the input")
    chain = [layers[0].name]
    for layer in layers[1:] + [plan.output]:
        if layer.kind == "relay" or len(layer.terms) != 1 or layer.terms[0].src != chain[-1]:
            where = layer.name if layer.kind != "relay" else layer.name.split("__relay")[0]
            raise UnsupportedLayerError(
                f"layer {where!r} has {len(layer.terms)} input paths (residual connection); netx loads "
                f"sequential networks only - deploy it as Lava processes (the lava export does this)")
        chain.append(layer.name)
    return chain


def write_netx(fixed, path: str | Path) -> Path:
    """Write the fixed-point plan ``fixed`` (:class:`privatesnn.hw_targets.loihi.FixedPlan`) of a sequential
    network as a netx ``.net`` file, atomically."""
    import h5py

    plan = fixed.plan
    check_sequential(plan)
    graph = plan.graph
    path = Path(path)
    layers = list(plan.layers.values())
    priv: dict[str, Any] = {"format": NETX_FORMAT, "timesteps": plan.timesteps, "period": plan.period,
                            "mean": graph.meta.get("mean"), "std": graph.meta.get("std"),
                            "num_classes": graph.meta.get("num_classes"), "layers": []}
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            sim = f.create_group("simulation")
            sim.create_dataset("Ts", data=1)
            sim.create_dataset("tSample", data=plan.period)
            lg = f.create_group("layer")
            first = layers[0]
            q0 = fixed.layers[first.name]
            g0 = lg.create_group("0")
            g0.create_dataset("type", (1,), "S10", [b"input"])
            g0.create_dataset("shape", data=np.array(first.shape))
            _neuron_group(g0.create_group("neuron"), q0.vth, q0.dv)
            priv["layers"].append({"name": first.name, "scale": q0.scale, "vth": q0.vth, "exp": 0,
                                   "v_init": first.v_init, "threshold": first.threshold, "leak": first.leak,
                                   "lag": first.lag, "host_fed": True})
            idx = 1
            for layer in layers[1:] + [plan.output]:
                q = fixed.layers.get(layer.name, fixed.output if layer is plan.output else None)
                qt = q.terms[0]
                t = qt.term
                e = qt.exp
                if t.kind == "dense" and len(t.src_shape) == 3:
                    gf = lg.create_group(str(idx))
                    gf.create_dataset("type", (1,), "S10", [b"flatten"])
                    gf.create_dataset("shape", data=np.array([int(np.prod(t.src_shape))]))
                    idx += 1
                g = lg.create_group(str(idx))
                idx += 1
                w = (2 * qt.mant).astype(np.int64)
                if t.kind == "conv":
                    g.create_dataset("type", (1,), "S10", [b"conv"])
                    g.create_dataset("shape", data=np.array(layer.shape))
                    g.create_dataset("inChannels", data=int(t.src_shape[0]))
                    g.create_dataset("outChannels", data=int(w.shape[0]))
                    g.create_dataset("kernelSize", data=np.array(w.shape[2:]))
                    g.create_dataset("stride", data=np.array(t.stride))
                    g.create_dataset("padding", data=np.array(t.padding))
                    g.create_dataset("dilation", data=np.array([1, 1]))
                    g.create_dataset("groups", data=int(t.groups))
                else:
                    g.create_dataset("type", (1,), "S10", [b"dense"])
                    g.create_dataset("shape", data=np.array(layer.shape))
                    g.create_dataset("inFeatures", data=int(w.shape[1]))
                    g.create_dataset("outFeatures", data=int(w.shape[0]))
                g.create_dataset("weight", data=w)
                div = 2 ** e
                if layer is plan.output:
                    bias = np.round(fixed.out_bias_int / div).astype(np.int64)
                    g.create_dataset("bias", data=bias)
                    priv["output"] = {"name": layer.name, "scale": q.scale / div, "exp": e, "lag": layer.lag}
                else:
                    vth = max(1, int(round(q.vth / div)))
                    bias = np.round(q.bias_mant * 2.0 ** (q.bias_exp - 6) / div).astype(np.int64)  # netx: bias_exp 6
                    if layer.kind == "neuron" and len(layer.shape) == 3:
                        per_ch = bias.reshape(bias.shape[0], -1)
                        if (per_ch == per_ch[:, :1]).all():
                            bias = per_ch[:, 0]  # channel-wise: netx broadcasts it
                        else:
                            bias = np.ascontiguousarray(bias.transpose(2, 1, 0))  # netx/Lava (X, Y, Z) order
                    g.create_dataset("bias", data=bias)
                    _neuron_group(g.create_group("neuron"), vth, q.dv)
                    priv["layers"].append({"name": layer.name, "scale": q.scale / div, "vth": vth, "exp": e,
                                           "v_init": layer.v_init, "threshold": layer.threshold, "leak": layer.leak,
                                           "lag": layer.lag, "host_fed": False})
            pg = f.create_group("privsnn")
            pg.create_dataset("meta", data=json.dumps(priv), dtype=h5py.string_dtype())
            _write_host(pg.create_group("host"), graph, first.name)
    return path


def _write_host(g, graph: Graph, first_neuron: str) -> None:
    """The host-side layers (input -> first neuron), float, so read_net can rebuild the SNN."""
    chain = []
    node = graph[graph[first_neuron].inputs[0]]
    while not isinstance(node, Input):
        if not isinstance(node, (Conv, Linear, Flatten)) or len(node.inputs) != 1:
            chain = None
            break
        chain.append(node)
        node = graph[node.inputs[0]]
    g.create_dataset("input_shape", data=np.array(graph.input.shape))
    if chain is None:
        g.create_dataset("chain", data="unsupported", dtype="S16")
        return
    for i, node in enumerate(reversed(chain)):
        h = g.create_group(str(i))
        h.create_dataset("type", data=node.TYPE, dtype="S16")
        if isinstance(node, (Conv, Linear)):
            h.create_dataset("weight", data=node.weight.detach().cpu().numpy().astype(np.float32))
            if node.bias is not None:
                h.create_dataset("bias", data=node.bias.detach().cpu().numpy().astype(np.float32))
        if isinstance(node, Conv):
            h.create_dataset("stride", data=np.array(node.stride))
            h.create_dataset("padding", data=np.array(node.padding))
            h.create_dataset("groups", data=int(node.groups))


def _get(g, key: str, layer: str):
    if key not in g:
        raise ArtifactError(f"netx layer {layer}: missing dataset {key!r}")
    return g[key][()]


def _str(v) -> str:
    if isinstance(v, np.ndarray):
        v = v.reshape(-1)[0]
    return v.decode("ascii") if isinstance(v, bytes) else str(v)


def read_net(path: str | Path) -> Graph:
    """Read a netx ``.net`` file into a privsnn graph (float; integer weights / 64 as slayer's
    scale, or the exact privsnn scales when the file carries them). Raises ArtifactError for an
    unreadable file, UnsupportedLayerError naming the layer and type, GraphError when shapes do not
    chain."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"netx file not found: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ArtifactError(f"{path}: not a readable netx/HDF5 file (truncated or another format: "
                            f"{str(e).splitlines()[0][:200]})") from None
    try:
        with f:
            return _read_net(f, path)
    except (KeyError, ValueError, TypeError) as e:
        raise ArtifactError(f"{path}: malformed netx file ({type(e).__name__}: {str(e)[:200]})") from None


def _read_net(f, path: Path) -> Graph:
    if "layer" not in f:
        raise ArtifactError(f"{path}: not a netx network file (no /layer group)")
    priv = None
    if "privsnn" in f and "meta" in f["privsnn"]:
        raw = f["privsnn"]["meta"][()]
        priv = json.loads(raw.decode("utf8") if isinstance(raw, bytes) else raw)
    lg = f["layer"]
    n_layers = len(lg)
    try:
        keys = sorted(lg.keys(), key=int)
    except ValueError:
        raise ArtifactError(f"{path}: layer groups must be named 0..{n_layers - 1}") from None
    types = []
    for k in keys:
        t = _str(_get(lg[k], "type", k))
        if t not in NETX_TYPES:
            raise UnsupportedLayerError(f"{path}: layer {k} has type {t!r}, which privsnn does not support "
                                        f"(supported: {', '.join(NETX_TYPES)}; netx itself cannot load pool, "
                                        f"average, concat, convT, unpool)")
        if "neuron" in lg[k]:
            nt = _str(_get(lg[k]["neuron"], "type", k))
            if nt not in ("CUBA", "LOIHI"):
                raise UnsupportedLayerError(f"{path}: layer {k} ({t}) has a {nt} neuron; privsnn supports CUBA/LOIHI")
            idec = int(np.asarray(_get(lg[k]["neuron"], "iDecay", k)).reshape(-1)[0])
            if idec != 4096:
                raise UnsupportedLayerError(
                    f"{path}: layer {k} ({t}): CUBA neuron with current decay iDecay={idec} (a synaptic current "
                    f"state); privsnn neurons need iDecay=4096")
        types.append(t)
    if not types or types[0] != "input":
        raise UnsupportedLayerError(f"{path}: the first layer must be an input layer")
    plist = list(priv["layers"]) if priv else []
    scales = [p["scale"] for p in plist]
    nodes: dict[str, Any] = {}
    mean = std = None
    if priv:
        mean, std = priv.get("mean"), priv.get("std")
    g0 = lg[keys[0]]
    in_shape = tuple(int(s) for s in np.asarray(_get(g0, "shape", keys[0])).reshape(-1))
    prev = "input"
    li = 0  # index into privsnn per-layer records
    if "neuron" in g0:
        # an input block: its neurons are driven through their bias by the host
        host_shape = in_shape
        img_shape = host_shape
        host_nodes = []
        if priv and "privsnn" in f and "host" in f["privsnn"] and "0" in f["privsnn"]["host"]:
            hg = f["privsnn"]["host"]
            img_shape = tuple(int(s) for s in hg["input_shape"][()])
            cur = "input"
            for hk in sorted([k for k in hg.keys() if k.isdigit()], key=int):
                h = hg[hk]
                t = _str(h["type"][()])
                nm = f"host{hk}"
                if t == "conv":
                    host_nodes.append(Conv(nm, [cur], weight=torch.as_tensor(h["weight"][()]).clone(),
                                           bias=torch.as_tensor(h["bias"][()]).clone() if "bias" in h else None,
                                           stride=tuple(int(s) for s in h["stride"][()]),
                                           padding=tuple(int(s) for s in h["padding"][()]),
                                           groups=int(h["groups"][()])))
                elif t == "linear":
                    host_nodes.append(Linear(nm, [cur], weight=torch.as_tensor(h["weight"][()]).clone(),
                                             bias=torch.as_tensor(h["bias"][()]).clone() if "bias" in h else None))
                elif t == "flatten":
                    host_nodes.append(Flatten(nm, [cur]))
                cur = nm
        nodes["input"] = Input("input", [], img_shape)
        for hn in host_nodes:
            nodes[hn.name] = hn
        if host_nodes:
            prev = host_nodes[-1].name
        name = plist[0]["name"] if plist else "layer0"
        nodes[name] = _neuron_from(lg[keys[0]]["neuron"], name, [prev], plist[0] if plist else None, scales[0] if scales else 64.0)
        prev = name
        li = 1
    else:
        nodes["input"] = Input("input", [], in_shape)
    out_name = prev
    for k, t in zip(keys[1:], types[1:]):
        g = lg[k]
        rec = plist[li] if li < len(plist) and t != "flatten" else None
        if t == "flatten":
            name = f"flatten{k}"
            nodes[name] = Flatten(name, [prev])
            prev = name
            continue
        is_out = "neuron" not in g
        if is_out and priv and "output" in priv:
            rec = priv["output"]
        scale = float(rec["scale"]) if rec else 64.0
        syn = (rec["name"] + "__syn") if rec and not is_out else (rec["name"] if rec else f"layer{k}")
        w = torch.as_tensor(np.asarray(_get(g, "weight", k), dtype=np.float64) / scale).float()
        b = torch.as_tensor(np.asarray(g["bias"][()], dtype=np.float64).reshape(-1) / scale).float() if "bias" in g else None
        if t == "conv":
            if w.dim() != 4:
                raise GraphError(f"{path}: layer {k} (conv): weight must be 4-D, got {tuple(w.shape)}")
            if b is not None and b.numel() != w.shape[0]:
                shape = tuple(int(s) for s in np.asarray(_get(g, "shape", k)).reshape(-1))
                b = b.view(shape)[:, 0, 0].clone() if b.numel() == int(np.prod(shape)) else None
            nodes[syn] = Conv(syn, [prev], weight=w, bias=b,
                              stride=tuple(int(s) for s in np.asarray(_get(g, "stride", k)).reshape(-1)[:2]),
                              padding=tuple(int(s) for s in np.asarray(_get(g, "padding", k)).reshape(-1)[:2]),
                              groups=int(np.asarray(_get(g, "groups", k)).reshape(-1)[0]))
        else:
            if w.dim() != 2:
                raise GraphError(f"{path}: layer {k} (dense): weight must be 2-D, got {tuple(w.shape)}")
            nodes[syn] = Linear(syn, [prev], weight=w, bias=b)
        prev = syn
        declared = tuple(int(s) for s in np.asarray(_get(g, "shape", k)).reshape(-1))
        if not is_out:
            name = rec["name"] if rec else f"neuron{k}"
            nodes[name] = _neuron_from(g["neuron"], name, [prev], rec, scale)
            prev = name
            li += 1
        out_name = syn if is_out else prev
        try:  # check that shapes chain as the file declares
            Graph(nodes=dict(nodes), output=prev, meta={"mean": [0.0], "std": [1.0]})
        except GraphError as e:
            raise GraphError(f"{path}: layer {k} ({t}): shapes do not chain: {e}") from None
        got = Graph(nodes=dict(nodes), output=prev, meta={"mean": [0.0], "std": [1.0]})[syn].shape
        if int(np.prod(got)) != int(np.prod(declared)):
            raise GraphError(f"{path}: layer {k} ({t}) declares shape {declared} but its input gives {tuple(got)}")
    c = nodes["input"].shape[0] if len(nodes["input"].shape) == 3 else 1
    meta = {"mean": list(mean) if mean else [0.0] * c, "std": list(std) if std else [1.0] * c,
            "num_classes": int(priv.get("num_classes") or 0) if priv else 0,
            "model": {"spec": str(path), "arch": "netx", "sha256": None}}
    if priv:
        meta["timesteps"] = int(priv["timesteps"])
    graph = Graph(nodes=nodes, output=out_name, meta=meta)
    if not graph.meta["num_classes"]:
        graph.meta["num_classes"] = int(np.prod(graph[out_name].shape))
    return graph


def _neuron_from(ng, name: str, inputs: list[str], rec: dict | None, scale: float) -> Neuron:
    vth = float(np.asarray(ng["vThMant"][()]).reshape(-1)[0])
    vdec = float(np.asarray(ng["vDecay"][()]).reshape(-1)[0])
    if rec and "threshold" in rec:
        th = float(rec["threshold"])
        leak = float(rec["leak"])
    else:
        th = vth / scale
        leak = 1.0 - vdec / 4096.0
    return Neuron(name, inputs, threshold=th, leak=min(1.0, max(0.0, leak)), reset="zero",
                  v_init=float(rec.get("v_init", 0.0)) if rec else 0.0)


def load_with_netx(path: str | Path, reset_interval: int | None = None):
    """Load the file with ``lava.lib.dl.netx.hdf5.Network`` (proves netx accepts it). Needs the
    privsnn[lava] extra (:class:`~privatesnn.errors.MissingExtraError` otherwise)."""
    import contextlib
    import io

    from privatesnn.lava_extra import import_error, require_lava

    feature = "loading a netx file with lava-dl"
    require_lava(feature, need_dl=True)
    import privatesnn.hw_targets.lava_sim  # noqa: F401  (imports Lava safely, see _tolerate_fork_context)

    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            from lava.lib.dl.netx import hdf5  # lava-dl prints CUDA / dataset-toolbox notices on import
    except ImportError as e:
        raise import_error(feature, e) from e

    return hdf5.Network(net_config=str(path), reset_interval=reset_interval)
