"""Import an ONNX image classifier as a ``torch.fx.GraphModule`` built from standard torch layers.

This is a small hand-written ONNX-to-torch converter (``onnx2torch`` is not a dependency). Each
supported ONNX op becomes the ``torch.nn`` module or plain function that later stages recognise when
they trace the network with torch.fx: Conv -> ``nn.Conv2d``, BatchNormalization -> ``nn.BatchNorm2d``,
Gemm/MatMul(+Add) -> ``nn.Linear``, residual Add -> ``operator.add``, Slice -> ``operator.getitem``,
Pad -> ``F.pad`` and so on. Shape arithmetic (Shape/Gather/Unsqueeze/Concat/Constant/... feeding a
Reshape or Pad) is folded to constants while importing.

While building the graph, every new node is also run on a one-image example, which gives static
activation shapes (for SAME padding, Shape ops and reshape targets) and the number of classes.
"""

from __future__ import annotations

import operator
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.node import map_aggregate

from ..errors import CheckpointError, PrivsnnError, UnsupportedLayerError

# Stand-in for the (symbolic) batch size in shape tensors folded from ``Shape`` ops.
BATCH = -(2**40)
_INT_INF = 2**62  # Slice ends at or above this mean "to the end"
_FLOAT_TYPES = {1, 10, 11, 16}  # onnx.TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16


@dataclass
class _Act:
    """A runtime tensor: its fx node and its value on a one-image example input."""

    node: fx.Node
    example: torch.Tensor


Value = Any  # _Act (activation), np.ndarray (constant) or None (absent optional input)


def load_onnx_classifier(path: str | Path) -> tuple[fx.GraphModule, tuple[int, int, int], int]:
    """Import the ONNX classifier at ``path``.

    Returns ``(module, (C, H, W), num_classes)``: an eval-mode ``torch.fx.GraphModule`` that maps a
    normalised ``(N, C, H, W)`` float tensor to ``(N, num_classes)`` logits.
    Raises CheckpointError (unreadable file), UnsupportedLayerError (unsupported op) or PrivsnnError.
    """
    path = Path(path)
    model = _read_model(path)
    return _Importer(model, path).run()


def _read_model(path: Path):
    import onnx

    expected = "expected an ONNX model file (a serialised onnx.ModelProto, e.g. from torch.onnx.export)"
    if not path.exists():
        raise CheckpointError(f"ONNX model not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"ONNX model {path} is a directory; {expected}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"ONNX model {path} is empty; {expected}")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as e:  # protobuf DecodeError, onnx ValidationError, missing external data, ...
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise CheckpointError(f"{path} is not a readable ONNX model (truncated, corrupt or another "
                              f"format: {msg}); {expected}") from None
    if not model.graph.node:
        raise CheckpointError(f"ONNX model {path} has an empty graph; {expected}")
    return model


def _attrs(node) -> dict[str, Any]:
    from onnx import helper

    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def _float_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(a, dtype=np.float32, copy=True))


def _dims_text(shape) -> str:
    return "(" + ", ".join(str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?")
                           for d in shape.dim) + ")"


# ---------------------------------------------------------------------------------------------
# Constant folding: numpy versions of the ops that compute shapes and pad widths.
# ---------------------------------------------------------------------------------------------

def _axes(node, a: dict, ins: list, idx: int) -> list[int] | None:
    """``axes`` of Unsqueeze/Squeeze/Slice/Pad: an attribute in old opsets, an input in new ones."""
    if len(ins) > idx and ins[idx] is not None:
        return [int(v) for v in np.asarray(ins[idx]).reshape(-1)]
    return list(a["axes"]) if "axes" in a else None


def _np_constant(node, ins, a):
    from onnx import numpy_helper

    if "value" in a:
        return numpy_helper.to_array(a["value"])
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in a:
            return np.array(a[key], dtype=dtype)
    raise UnsupportedLayerError(f"Constant node {node.name!r} uses an unsupported value attribute "
                                f"({', '.join(a)})")


def _np_cast(node, ins, a):
    from onnx import helper

    return ins[0].astype(helper.tensor_dtype_to_np_dtype(a["to"]))


