"""Extract a trained ANN (torch.fx) into the layer graph, folding BatchNorm into convolutions.

Recognised: Conv2d, Linear, BatchNorm (folded into the preceding conv/linear), ReLU (module,
``F.relu``, ``torch.relu``, ``.relu()``), AvgPool2d, MaxPool2d, AdaptiveAvgPool2d, Flatten (module,
``torch.flatten``, ``.view``/``.reshape`` to (N, -1)), residual ``+``, Dropout/Identity (dropped),
and the option-A shortcut (spatial ``x[:, :, ::s, ::s]`` and channel zero padding), which becomes a
fixed 1x1 strided convolution so that every reader sees only standard layers. Anything else is an
UnsupportedLayerError naming the layer.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.passes.shape_prop import ShapeProp

from .errors import UnsupportedLayerError
from .graph import Add, AvgPool, Conv, Flatten, Graph, Input, Linear, MaxPool, Neuron, Node
from .lowering import ChannelAffine, Concat, lower, needs_lowering
from .models.cifar_resnet import ShortcutA

SUPPORTED = ("Conv2d (grouped, depthwise), Linear, BatchNorm1d/2d (folded; also before a ReLU after an add or "
             "concatenation), ReLU, ReLU6 / clamp(0, c) / Hardtanh(0, c), AvgPool2d, MaxPool2d, AdaptiveAvgPool2d, "
             "Flatten/view/reshape, residual add, channel concatenation (torch.cat dim 1), Dropout, Identity, "
             "option-A shortcut (slice + channel pad)")
_PASS_MODULES = (nn.Dropout, nn.Dropout2d, nn.Identity)


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, ShortcutA) or super().is_leaf_module(m, qualname)


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _routing_conv(name: str, src: str, c_in: int, c_out: int, offset: int, stride: int) -> Conv:
    """A fixed 1x1 conv that copies channel i to channel i + offset, subsampling by ``stride``."""
    w = torch.zeros(c_out, c_in, 1, 1)
    for i in range(c_in):
        w[i + offset, i, 0, 0] = 1.0
    return Conv(name=name, inputs=[src], weight=w, bias=None, stride=(stride, stride), trainable=False)


def _clamp_bounds(n: fx.Node, fn) -> tuple[float | None, float | None]:
    """(min, max) of a clamp/clip/hardtanh call, from positional or keyword arguments."""
    names = ("min_val", "max_val") if fn is F.hardtanh else ("min", "max")
    defaults = (-1.0, 1.0) if fn is F.hardtanh else (None, None)
    args = list(n.args[1:3]) + [None] * (2 - len(n.args[1:3]))
    lo = n.kwargs.get(names[0], args[0] if args[0] is not None else defaults[0])
    hi = n.kwargs.get(names[1], args[1] if args[1] is not None else defaults[1])
    if isinstance(lo, fx.Node) or isinstance(hi, fx.Node):
        raise UnsupportedLayerError(f"clamp at node {n.name!r} with tensor bounds is not supported")
    return lo, hi


def _clip_ceiling(lo, hi, where: str) -> float:
    """The ceiling of a ReLU with a clip (ReLU6, clamp(0, c), hardtanh(0, c)): the threshold absorbs it."""
    if lo is None or float(lo) != 0.0 or hi is None or not float(hi) > 0:
        raise UnsupportedLayerError(f"clamp/hardtanh at {where!r} with bounds ({lo}, {hi}) is not supported: a "
                                    f"spiking neuron can stand only for a clip to [0, c] with c > 0 (e.g. ReLU6)")
    return float(hi)


def extract_graph(net: nn.Module, input_shape: tuple[int, int, int], meta: dict[str, Any] | None = None) -> Graph:
    """Trace ``net`` (taking normalised NCHW input) into a :class:`Graph` with BN folded."""
    net = net.eval()
    if isinstance(net, fx.GraphModule):
        gm = net
    else:
        try:
            gm = fx.GraphModule(net, _Tracer().trace(net))
        except Exception as e:  # fx raises many types on untraceable control flow
            raise UnsupportedLayerError(f"cannot trace the model with torch.fx ({type(e).__name__}: {e}); "
                                        f"data-dependent control flow is not supported") from None
    with torch.no_grad():
        ShapeProp(gm).propagate(torch.zeros(2, *input_shape))
    modules = dict(gm.named_modules())
    nodes: dict[str, Node] = {}
    alias: dict[str, str] = {}  # fx node name -> graph node name it is equivalent to
    output = None

    def src(a) -> str:
        if not isinstance(a, fx.Node):
            raise UnsupportedLayerError(f"unexpected non-tensor argument {a!r}")
        return alias.get(a.name, a.name)

    def shape_of(n: fx.Node) -> tuple[int, ...]:
        tm = n.meta.get("tensor_meta")
        return tuple(tm.shape[1:]) if tm is not None and hasattr(tm, "shape") else ()

    def add(node: Node) -> None:
        nodes[node.name] = node

    for n in gm.graph.nodes:
        name = n.name
        if n.op == "placeholder":
            add(Input(name=name, inputs=[], shape=tuple(input_shape)))
            continue
        if n.op == "output":
            output = src(n.args[0])
            continue
        if n.op == "get_attr":
            raise UnsupportedLayerError(f"layer {name!r}: direct parameter access ({n.target}) is not supported; "
                                        f"supported: {SUPPORTED}")
        if n.op == "call_module":
            m = modules[n.target]
            ins = [a for a in n.args if isinstance(a, fx.Node)]
            if isinstance(m, nn.Conv2d):
                if m.padding_mode != "zeros" or isinstance(m.padding, str) and m.padding != "valid":
                    pad = m.padding if not isinstance(m.padding, str) else None
                    if pad is None:
                        raise UnsupportedLayerError(f"layer {n.target!r}: conv padding {m.padding!r} not supported")
                if _pair(m.dilation) != (1, 1):
                    raise UnsupportedLayerError(f"layer {n.target!r}: dilated convolution is not supported")
                pad = (0, 0) if m.padding == "valid" else _pair(m.padding)
                add(Conv(name=name, inputs=[src(ins[0])], weight=m.weight.detach().clone(),
                         bias=None if m.bias is None else m.bias.detach().clone(),
                         stride=_pair(m.stride), padding=pad, groups=m.groups))
            elif isinstance(m, nn.Linear):
                add(Linear(name=name, inputs=[src(ins[0])], weight=m.weight.detach().clone(),
                           bias=None if m.bias is None else m.bias.detach().clone()))
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                if _foldable_bn(nodes, src(ins[0]), ins[0]):
                    _fold_bn(nodes[src(ins[0])], m)
                    alias[name] = src(ins[0])
                else:  # pre-activation BN (after an add/concat, or a conv read elsewhere too): lowered below
                    scale, shift = _bn_affine(m)
                    add(ChannelAffine(name=name, inputs=[src(ins[0])], scale=scale, shift=shift))
            elif isinstance(m, nn.ReLU):
                add(Neuron(name=name, inputs=[src(ins[0])]))
            elif isinstance(m, (nn.ReLU6, nn.Hardtanh)):  # ReLU6 is a Hardtanh(0, 6)
                add(Neuron(name=name, inputs=[src(ins[0])], clip=_clip_ceiling(m.min_val, m.max_val, n.target)))
            elif isinstance(m, nn.AvgPool2d):
                if m.ceil_mode or (not m.count_include_pad and _pair(m.padding) != (0, 0)):
                    raise UnsupportedLayerError(f"layer {n.target!r}: AvgPool2d with ceil_mode or "
                                                f"count_include_pad=False and padding is not supported")
                k = _pair(m.kernel_size)
                add(AvgPool(name=name, inputs=[src(ins[0])], kernel=k, stride=_pair(m.stride or k),
                            padding=_pair(m.padding)))
            elif isinstance(m, nn.MaxPool2d):
                if m.ceil_mode or _pair(m.dilation) != (1, 1):
                    raise UnsupportedLayerError(f"layer {n.target!r}: MaxPool2d with ceil_mode/dilation is not supported")
                k = _pair(m.kernel_size)
                add(MaxPool(name=name, inputs=[src(ins[0])], kernel=k, stride=_pair(m.stride or k),
                            padding=_pair(m.padding)))
            elif isinstance(m, nn.AdaptiveAvgPool2d):
                add(_adaptive_pool(name, src(ins[0]), shape_of(ins[0]), m.output_size, n.target))
            elif isinstance(m, nn.Flatten):
                if m.start_dim != 1 or m.end_dim != -1:
                    raise UnsupportedLayerError(f"layer {n.target!r}: only Flatten(start_dim=1) is supported")
                add(Flatten(name=name, inputs=[src(ins[0])]))
            elif isinstance(m, _PASS_MODULES):
                alias[name] = src(ins[0])
            elif isinstance(m, ShortcutA):
                c_in = shape_of(ins[0])[0]
                pad = m.out_planes - m.in_planes
                add(_routing_conv(name, src(ins[0]), c_in, c_in + pad, pad // 2, m.stride))
            else:
                raise UnsupportedLayerError(f"layer {n.target!r} of type {type(m).__name__} is not supported; "
                                            f"supported: {SUPPORTED}")
            continue
        # call_function / call_method
        fn = n.target
        tensor_args = [a for a in n.args if isinstance(a, fx.Node)]
        if fn in (F.relu, torch.relu) or fn == "relu":
            add(Neuron(name=name, inputs=[src(tensor_args[0])]))
        elif fn is F.relu6:
            add(Neuron(name=name, inputs=[src(tensor_args[0])], clip=6.0))
        elif fn in (F.hardtanh, torch.clamp, torch.clip) or fn in ("clamp", "clip", "clamp_"):
            lo, hi = _clamp_bounds(n, fn)
            add(Neuron(name=name, inputs=[src(tensor_args[0])], clip=_clip_ceiling(lo, hi, name)))
        elif fn in (torch.cat, torch.concat):
            add(_concat(n, name, [src(a) for a in _cat_inputs(n)], shape_of(n)))
        elif fn in (operator.add, torch.add) or fn == "add":
            if len(tensor_args) == 2 and not any(isinstance(a, (int, float)) for a in n.args):
                add(Add(name=name, inputs=[src(a) for a in tensor_args]))
            else:
                raise UnsupportedLayerError(f"layer {name!r}: adding a constant is not supported")
        elif fn in (torch.flatten,) or fn in ("flatten", "view", "reshape") or fn in (torch.reshape,):
            out_shape = shape_of(n)
            if len(out_shape) == 1:
                add(Flatten(name=name, inputs=[src(tensor_args[0])]))
            elif out_shape == shape_of(tensor_args[0]):
                alias[name] = src(tensor_args[0])
            else:
                raise UnsupportedLayerError(f"layer {name!r}: reshape to {out_shape} is not supported (only flatten)")
        elif fn == "size" or fn is getattr:
            continue  # shape queries used by view(x.size(0), -1)
        elif fn in (F.dropout, F.dropout2d) or fn in ("contiguous", "clone"):
            alias[name] = src(tensor_args[0])
        elif fn in (F.avg_pool2d, F.max_pool2d, F.adaptive_avg_pool2d):
            add(_functional_pool(n, name, src(tensor_args[0]), shape_of(tensor_args[0])))
        elif fn is operator.getitem:
            add(_slice_as_conv(n, name, src(tensor_args[0]), shape_of(tensor_args[0])))
        elif fn is F.pad:
            add(_pad_as_conv(n, name, src(tensor_args[0]), shape_of(tensor_args[0])))
        else:
            label = fn if isinstance(fn, str) else getattr(fn, "__name__", str(fn))
            raise UnsupportedLayerError(f"operation {label!r} at node {name!r} is not supported; supported: {SUPPORTED}")
    if output is None:
        raise UnsupportedLayerError("the traced model has no output")
    nodes = _prune(nodes, output)
    lowering = None
    if needs_lowering(nodes):  # concatenation / pre-activation BN -> convs, adds, neurons (lowering.py)
        nodes, output, lowering = lower(nodes, output)
    nodes = _fuse_routing(nodes)
    Graph(nodes=dict(nodes), output=output)  # validates and fills in shapes
    nodes = _route_identity_shortcuts(nodes)
    graph = Graph(nodes=nodes, output=output, meta=dict(meta or {}))
    if lowering:
        graph.meta["lowering"] = lowering
    if not graph.is_readout(output):
        raise UnsupportedLayerError(f"the network must end in a Linear layer (logits), ends in {graph[output].TYPE} "
                                    f"{output!r}")
    return graph


def _foldable_bn(nodes: dict[str, Node], prev: str, prev_fx: fx.Node) -> bool:
    """A BN folds into the conv/linear before it when nothing else reads that layer's output."""
    p = nodes.get(prev)
    return (isinstance(p, (Conv, Linear)) and len(prev_fx.users) == 1
            and not any(prev in m.inputs for m in nodes.values()))


