"""Model registry: one decorator files each architecture builder with its preprocessing defaults."""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Callable

import torch.nn as nn

from ..errors import PrivsnnError


@dataclass(frozen=True)
class ModelCfg:
    """What a caller must know about an architecture besides its weights."""

    input_shape: tuple[int, int, int]  # (C, H, W) of one image
    num_classes: int  # default head size; --num-classes overrides
    mean: tuple[float, ...]  # per-channel preprocessing applied to pixels in [0, 1]
    std: tuple[float, ...]
    description: str = ""
    extra: dict = field(default_factory=dict)


_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
_CFGS: dict[str, ModelCfg] = {}


def register_model(cfg: ModelCfg, name: str | None = None):
    """Register ``fn(num_classes=...) -> nn.Module`` under ``name`` (default: the function's name)."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = (name or fn.__name__).lower()
        if key in _BUILDERS:
            raise ValueError(f"model {key!r} is already registered")
        _BUILDERS[key] = fn
        _CFGS[key] = cfg
        return fn

    return deco


def list_models(pattern: str = "*") -> list[str]:
    """Registered architecture names matching a shell-style ``pattern``, sorted."""
    return sorted(n for n in _BUILDERS if fnmatch.fnmatch(n, pattern))


def _check_name(name: str) -> str:
    key = name.lower()
    if key not in _BUILDERS:
        close = difflib.get_close_matches(key, _BUILDERS, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise PrivsnnError(
            f"unknown architecture {name!r}.{hint} Known: {', '.join(list_models())}"
        )
    return key


def model_cfg(name: str) -> ModelCfg:
    """The registered config of architecture ``name``."""
    return _CFGS[_check_name(name)]


def create_model(name: str, num_classes: int | None = None) -> nn.Module:
    """Build architecture ``name`` (random init) with ``num_classes`` outputs."""
    key = _check_name(name)
    n = num_classes if num_classes is not None else _CFGS[key].num_classes
    if n < 2:
        raise PrivsnnError(f"--num-classes must be >= 2, got {n}")
    return _BUILDERS[key](num_classes=n)