def _np_unsqueeze(node, ins, a):
    x, axes = ins[0], _axes(node, a, ins, 1)
    rank = x.ndim + len(axes)
    for ax in sorted(ax % rank for ax in axes):
        x = np.expand_dims(x, ax)
    return x


def _np_squeeze(node, ins, a):
    axes = _axes(node, a, ins, 1)
    return np.squeeze(ins[0], axis=None if axes is None else tuple(axes))


def _np_reshape(node, ins, a):
    x, shape = ins[0], [int(v) for v in ins[1]]
    if not a.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _np_slice(node, ins, a):
    x = ins[0]
    starts, ends, axes, steps = _slice_params(node, a, ins, x.ndim)
    idx = [slice(None)] * x.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps):
        idx[ax] = slice(s, None if (st > 0 and e >= _INT_INF) or (st < 0 and e <= -_INT_INF) else e, st)
    return x[tuple(idx)]


def _np_div(node, ins, a):
    x, y = ins
    if np.issubdtype(np.result_type(x, y), np.integer):
        return np.trunc(np.true_divide(x, y)).astype(np.result_type(x, y))
    return np.true_divide(x, y)


def _np_constant_of_shape(node, ins, a):
    from onnx import numpy_helper

    value = numpy_helper.to_array(a["value"]).reshape(-1) if "value" in a else np.zeros(1, np.float32)
    return np.full([int(v) for v in ins[0]], value[0], dtype=value.dtype)


_CONST_OPS: dict[str, Callable[..., np.ndarray]] = {
    "Constant": _np_constant,
    "ConstantOfShape": _np_constant_of_shape,
    "Identity": lambda n, ins, a: ins[0],
    "Cast": _np_cast,
    "Shape": lambda n, ins, a: np.array(ins[0].shape[a.get("start", 0):a.get("end")], dtype=np.int64),
    "Gather": lambda n, ins, a: np.take(ins[0], ins[1], axis=a.get("axis", 0)),
    "Unsqueeze": _np_unsqueeze,
    "Squeeze": _np_squeeze,
    "Concat": lambda n, ins, a: np.concatenate([np.atleast_1d(v) for v in ins], axis=a["axis"]),
    "Reshape": _np_reshape,
    "Slice": _np_slice,
    "Transpose": lambda n, ins, a: np.transpose(ins[0], a.get("perm")),
    "Add": lambda n, ins, a: ins[0] + ins[1],
    "Sub": lambda n, ins, a: ins[0] - ins[1],
    "Mul": lambda n, ins, a: ins[0] * ins[1],
    "Div": _np_div,
}


def _slice_params(node, a, ins, rank) -> tuple[list[int], list[int], list[int], list[int]]:
    if len(ins) > 1:  # opset >= 10: starts, ends, axes, steps are inputs
        starts = [int(v) for v in ins[1]]
        ends = [int(v) for v in ins[2]]
        axes = _axes(node, a, ins, 3)
        steps = [int(v) for v in ins[4]] if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
    else:
        starts, ends, axes = list(a["starts"]), list(a["ends"]), a.get("axes")
        steps = [1] * len(starts)
    axes = list(range(len(starts))) if axes is None else [ax % rank for ax in axes]
    return starts, ends, axes, steps


# ---------------------------------------------------------------------------------------------
# Graph import
# ---------------------------------------------------------------------------------------------

