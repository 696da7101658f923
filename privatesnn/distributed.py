"""Multi-process runs under ``torchrun`` with PyTorch's own ``torch.distributed``.

``torchrun --nproc_per_node N -m privatesnn.cli train ...`` (or the ``privsnn`` script) starts N
processes with ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set; :func:`setup` joins them into one
process group (gloo on CPU, nccl on CUDA, each rank on ``cuda:LOCAL_RANK``). Training wraps the SNN
in ``DistributedDataParallel``; synthesis and evaluation split their batches round-robin over the
ranks and gather the results on every rank. Only rank 0 prints, shows progress bars and writes
files. A single process (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``) uses the same code path with a
trivial context, so results do not depend on how the job was launched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from .errors import PrivsnnError

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job (rank 0 of 1 for an ordinary run)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def mine(self, n_items: int) -> range:
        """Round-robin share of ``range(n_items)`` for this rank."""
        return range(self.rank, n_items, self.world_size)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_gather(self, obj: T) -> list[T]:
        """Every rank's ``obj`` (picklable; the ranks are one trusted job), in rank order."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of ``values`` over the ranks."""
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64)
        if dist.get_backend() == "nccl":
            t = t.cuda()
        dist.all_reduce(t)
        return t.cpu().tolist()


SINGLE = DistContext()
_current: DistContext = SINGLE


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: torch.device) -> tuple[DistContext, torch.device]:
    """Join the torchrun process group (when launched by torchrun) and pick this rank's device."""
    global _current
    if not launched_by_torchrun():
        _current = SINGLE
        return SINGLE, device
    try:
        rank, world, local = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    except (KeyError, ValueError) as e:
        raise PrivsnnError(f"WORLD_SIZE is set but the torchrun environment is incomplete ({e}); "
                           f"launch with `torchrun --nproc_per_node N`") from None
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise PrivsnnError(f"rank {rank}: LOCAL_RANK {local} but only {torch.cuda.device_count()} CUDA devices")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # A rank that dies leaves the others waiting in a collective; give up after this long.
        minutes = float(os.environ.get("PRIVSNN_DIST_TIMEOUT_MIN", "30"))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(minutes=minutes))
    _current = DistContext(rank, world, local)
    return _current, device


def current() -> DistContext:
    """The context :func:`setup` made (rank 0 of 1 before or without it)."""
    return _current


def shutdown(clean: bool = True) -> None:
    """Leave the process group. After a successful run, a barrier first: no rank tears its
    connections down while another still waits for data from it (a fast rank 0 could otherwise
    strand the others in their last collective)."""
    global _current
    if dist.is_initialized():
        try:
            if clean:
                dist.barrier()
        finally:
            dist.destroy_process_group()
    _current = SINGLE
