"""Simulating a deployable SNN on whole test sets: the trained SNN (torch), the integer chip model
and Lava, with the comparisons between them. The library behind `privsnn simulate`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .errors import ArtifactError, PrivsnnError
from .graph import Graph
from .manifest import read_manifest
from .snn import SpikingNetwork
from .streaming import run_streaming


def load_deployable(path_text: str | Path, timesteps: int | None = None) -> tuple[Graph, int, dict]:
    """(graph, T, provenance dict) from a lava export dir, a .nir or a .net file."""
    from .exporters.netx import read_net
    from .exporters.nir_import import read_nir_graph

    path = Path(path_text)
    info: dict = {"artifact": str(path)}
    manifest = None
    if path.is_dir():
        manifest = read_manifest(path)
        if manifest is None or manifest.kind != "lava":
            raise ArtifactError(f"{path}: not a privsnn lava export (no manifest.json of kind 'lava'); "
                                f"make one with `privsnn export --target lava`")
        if not (path / "model.nir").is_file():
            raise ArtifactError(f"{path}: model.nir is missing (incomplete export)")
        from .manifest import check_export_files

        problems = check_export_files(path, manifest)
        if problems:
            raise ArtifactError("; ".join(problems))
        graph = read_nir_graph(path / "model.nir")
        info.update(kind="lava-export", reset_mode=manifest.settings.get("reset_mode", "match"))
    elif path.suffix == ".net":
        graph = read_net(path)
        manifest = read_manifest(path)
        info.update(kind="netx")
    elif path.suffix == ".nir" or path.is_file():
        graph = read_nir_graph(path)
        manifest = read_manifest(path)
        info.update(kind="nir")
    else:
        raise ArtifactError(f"artifact not found: {path}")
    if timesteps is not None and not 0 < timesteps <= 100_000:
        raise PrivsnnError(f"--timesteps must be in 1..100000, got {timesteps}")
    T = int(timesteps or graph.meta.get("timesteps") or 0)
    if T <= 0 or T > 100_000:
        raise PrivsnnError(f"{path}: the artifact records no valid timesteps; pass --timesteps T")
    info["private"] = bool(manifest.private) if manifest is not None else None
    return graph, T, info


@dataclass
class SNNRun:
    """The trained SNN (float, torch) on a test set."""

    logits: torch.Tensor  # (N, K), averaged over T
    spikes_per_layer: dict[str, torch.Tensor]  # layer -> spikes per image (N,)
    seconds: float


@torch.no_grad()
def run_snn(graph: Graph, x: torch.Tensor, timesteps: int, batch_size: int = 100, progress: bool = True,
            desc: str = "SNN") -> SNNRun:
    """The SNN's logits and spikes per layer per image (the fast streaming simulation)."""
    net = SpikingNetwork(graph).eval()
    logits, counts = [], {n.name: [] for n in graph.neurons()}
    t0 = time.perf_counter()
    for i in tqdm(range(0, len(x), batch_size), desc=desc, leave=False, disable=not progress):
        batch: dict[str, torch.Tensor] = {}

        def count(name: str, _t0: int, s: torch.Tensor) -> None:
            c = s.flatten(2).sum((0, 2))
            batch[name] = batch[name] + c if name in batch else c

        out = run_streaming(net, x[i:i + batch_size], timesteps, observer=count)
        logits.append(out.mean(0) if out.shape[0] == timesteps else out[0])
        for name in counts:
            counts[name].append(batch[name])
    return SNNRun(torch.cat(logits), {k: torch.cat(v) for k, v in counts.items()}, time.perf_counter() - t0)


@dataclass
class ChipRun:
    """The integer chip model (Lava fixed_pt semantics) on a test set."""

    sums: np.ndarray  # (N, K) int64: output currents summed over T, bias included
    spikes_per_layer: dict[str, np.ndarray] = field(default_factory=dict)  # layer -> spikes per image
    seconds: float = 0.0

    @property
    def predictions(self) -> torch.Tensor:
        return torch.from_numpy(self.sums).argmax(1)


def run_chip_model(fixed, x: torch.Tensor, batch_size: int = 100, progress: bool = True,
                   desc: str = "chip model") -> ChipRun:
    """Run the fast integer chip model (:class:`privatesnn.hw_targets.chip_model.ChipModel`) over
    ``x`` in batches."""
    from .hw_targets.chip_model import ChipModel

    if batch_size <= 0:
        raise PrivsnnError(f"batch size must be > 0, got {batch_size}")
    model = ChipModel(fixed)
    sums, counts = [], {name: [] for name in fixed.plan.layers}
    t0 = time.perf_counter()
    for i in tqdm(range(0, len(x), batch_size), desc=desc, leave=False, disable=not progress):
        acc, c = model.run(x[i:i + batch_size], return_spikes=True)
        sums.append(acc.numpy())
        for name in counts:
            counts[name].append(c[name].numpy())
    return ChipRun(np.concatenate(sums), {k: np.concatenate(v) for k, v in counts.items()}, time.perf_counter() - t0)


def cross_check_lava(plan, fixed, x: torch.Tensor, chip: ChipRun, chunk: int = 100,
                     progress: Callable[[int, int], None] | None = None) -> dict:
    """Run the first ``len(x)`` images through Lava's fixed_pt models and compare their integer
    output sums with the chip model's, image by image."""
    from .hw_targets.lava_sim import run_lava

    res = run_lava(plan, fixed, x, "fixed_pt", chunk=chunk, progress=progress)
    n = len(x)
    same = np.all(res.raw_sums == chip.sums[:n], axis=1)
    return {"images": n, "bit_exact": bool(same.all()), "bit_exact_images": int(same.sum()),
            "lava_seconds_per_image": res.seconds / n,
            "chip_model_seconds_per_image": chip.seconds / len(chip.sums)}
