"""Device names (``cpu``, ``cuda``, ``cuda:N``) to torch devices, with a clear error."""

from __future__ import annotations

from .errors import PrivsnnError


def resolve_device(name: str):
    import torch

    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise PrivsnnError(f"--device {name}: CUDA is not available on this machine")
        return torch.device(name)
    raise PrivsnnError(f"--device must be cpu, cuda or cuda:N, got {name!r}")