def _bn_affine(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) per channel of an eval-mode BatchNorm: ``bn(x) = x * scale + shift``."""
    inv = 1.0 / torch.sqrt(bn.running_var + bn.eps)
    scale = bn.weight.detach() * inv if bn.affine else inv
    shift = (bn.bias.detach() if bn.affine else torch.zeros_like(bn.running_mean)) - bn.running_mean * scale
    return scale.detach().clone(), shift.detach().clone()


def _fold_bn(p: Conv | Linear, bn: nn.Module) -> None:
    scale, shift = _bn_affine(bn)
    shape = (-1,) + (1,) * (p.weight.dim() - 1)
    b = p.bias if p.bias is not None else torch.zeros(p.weight.shape[0])
    p.weight = (p.weight * scale.view(shape)).detach().clone()
    p.bias = (b * scale + shift).detach().clone()


def _cat_inputs(n: fx.Node) -> list[fx.Node]:
    seq = n.args[0] if n.args else n.kwargs.get("tensors")
    if not isinstance(seq, (list, tuple)) or not all(isinstance(a, fx.Node) for a in seq):
        raise UnsupportedLayerError(f"concatenation at node {n.name!r} must take a list of tensors")
    return list(seq)


def _concat(n: fx.Node, name: str, inputs: list[str], out_shape: tuple[int, ...]) -> Concat:
    dim = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim", 0)
    if dim not in (1, -len(out_shape)):  # dim 1 (channels) of (N, C, H, W) or (N, F)
        raise UnsupportedLayerError(f"concatenation at node {name!r} along dim {dim} is not supported; only "
                                    f"channels (dim 1) can be")
    return Concat(name=name, inputs=inputs, shape=out_shape)

def _adaptive_pool(name: str, src: str, in_shape: tuple[int, ...], out_size, target: str) -> AvgPool:
    c, h, w = in_shape
    oh, ow = _pair(out_size) if out_size is not None else (h, w)
    if h % oh or w % ow:
        raise UnsupportedLayerError(f"layer {target!r}: AdaptiveAvgPool2d from {(h, w)} to {(oh, ow)} is not a "
                                    f"uniform pooling")
    k = (h // oh, w // ow)
    return AvgPool(name=name, inputs=[src], kernel=k, stride=k)


def _functional_pool(n: fx.Node, name: str, src: str, in_shape) -> Node:
    args = list(n.args[1:])
    kw = dict(n.kwargs)
    if n.target is F.adaptive_avg_pool2d:
        return _adaptive_pool(name, src, in_shape, args[0] if args else kw["output_size"], name)
    k = _pair(args[0] if args else kw["kernel_size"])
    stride = args[1] if len(args) > 1 else kw.get("stride")
    stride = _pair(stride) if stride else k
    pad = _pair(args[2] if len(args) > 2 else kw.get("padding", 0))
    kls = AvgPool if n.target is F.avg_pool2d else MaxPool
    return kls(name=name, inputs=[src], kernel=k, stride=stride, padding=pad)


def _slice_as_conv(n: fx.Node, name: str, src: str, in_shape) -> Conv:
    """``x[:, :, ::s, ::s]`` (spatial subsampling) as a fixed strided 1x1 conv."""
    idx = n.args[1]
    ok = (isinstance(idx, tuple) and len(idx) == 4 and all(isinstance(i, slice) for i in idx)
          and all(i == slice(None) for i in idx[:2]) and all(i.start in (None, 0) and i.stop is None for i in idx[2:])
          and idx[2].step == idx[3].step)
    if not ok or len(in_shape) != 3:
        raise UnsupportedLayerError(f"indexing {idx!r} at node {name!r} is not supported (only x[:, :, ::s, ::s])")
    c = in_shape[0]
    return _routing_conv(name, src, c, c, 0, int(idx[2].step or 1))


def _pad_as_conv(n: fx.Node, name: str, src: str, in_shape) -> Conv:
    """Zero padding of channels only (option-A shortcut) as a fixed 1x1 conv."""
    pad = list(n.args[1] if len(n.args) > 1 else n.kwargs["pad"])
    mode = n.kwargs.get("mode", n.args[2] if len(n.args) > 2 else "constant")
    value = n.kwargs.get("value", n.args[3] if len(n.args) > 3 else 0.0)
    pad += [0] * (6 - len(pad))
    if mode != "constant" or (value or 0.0) != 0.0 or any(pad[:4]) or len(in_shape) != 3:
        raise UnsupportedLayerError(f"F.pad {pad} at node {name!r} is not supported (only zero padding of channels)")
    c = in_shape[0]
    return _routing_conv(name, src, c, c + pad[4] + pad[5], pad[4], 1)


def _prune(nodes: dict[str, Node], output: str) -> dict[str, Node]:
    """Drop nodes that do not reach the output."""
    needed, stack = set(), [output]
    while stack:
        k = stack.pop()
        if k in needed:
            continue
        needed.add(k)
        stack.extend(nodes[k].inputs)
    return {k: v for k, v in nodes.items() if k in needed}


def _fuse_routing(nodes: dict[str, Node]) -> dict[str, Node]:
    """Merge chains of fixed bias-free 1x1 routing convs (subsample then channel pad) into one."""
    out = dict(nodes)
    for name, node in list(out.items()):
        if not (isinstance(node, Conv) and not node.trainable):
            continue
        prev = out.get(node.inputs[0])
        users = [m for m in out.values() if prev is not None and prev.name in m.inputs]
        if isinstance(prev, Conv) and not prev.trainable and len(users) == 1 and prev.bias is None and node.bias is None:
            w = (node.weight[:, :, 0, 0] @ prev.weight[:, :, 0, 0])[:, :, None, None]
            node.weight = w
            node.stride = (prev.stride[0] * node.stride[0], prev.stride[1] * node.stride[1])
            node.inputs = list(prev.inputs)
            del out[prev.name]
    return out


def _route_identity_shortcuts(nodes: dict[str, Node]) -> dict[str, Node]:
    """Give every un-weighted input of an Add (an identity shortcut) a fixed 1x1 identity conv, so
    that conversion can scale each residual path to its target neuron's threshold."""
    out: dict[str, Node] = {}
    for name, node in nodes.items():
        if isinstance(node, Add):
            new_inputs = []
            for s in node.inputs:
                if isinstance(nodes[s], (Conv, Linear)):
                    new_inputs.append(s)
                    continue
                c = nodes[s].shape[0] if nodes[s].shape else None
                rname = f"{name}_shortcut_from_{s}"
                if c is None:
                    raise UnsupportedLayerError(f"residual add {name!r}: cannot infer channels of {s!r}")
                out[rname] = _routing_conv(rname, s, c, c, 0, 1)
                new_inputs.append(rname)
            node.inputs = new_inputs
        out[name] = node
    return out
