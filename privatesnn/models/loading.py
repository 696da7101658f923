"""Turn a ``--model SPEC`` into a torch module with its preprocessing.

Specs:
  * ``digits`` / ``digits-evaluator``: the embedded digits CNN / MLP (package data, no download);
  * ``ARCH:CHECKPOINT``: a registered architecture and a PyTorch state dict;
  * ``PATH.onnx``: an ONNX classifier imported into torch.

Checkpoints are always read with ``torch.load(..., map_location="cpu", weights_only=True)``: a file
that needs arbitrary objects unpickled is refused, never executed.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn

from ..errors import CheckpointError, PrivsnnError
from ..io_utils import sha256_file
from .registry import ModelCfg, create_model, model_cfg

PACKAGE_DATA = Path(__file__).resolve().parent.parent / "data"
EMBEDDED = {
    # spec -> (architecture, file under privatesnn/data)
    "digits": ("digits_cnn", "digits_cnn.pt"),
    "digits-evaluator": ("digits_mlp", "digits_mlp.pt"),
}
STATE_DICT_KEYS = ("state_dict", "model", "net")


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, for pixels in [0, 1]."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


@dataclass
class LoadedModel:
    """A classifier ready to run on pixels in [0, 1], plus everything needed to rebuild it."""

    net: nn.Module  # expects normalised input
    spec: str
    arch: str  # registry name, or "onnx"
    input_shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    sha256: str  # of the weights file
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def normalize(self) -> Normalize:
        return Normalize(self.mean, self.std)

    def module(self) -> nn.Module:
        """``Normalize`` followed by the network: takes pixels in [0, 1]."""
        return nn.Sequential(self.normalize, self.net).eval()

    def describe(self) -> dict[str, Any]:
        """What artifacts record about their source model."""
        return {"spec": self.spec, "arch": self.arch, "sha256": self.sha256,
                "input_shape": list(self.input_shape), "num_classes": self.num_classes,
                "mean": list(self.mean), "std": list(self.std)}


def parse_floats(text: str | None, what: str) -> tuple[float, ...] | None:
    """Parse ``"0.485,0.456,0.406"``; None stays None."""
    if text is None:
        return None
    try:
        vals = tuple(float(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        raise PrivsnnError(f"{what}: expected comma-separated numbers, got {text!r}") from None
    if not vals:
        raise PrivsnnError(f"{what}: expected comma-separated numbers, got {text!r}")
    return vals


def load_model(spec: str, num_classes: int | None = None, mean: Sequence[float] | str | None = None,
               std: Sequence[float] | str | None = None) -> LoadedModel:
    """Load the classifier named by ``spec`` (see module docstring), in eval mode, on the CPU."""
    if isinstance(mean, str):
        mean = parse_floats(mean, "--mean")
    if isinstance(std, str):
        std = parse_floats(std, "--std")
    spec = str(spec)
    if spec in EMBEDDED:
        arch, fname = EMBEDDED[spec]
        path = PACKAGE_DATA / fname
        if not path.exists():
            raise CheckpointError(
                f"embedded model file {path} is missing; rebuild it with `python scripts/train_digits.py`")
        cfg = model_cfg(arch)
        net = create_model(arch, num_classes)
        _load_weights(net, path)
        loaded = _finish(net, spec, arch, cfg, path, num_classes, mean, std)
    elif spec.lower().endswith(".onnx"):
        from .onnx_import import load_onnx_classifier

        path = Path(spec)
        net, input_shape, n_out = load_onnx_classifier(path)
        c = input_shape[0]
        default_mean = (0.0,) * c
        default_std = (1.0,) * c
        cfg = ModelCfg(input_shape=input_shape, num_classes=n_out, mean=default_mean, std=default_std)
        loaded = _finish(net, spec, "onnx", cfg, path, None, mean, std)
    elif ":" in spec:
        arch, ckpt = spec.split(":", 1)
        cfg = model_cfg(arch)
        net = create_model(arch, num_classes)
        path = Path(ckpt)
        _load_weights(net, path)
        loaded = _finish(net, spec, arch.lower(), cfg, path, num_classes, mean, std)
    else:
        raise PrivsnnError(
            f"model spec {spec!r} not understood: expected 'digits', 'ARCH:CHECKPOINT' "
            f"(e.g. resnet20:model.th) or 'PATH.onnx'")
    return loaded


def _finish(net: nn.Module, spec: str, arch: str, cfg: ModelCfg, path: Path, num_classes: int | None,
            mean, std) -> LoadedModel:
    c = cfg.input_shape[0]
    mean = tuple(mean) if mean is not None else cfg.mean
    std = tuple(std) if std is not None else cfg.std
    for name, vals in (("--mean", mean), ("--std", std)):
        if len(vals) not in (1, c):
            raise PrivsnnError(f"{name} has {len(vals)} values but the model takes {c} input channels")
    if len(mean) == 1:
        mean = mean * c
    if len(std) == 1:
        std = std * c
    if any(s <= 0 for s in std):
        raise PrivsnnError(f"--std values must be > 0, got {std}")
    n = num_classes if num_classes is not None else cfg.num_classes
    net.eval()
    return LoadedModel(net=net, spec=spec, arch=arch, input_shape=tuple(cfg.input_shape), num_classes=n,
                       mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std),
                       sha256=sha256_file(path))


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict safely (``weights_only=True``), unwrap ``state_dict``/``model``/``net``
    and strip a ``module.`` prefix. Raises CheckpointError with the file name on any problem."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory, expected a file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "weights only" in str(e).lower() or "weights_only" in str(e).lower():
            raise CheckpointError(
                f"refused {path}: it needs arbitrary Python objects unpickled, which could run code; "
                f"privsnn only loads plain tensors (weights_only=True). Re-save it as a state dict.") from None
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({msg})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, AttributeError, KeyError,
            IndexError, TypeError, UnicodeDecodeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt: {msg})") from None
    return extract_state_dict(obj, str(path))


def extract_state_dict(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """Find the state dict in a loaded checkpoint object."""
    fmt = obj.get("format") if isinstance(obj, Mapping) else None
    if isinstance(fmt, str) and fmt.startswith("privsnn-"):
        raise CheckpointError(f"{source} is a privsnn artifact ({fmt}), not an ANN checkpoint; "
                              f"SNN artifacts go to --snn")
    if isinstance(obj, Mapping):
        for key in STATE_DICT_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{source}: expected a state dict (or a dict holding one under "
                              f"{'/'.join(STATE_DICT_KEYS)}), found {type(obj).__name__}")
    sd: dict[str, torch.Tensor] = {}
    for k, v in obj.items():
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{source}: entry {k!r} is a {type(v).__name__}, expected a tensor")
        sd[k[len("module."):] if k.startswith("module.") else k] = v
    return sd


def _load_weights(net: nn.Module, path: Path) -> None:
    sd = read_checkpoint(path)
    check_state_dict(net, sd, str(path))
    net.load_state_dict(sd, strict=False)  # check_state_dict already enforced an exact fit


def check_state_dict(net: nn.Module, sd: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise CheckpointError naming the first missing/unexpected/mis-shaped keys and any NaN/Inf."""
    own = net.state_dict()
    # BatchNorm's step counter is bookkeeping, not a weight: older checkpoints lack it.
    missing = [k for k in own if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k} (checkpoint {tuple(sd[k].shape)}, model {tuple(own[k].shape)})"
              for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    problems = []
    if missing:
        problems.append(f"missing keys: {', '.join(missing[:3])}" + (f" (+{len(missing) - 3} more)" if len(missing) > 3 else ""))
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected[:3])}" + (f" (+{len(unexpected) - 3} more)" if len(unexpected) > 3 else ""))
    if shapes:
        problems.append(f"shape mismatch: {', '.join(shapes[:3])}" + (f" (+{len(shapes) - 3} more)" if len(shapes) > 3 else ""))
    if problems:
        raise CheckpointError(f"{source} does not fit architecture {type(net).__name__}: " + "; ".join(problems))
    for k, v in sd.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise CheckpointError(f"{source}: tensor {k!r} contains NaN or Inf values")