class _Importer:
    """Walks the (topologically sorted) ONNX nodes and emits an equivalent fx graph."""

    def __init__(self, model, path: Path):
        from onnx import numpy_helper

        self.path = path
        self.onnx_graph = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.root = nn.Module()
        self.graph = fx.Graph(owning_module=self.root)  # lets eliminate_dead_code check purity
        self.consts: dict[str, np.ndarray] = {}
        for init in self.onnx_graph.initializer:
            try:
                self.consts[init.name] = numpy_helper.to_array(init)
            except Exception as e:  # e.g. external data file missing
                raise CheckpointError(f"{path}: cannot read initializer {init.name!r} ({e})") from None
        self.acts: dict[str, _Act] = {}
        self.consumers: dict[str, list] = defaultdict(list)
        for node in self.onnx_graph.node:
            for name in node.input:
                self.consumers[name].append(node)
        self.graph_outputs = {o.name for o in self.onnx_graph.output}
        self.aliases: dict[str, str] = {}  # fused Add output -> MatMul output it replaces
        self.names: set[str] = set()

    # -- entry point ---------------------------------------------------------------------------

    def run(self) -> tuple[fx.GraphModule, tuple[int, int, int], int]:
        g = self.onnx_graph
        inputs = [i for i in g.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise PrivsnnError(f"{self.path}: the ONNX graph has {len(inputs)} inputs "
                               f"({', '.join(i.name for i in inputs) or 'none'}); privsnn imports "
                               f"classifiers with exactly one image input")
        if len(g.output) != 1:
            raise PrivsnnError(f"{self.path}: the ONNX graph has {len(g.output)} outputs "
                               f"({', '.join(o.name for o in g.output) or 'none'}); privsnn imports "
                               f"classifiers with exactly one logits output")
        chw = self._input_shape(inputs[0])
        x = self.graph.placeholder("x")
        self.acts[inputs[0].name] = _Act(x, torch.zeros(1, *chw))

        for node in g.node:
            self._import_node(node)

        out_name = g.output[0].name
        out = self.acts.get(out_name)
        if out is None:
            if out_name in self.consts:
                raise PrivsnnError(f"{self.path}: the graph output {out_name!r} does not depend on "
                                   f"the input")
            raise CheckpointError(f"{self.path}: graph output {out_name!r} is not produced by any node "
                                  f"(truncated or corrupt model?)")
        if out.example.dim() != 2:
            raise PrivsnnError(f"{self.path}: the output {out_name!r} has shape "
                               f"(N, {', '.join(map(str, out.example.shape[1:]))}); expected (N, K) "
                               f"class logits")
        self.graph.output(out.node)
        self.graph.eliminate_dead_code()
        self.graph.lint()
        gm = fx.GraphModule(self.root, self.graph, class_name="OnnxClassifier")
        return gm.eval(), chw, int(out.example.shape[1])

    def _input_shape(self, inp) -> tuple[int, int, int]:
        t = inp.type
        if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
            raise PrivsnnError(f"{self.path}: graph input {inp.name!r} has no tensor shape; expected "
                               f"a 4-D NCHW image tensor")
        tt = t.tensor_type
        dims = tt.shape.dim
        if len(dims) != 4 or not all(d.HasField("dim_value") and d.dim_value > 0 for d in dims[1:]):
            raise PrivsnnError(f"{self.path}: graph input {inp.name!r} has shape {_dims_text(tt.shape)}; "
                               f"expected a 4-D NCHW image tensor (N, C, H, W) with static C, H, W")
        if tt.elem_type not in _FLOAT_TYPES:
            raise PrivsnnError(f"{self.path}: graph input {inp.name!r} is not a float tensor "
                               f"(ONNX elem_type {tt.elem_type})")
        return tuple(int(d.dim_value) for d in dims[1:])  # type: ignore[return-value]

    def _import_node(self, node) -> None:
        op = node.op_type
        if node.domain not in ("", "ai.onnx"):
            raise self._unsupported(node, f"{node.domain}::{op}")
        out = node.output[0] if node.output else ""
        if out in self.aliases:  # an Add already folded into the preceding Linear's bias
            self.acts[out] = self.acts[self.aliases[out]]
            return
        ins = [self._get(name, node) for name in node.input]
        a = _attrs(node)
        try:
            if op in _CONST_OPS and not any(isinstance(v, _Act) for v in ins):
                self.consts[out] = np.asarray(_CONST_OPS[op](node, ins, a))
                return
            handler = getattr(self, "_op_" + op, None)
            if handler is None:
                raise self._unsupported(node)
            result = handler(node, ins, a)
        except PrivsnnError:
            raise
        except Exception as e:  # shape mismatch, bad attribute, ... in an otherwise supported op
            raise UnsupportedLayerError(f"ONNX node {node.name!r} ({op}) could not be imported: "
                                        f"{type(e).__name__}: {e}") from None
        if isinstance(result, _Act):
            self.acts[out] = result
        else:
            self.consts[out] = np.asarray(result)

    # -- helpers ---------------------------------------------------------------------------------

    def _unsupported(self, node, op: str | None = None) -> UnsupportedLayerError:
        ops = sorted(m[4:] for m in dir(self) if m.startswith("_op_"))
        const_only = sorted(set(_CONST_OPS) - set(ops))
        return UnsupportedLayerError(
            f"ONNX op {op or node.op_type!r} (node {node.name!r}) is not supported by the privsnn ONNX "
            f"importer. Supported ops: {', '.join(ops)}; on constant inputs only: {', '.join(const_only)}")

    def _get(self, name: str, node) -> Value:
        if not name:
            return None
        if name in self.acts:
            return self.acts[name]
        if name in self.consts:
            return self.consts[name]
        raise UnsupportedLayerError(f"ONNX node {node.name!r} ({node.op_type}) reads {name!r}, which "
                                    f"privsnn cannot provide (an output of an unsupported form)")

    @staticmethod
    def _act(v: Value, node, what: str = "input") -> _Act:
        if not isinstance(v, _Act):
            raise UnsupportedLayerError(f"ONNX node {node.name!r} ({node.op_type}): {what} must be "
                                        f"computed from the network input, not a constant")
        return v

    @staticmethod
    def _const(v: Value, node, what: str) -> np.ndarray:
        if not isinstance(v, np.ndarray):
            raise UnsupportedLayerError(f"ONNX node {node.name!r} ({node.op_type}): {what} must be a "
                                        f"constant (initializer), not computed at run time")
        return v

    def _name(self, node, suffix: str = "") -> str:
        """A unique Python identifier from an ONNX node name such as ``/layer1/layer1.0/conv1/Conv``."""
        parts = [p for p in node.name.split("/") if p]
        if len(parts) > 1:
            parts = parts[:-1]  # the last segment is the op ("Conv"), the rest the torch module path
        # torch export repeats the qualified prefix: layer1/layer1.0/conv1 -> layer1.0/conv1
        parts = [p for i, p in enumerate(parts) if not (i + 1 < len(parts) and parts[i + 1].startswith(p + "."))]
        base = re.sub(r"\W", "_", "_".join(parts)).strip("_") or node.op_type.lower()
        base = ("m_" + base if base[0].isdigit() else base) + suffix
        name, i = base, 1
        while name in self.names or hasattr(self.root, name) or hasattr(fx.GraphModule, name):
            name, i = f"{base}_{i}", i + 1
        self.names.add(name)
        return name

    def _call(self, kind: str, target, args: tuple, kwargs: dict | None = None) -> _Act:
        """Add an fx node and compute its value on the example input."""
        kwargs = kwargs or {}
        unwrap_node = lambda v: v.node if isinstance(v, _Act) else v  # noqa: E731
        unwrap_ex = lambda v: v.example if isinstance(v, _Act) else v  # noqa: E731
        fx_node = self.graph.create_node(kind, target, map_aggregate(args, unwrap_node),
                                         map_aggregate(kwargs, unwrap_node))
        fn = self.root.get_submodule(target) if kind == "call_module" else target
        with torch.no_grad():
            example = fn(*map_aggregate(args, unwrap_ex), **map_aggregate(kwargs, unwrap_ex))
        return _Act(fx_node, example)

    def _module(self, node, module: nn.Module, *args) -> _Act:
        name = self._name(node)
        self.root.add_module(name, module.eval())
        return self._call("call_module", name, args)

    def _function(self, fn: Callable, *args, **kwargs) -> _Act:
        return self._call("call_function", fn, args, kwargs)

    def _buffer(self, node, value: np.ndarray) -> _Act:
        name = self._name(node, "_const")
        tensor = _float_tensor(value)
        self.root.register_buffer(name, tensor)
        return _Act(self.graph.get_attr(name), tensor)

    def _spatial_pads(self, node, a: dict, x: _Act, kernel: Sequence[int], strides: Sequence[int],
                      dilations: Sequence[int]) -> list[int]:
        """ONNX ``pads``/``auto_pad`` of a 2-D conv or pool as [top, left, bottom, right]."""
        auto = a.get("auto_pad", "NOTSET")
        if auto in ("NOTSET", ""):
            return [int(p) for p in a.get("pads", [0, 0, 0, 0])]
        if auto == "VALID":
            return [0, 0, 0, 0]
        begin, end = [], []
        for size, k, s, d in zip(x.example.shape[2:], kernel, strides, dilations):
            total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
            small, big = total // 2, total - total // 2
            begin.append(small if auto == "SAME_UPPER" else big)
            end.append(big if auto == "SAME_UPPER" else small)
        return begin + end

    def _split_pads(self, x: _Act, pads: list[int], value: float, max_pad: Sequence[int] | None = None
                    ) -> tuple[_Act, tuple[int, int]]:
        """Symmetric pads go to the layer's ``padding``; others become an explicit ``F.pad`` node."""
        t, l, b, r = pads
        if t == b and l == r and (max_pad is None or (t <= max_pad[0] and l <= max_pad[1])):
            return x, (t, l)
        kwargs = {"value": value} if value else {}
        return self._function(F.pad, x, (l, r, t, b), **kwargs), (0, 0)

    @staticmethod
    def _require_4d(x: _Act, node) -> None:
        if x.example.dim() != 4:
            raise UnsupportedLayerError(f"ONNX node {node.name!r} ({node.op_type}): only 2-D (NCHW) "
                                        f"inputs are supported, got a {x.example.dim()}-D tensor")

    # -- op handlers: return an _Act (activation) or np.ndarray (constant) for output 0 --------------

    def _op_Identity(self, node, ins, a) -> Value:
        return ins[0]

    def _op_Dropout(self, node, ins, a) -> Value:  # inference: pass-through
        return ins[0]

    def _op_Shape(self, node, ins, a) -> np.ndarray:
        x = self._act(ins[0], node)
        shape = np.array([BATCH, *x.example.shape[1:]], dtype=np.int64)
        return shape[a.get("start", 0):a.get("end")]

    def _op_Concat(self, node, ins, a) -> _Act:
        """Concatenation of activations along channels -> ``torch.cat(dim=1)`` (constant shape
        arithmetic never gets here: it is folded while importing)."""
        if not all(isinstance(v, _Act) for v in ins):
            raise UnsupportedLayerError(f"ONNX node {node.name!r} (Concat) mixes activations and constants; "
                                        f"not supported")
        rank = ins[0].example.dim()
        if a.get("axis") not in (1, 1 - rank):
            raise UnsupportedLayerError(f"ONNX node {node.name!r} (Concat) along axis {a.get('axis')} is not "
                                        f"supported; only channels (axis 1) can be")
        return self._function(torch.cat, list(ins), dim=1)

    def _op_Relu(self, node, ins, a) -> _Act:
        return self._module(node, nn.ReLU(), self._act(ins[0], node))

    def _op_Clip(self, node, ins, a) -> _Act:
        """Clip(0, c) (ReLU6 when c = 6) -> nn.Hardtanh(0, c); bounds from inputs (opset >= 11) or attributes."""
        lo = a.get("min") if len(ins) < 2 or ins[1] is None else float(self._const(ins[1], node, "the min").reshape(-1)[0])
        hi = a.get("max") if len(ins) < 3 or ins[2] is None else float(self._const(ins[2], node, "the max").reshape(-1)[0])
        if lo is None or float(lo) != 0.0 or hi is None or not float(hi) > 0:
            raise UnsupportedLayerError(f"ONNX node {node.name!r} (Clip) with bounds ({lo}, {hi}) is not supported: only "
                                        f"a clip to [0, c], c > 0 (e.g. ReLU6), can become a spiking neuron")
        return self._module(node, nn.Hardtanh(0.0, float(hi)), self._act(ins[0], node))

    def _op_Conv(self, node, ins, a) -> _Act:
        x = self._act(ins[0], node)
        w = self._const(ins[1], node, "the weight")
        bias = self._const(ins[2], node, "the bias") if len(ins) > 2 and ins[2] is not None else None
        self._require_4d(x, node)
        kernel = list(w.shape[2:])
        strides, dil = a.get("strides", [1, 1]), a.get("dilations", [1, 1])
        groups = int(a.get("group", 1))
        pads = self._spatial_pads(node, a, x, kernel, strides, dil)
        x, padding = self._split_pads(x, pads, 0.0)
        conv = nn.Conv2d(w.shape[1] * groups, w.shape[0], tuple(kernel), tuple(strides), padding,
                         tuple(dil), groups, bias=bias is not None)
        with torch.no_grad():
            conv.weight.copy_(_float_tensor(w))
            if bias is not None:
                conv.bias.copy_(_float_tensor(bias))
        return self._module(node, conv, x)

    def _op_BatchNormalization(self, node, ins, a) -> _Act:
        x = self._act(ins[0], node)
        scale, shift, mean, var = (self._const(v, node, "scale, bias, mean and var") for v in ins[1:5])
        cls = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d}.get(x.example.dim())
        if cls is None:
            raise UnsupportedLayerError(f"ONNX node {node.name!r} (BatchNormalization) on a "
                                        f"{x.example.dim()}-D tensor is not supported")
        bn = cls(len(scale), eps=float(a.get("epsilon", 1e-5)))
        with torch.no_grad():
            bn.weight.copy_(_float_tensor(scale))
            bn.bias.copy_(_float_tensor(shift))
            bn.running_mean.copy_(_float_tensor(mean))
            bn.running_var.copy_(_float_tensor(var))
        return self._module(node, bn, x)

    def _op_MaxPool(self, node, ins, a) -> _Act:
        x = self._act(ins[0], node)
        self._require_4d(x, node)
        k = list(a["kernel_shape"])
        strides, dil = a.get("strides", [1, 1]), a.get("dilations", [1, 1])
        pads = self._spatial_pads(node, a, x, k, strides, dil)
        x, padding = self._split_pads(x, pads, float("-inf"), max_pad=[k[0] // 2, k[1] // 2])
        pool = nn.MaxPool2d(tuple(k), tuple(strides), padding, tuple(dil), ceil_mode=bool(a.get("ceil_mode", 0)))
        return self._module(node, pool, x)

    def _op_AveragePool(self, node, ins, a) -> _Act:
        x = self._act(ins[0], node)
        self._require_4d(x, node)
        k = list(a["kernel_shape"])
        strides = a.get("strides", [1, 1])
        if any(d != 1 for d in a.get("dilations", [1, 1])):
            raise UnsupportedLayerError(f"ONNX node {node.name!r} (AveragePool) uses dilations, which "
                                        f"nn.AvgPool2d does not support")
        include = bool(a.get("count_include_pad", 0))
        pads = self._spatial_pads(node, a, x, k, strides, [1, 1])
        t, l, b, r = pads
        if not include and not (t == b and l == r and t <= k[0] // 2 and l <= k[1] // 2):
            raise UnsupportedLayerError(f"ONNX node {node.name!r} (AveragePool): asymmetric or oversized "
                                        f"pads {pads} with count_include_pad=0 are not supported")
        x, padding = self._split_pads(x, pads, 0.0, max_pad=[k[0] // 2, k[1] // 2])
        pool = nn.AvgPool2d(tuple(k), tuple(strides), padding, ceil_mode=bool(a.get("ceil_mode", 0)),
                            count_include_pad=include)
        return self._module(node, pool, x)

    def _op_GlobalAveragePool(self, node, ins, a) -> _Act:
        x = self._act(ins[0], node)
        self._require_4d(x, node)
        return self._module(node, nn.AdaptiveAvgPool2d(1), x)

    def _op_GlobalMaxPool(self, node, ins, a) -> _Act:
        x = self._act(ins[0], node)
        self._require_4d(x, node)
        return self._module(node, nn.AdaptiveMaxPool2d(1), x)

    def _op_Flatten(self, node, ins, a) -> _Act:
        x = self._act(ins[0], node)
        axis = int(a.get("axis", 1)) % max(x.example.dim(), 1)
        # ONNX Flatten always gives 2-D (prod(d[:axis]), prod(d[axis:])): equal to nn.Flatten(1) when
        # the dims between batch and axis are all 1; anything else would mix images of the batch.
        if axis == 0 or any(d != 1 for d in x.example.shape[1:axis]):
            raise UnsupportedLayerError(f"ONNX node {node.name!r} (Flatten) with axis={a.get('axis', 1)} "
                                        f"on shape {tuple(x.example.shape)} would merge the batch dim")
        return self._module(node, nn.Flatten(1), x)

    def _op_Reshape(self, node, ins, a) -> _Act:
        x = self._act(ins[0], node)
        target = [int(v) for v in self._const(ins[1], node, "the target shape")]
        ex = x.example.shape
        if not a.get("allowzero", 0):
            target = [ex[i] if (t == 0 and i < len(ex)) else t for i, t in enumerate(target)]
        rest_numel = int(np.prod(ex[1:]))
        rest = target[1:]
        # The first dim must stay the batch: a folded x.size(0), a literal 1 (export at batch 1),
        # or -1 with the remaining dims fully given.
        keeps_batch = target and (target[0] in (BATCH, 1) or (target[0] == -1 and all(t > 0 for t in rest)
                                                               and int(np.prod(rest)) == rest_numel))
        if not keeps_batch or any(t < -1 for t in rest) or rest.count(-1) > 1:
            raise UnsupportedLayerError(f"ONNX node {node.name!r} (Reshape) to {target} does not keep the "
                                        f"batch dim of shape {tuple(ex)}; only per-image reshapes are "
                                        f"supported")
        if -1 in rest:
            known = int(np.prod([t for t in rest if t != -1]))
            rest = [rest_numel // known if t == -1 else t for t in rest]
        if int(np.prod(rest)) != rest_numel:
            raise UnsupportedLayerError(f"ONNX node {node.name!r} (Reshape): cannot reshape "
                                        f"{tuple(ex)} to (N, {', '.join(map(str, rest))})")
        if list(rest) == list(ex[1:]):
            return x
        if len(rest) == 1:  # x.view(x.size(0), -1)
            return self._module(node, nn.Flatten(1), x)
        return self._function(torch.reshape, x, (-1, *rest))

    def _op_Gemm(self, node, ins, a) -> _Act:
        x = self._act(ins[0], node)
        w = self._const(ins[1], node, "B (the weight)")
        c = self._const(ins[2], node, "C (the bias)") if len(ins) > 2 and ins[2] is not None else None
        if a.get("transA", 0):
            raise UnsupportedLayerError(f"ONNX node {node.name!r} (Gemm) with transA=1 is not supported")
        weight = (w if a.get("transB", 0) else w.T) * float(a.get("alpha", 1.0))  # (out, in)
        bias = None
        if c is not None:
            if c.ndim == 2 and c.shape[0] != 1:
                raise UnsupportedLayerError(f"ONNX node {node.name!r} (Gemm): bias C of shape {c.shape} "
                                            f"depends on the batch position")
            bias = np.broadcast_to(c.reshape(-1), (weight.shape[0],)) * float(a.get("beta", 1.0))
        return self._module(node, self._linear(weight, bias), x)

    def _op_MatMul(self, node, ins, a) -> _Act:
        x = self._act(ins[0], node)
        w = self._const(ins[1], node, "the second operand (weight)")
        if w.ndim != 2:
            raise UnsupportedLayerError(f"ONNX node {node.name!r} (MatMul) with a {w.ndim}-D weight is "
                                        f"not supported")
        bias = None
        out = node.output[0]
        users = self.consumers[out]
        # MatMul followed by Add of a constant (out,) vector: one nn.Linear with bias.
        if len(users) == 1 and users[0].op_type == "Add" and out not in self.graph_outputs:
            other = [n for n in users[0].input if n != out]
            cand = self.consts.get(other[0]) if len(other) == 1 else None
            if cand is not None and cand.size == w.shape[1] and cand.ndim <= 2 and cand.shape[-1] == w.shape[1]:
                bias = cand.reshape(-1)
                self.aliases[users[0].output[0]] = out
        return self._module(node, self._linear(w.T, bias), x)

    @staticmethod
    def _linear(weight: np.ndarray, bias: np.ndarray | None) -> nn.Linear:
        lin = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        with torch.no_grad():
            lin.weight.copy_(_float_tensor(weight))
            if bias is not None:
                lin.bias.copy_(_float_tensor(bias))
        return lin

    def _binary(self, node, ins, fn: Callable) -> _Act:
        args = []
        for v in ins[:2]:
            if isinstance(v, _Act):
                args.append(v)
            elif v.size == 1 and v.ndim <= min(a.example.dim() for a in ins[:2] if isinstance(a, _Act)):
                args.append(float(v.reshape(-1)[0]))  # a scalar stays a literal
            else:
                args.append(self._buffer(node, v))
        return self._function(fn, *args)

    def _op_Add(self, node, ins, a) -> _Act:
        return self._binary(node, ins, operator.add)

    def _op_Sub(self, node, ins, a) -> _Act:
        return self._binary(node, ins, operator.sub)

    def _op_Mul(self, node, ins, a) -> _Act:
        return self._binary(node, ins, operator.mul)

    def _op_Div(self, node, ins, a) -> _Act:
        return self._binary(node, ins, operator.truediv)

    def _op_Concat(self, node, ins, a) -> _Act:
        acts = [v if isinstance(v, _Act) else self._buffer(node, v) for v in ins]
        axis = int(a["axis"]) % acts[0].example.dim()
        if axis == 0:
            raise UnsupportedLayerError(f"ONNX node {node.name!r} (Concat) along the batch dim is not supported")
        return self._function(torch.cat, acts, dim=axis)

    def _op_Pad(self, node, ins, a) -> Value:
        x = self._act(ins[0], node)
        rank = x.example.dim()
        if self.opset >= 11:
            pads = [int(v) for v in self._const(ins[1], node, "pads")]
            value = ins[2] if len(ins) > 2 and ins[2] is not None else None
            value = float(np.asarray(self._const(value, node, "constant_value")).reshape(-1)[0]) if value is not None else 0.0
            axes = _axes(node, {}, ins, 3)
        else:
            pads, value, axes = list(a["pads"]), float(a.get("value", 0.0)), None
        axes = list(range(rank)) if axes is None else [ax % rank for ax in axes]
        begin, end = [0] * rank, [0] * rank
        for i, ax in enumerate(axes):
            begin[ax], end[ax] = pads[i], pads[i + len(axes)]
        if begin[0] or end[0]:
            raise UnsupportedLayerError(f"ONNX node {node.name!r} (Pad) pads the batch dim")
        torch_pad: list[int] = []  # F.pad order: last dim first, (begin, end) pairs
        for d in reversed(range(rank)):
            torch_pad += [begin[d], end[d]]
        while torch_pad and torch_pad[-2:] == [0, 0]:
            torch_pad = torch_pad[:-2]
        if not torch_pad:
            return x
        mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}.get(
            a.get("mode", "constant"))
        if mode is None:
            raise UnsupportedLayerError(f"ONNX node {node.name!r} (Pad): mode {a.get('mode')!r} is not supported")
        kwargs: dict[str, Any] = {}
        if mode != "constant":
            kwargs["mode"] = mode
        elif value:
            kwargs["value"] = value
        return self._function(F.pad, x, tuple(torch_pad), **kwargs)

    def _op_Slice(self, node, ins, a) -> _Act:
        x = self._act(ins[0], node)
        params = [None if v is None else self._const(v, node, "slice parameters") for v in ins[1:]]
        starts, ends, axes, steps = _slice_params(node, a, [None, *params], x.example.dim())
        idx = [slice(None)] * x.example.dim()
        for s, e, ax, st in zip(starts, ends, axes, steps):
            if st <= 0:
                raise UnsupportedLayerError(f"ONNX node {node.name!r} (Slice): step {st} is not supported")
            full = x.example.shape[ax]
            sl = slice(s or None, None if e >= min(_INT_INF, full) else e, st if st != 1 else None)
            if ax == 0 and sl != slice(None):
                raise UnsupportedLayerError(f"ONNX node {node.name!r} (Slice) slices the batch dim")
            idx[ax] = sl
        while idx and idx[-1] == slice(None):
            idx.pop()
        if not idx:
            return x
        return self._function(operator.getitem, x, tuple(idx))
