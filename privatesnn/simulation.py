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
    kernels: dict = field(default_factory=dict)  # which convolution / neuron-update code ran

    @property
    def predictions(self) -> torch.Tensor:
        return torch.from_numpy(self.sums).argmax(1)


def run_chip_model(fixed, x: torch.Tensor, batch_size: int = 100, progress: bool = True,
                   desc: str = "chip model", int8: bool | None = None, fused: bool | None = None) -> ChipRun:
    """Run the fast integer chip model (:class:`privatesnn.hw_targets.chip_model.ChipModel`) over
    ``x`` in batches (``int8``: convolutions on the CPU's int8 units; ``fused``: the neuron update as
    one C kernel; None = where available and exact)."""
    from .hw_targets.chip_model import ChipModel

    if batch_size <= 0:
        raise PrivsnnError(f"batch size must be > 0, got {batch_size}")
    model = ChipModel(fixed, int8=int8, fused=fused)
    sums, counts = [], {name: [] for name in fixed.plan.layers}
    t0 = time.perf_counter()
    for i in tqdm(range(0, len(x), batch_size), desc=desc, leave=False, disable=not progress):
        acc, c = model.run(x[i:i + batch_size], return_spikes=True)
        sums.append(acc.numpy())
        for name in counts:
            counts[name].append(c[name].numpy())
    return ChipRun(np.concatenate(sums), {k: np.concatenate(v) for k, v in counts.items()}, time.perf_counter() - t0,
                   model.kernels())


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


def simulate_deployed(artifact: str | Path, data: str, *, engine: str = "lava", limit: int | None = None,
                      timesteps: int | None = None, check_lava: int = 20, batch_size: int = 100, tag: str = "fixed_pt",
                      reset: str | None = None, chunk: int = 100, lava_conv: bool = False, seed: int = 0,
                      results_dir: str | Path | None = None, log: Callable[[str], None] = print) -> dict:
    """Run an exported SNN (a lava export folder, .nir or .net) on real test ``data`` with
    ``engine`` ("lava": Lava processes; "reference": the bit-exact integer chip model, batched, with
    the first ``check_lava`` images also run through Lava) and compare with the SNN. Returns the
    result that `privsnn simulate --json` writes; paths in it are relative to ``results_dir``."""
    if engine not in ("lava", "reference"):
        raise PrivsnnError(f"--engine must be lava or reference, got {engine!r}")
    if tag not in ("fixed_pt", "floating_pt", "both"):
        raise PrivsnnError(f"--tag must be fixed_pt, floating_pt or both, got {tag!r}")
    import sys

    from privatesnn.hw_targets.loihi import build_plan, quantize_plan

    from .data import load_data
    from .evaluation import check_classes
    from .lava_extra import lava_available, require_lava

    if limit is not None and limit <= 0:
        raise PrivsnnError(f"--limit must be > 0, got {limit}")
    if chunk <= 0:
        raise PrivsnnError(f"--chunk must be > 0, got {chunk}")
    if batch_size <= 0:
        raise PrivsnnError(f"--batch-size must be > 0, got {batch_size}")
    if check_lava < 0:
        raise PrivsnnError(f"--check-lava must be >= 0, got {check_lava}")
    graph, T, info = load_deployable(artifact, timesteps)
    reset_mode = reset or info.get("reset_mode") or "match"
    plan = build_plan(graph, T, reset=reset_mode)  # refuses what Lava cannot run, before reading data
    fixed = quantize_plan(plan)
    if engine == "lava":
        require_lava("`privsnn simulate` (Lava processes on the CPU; `--engine reference` runs without Lava)")
    data_spec, data = data, load_data(data).limit(limit)
    check_classes(data, int(graph.meta.get("num_classes") or 0) or data.num_classes, "the SNN")
    n = len(data)
    if tuple(data.x.shape[1:]) != tuple(graph.input.shape):
        raise PrivsnnError(f"{data_spec}: images are {tuple(data.x.shape[1:])}, the SNN takes {tuple(graph.input.shape)}")
    torch.manual_seed(seed)

    # the trained SNN (torch), and the same SNN with Lava's reset where that was forced
    snn = run_snn(graph, data.x, T, batch_size)
    snn_pred = snn.logits.argmax(1)
    resets = sorted({nd.reset for nd in graph.neurons()})
    deployed_pred = None
    if reset_mode == "zero" and "subtract" in resets:
        g0 = graph.copy()
        for nd in g0.neurons():
            nd.reset = "zero"
        deployed_pred = run_snn(g0, data.x, T, batch_size, desc="SNN (reset to zero)").logits.argmax(1)

    def progress(done: int, total: int) -> None:
        print(f"  {done}/{total} images", file=sys.stderr)

    def compare(tag: str, pred: torch.Tensor, seconds: float, spikes: dict) -> dict:
        row = {"tag": tag, "accuracy": float((pred == data.y).float().mean()),
               "agreement": float((pred == snn_pred).float().mean()),
               "seconds_per_image": seconds / n, "seconds_total": seconds,
               "spikes_per_layer": {nm: float(np.mean(v)) for nm, v in spikes.items()}}
        if deployed_pred is not None:
            row["agreement_with_zero_reset_snn"] = float((pred == deployed_pred).float().mean())
        log(f"{tag}: accuracy {row['accuracy']:.4f}, agreement with the SNN {row['agreement']:.4f}, "
              f"{row['seconds_per_image']:.4f} s/image")
        return row

    runs = []
    cross_check = None
    if engine == "reference":
        log(f"chip model (Lava fixed_pt arithmetic): {n} images x T={T} ...", file=sys.stderr)
        chip = run_chip_model(fixed, data.x, batch_size)
        runs.append(compare("reference", chip.predictions, chip.seconds, chip.spikes_per_layer))
        runs[-1].update(chip.kernels)
        k = min(check_lava, n)
        if k and lava_available():
            log(f"cross-check: the first {k} images through Lava fixed_pt ...", file=sys.stderr)
            cross_check = cross_check_lava(plan, fixed, data.x[:k], chip, chunk=chunk, progress=progress)
            verdict = "bit-exact" if cross_check["bit_exact"] else "NOT bit-exact"
            log(f"cross-check with Lava on {k} images: {verdict} "
                  f"({cross_check['bit_exact_images']}/{k} images equal)")
        elif k:
            cross_check = {"images": 0, "skipped": "Lava is not installed (the privsnn[lava] extra, Python 3.10)"}
            log(f"cross-check with Lava skipped: {cross_check['skipped']}", file=sys.stderr)
    else:
        from privatesnn.hw_targets.lava_sim import run_lava

        for lava_tag in (["fixed_pt", "floating_pt"] if tag == "both" else [tag]):
            log(f"Lava {lava_tag}: {n} images x {plan.period} steps (T={T} + {plan.output.lag} pipeline steps) ...",
                  file=sys.stderr)
            res = run_lava(plan, fixed, data.x, lava_tag, chunk=chunk, fast=not lava_conv, progress=progress)
            row = compare(f"Lava {lava_tag}", res.predictions, res.seconds, res.spikes)
            row.update(tag=lava_tag, lava_steps=res.steps)
            runs.append(row)
    primary = runs[0]
    from .io_utils import relative_path

    json_dir = Path(results_dir) if results_dir is not None else Path.cwd()  # recorded paths: relative to the results
    snn_acc = float((snn_pred == data.y).float().mean())
    result = {
        "n": n, "engine": engine, "accuracy": primary["accuracy"], "snn_accuracy": snn_acc,
        "agreement": primary["agreement"], "seconds_per_image": primary["seconds_per_image"], "tag": primary["tag"],
        "accuracy_drop": snn_acc - primary["accuracy"], "snn_seconds_per_image": snn.seconds / n,
        "data": data_spec, "artifact": relative_path(artifact, json_dir), "timesteps": T, "reset_mode": reset_mode,
        "snn_resets": resets,
        "runs": runs,
        "spikes_per_layer": {nm: {"chip" if engine == "reference" else "lava": primary["spikes_per_layer"].get(nm),
                                  "snn": float(v.float().mean())} for nm, v in snn.spikes_per_layer.items()},
        "quantization": [{"layer": r["layer"], "threshold_rel_error": r["threshold_rel_error"],
                          "bias_rel_error": r["bias_rel_error"],
                          "weight_rel_l2_error": [w["rel_l2_error"] for w in r["weights"]]} for r in fixed.report()],
        "input": "the first layer's current is computed on the host and injected as the neurons' bias (direct coding)",
        "real_data_read": True, "private": info.get("private"),
    }
    if cross_check is not None:
        result["lava_cross_check"] = cross_check
    if deployed_pred is not None:
        result["note"] = ("the SNN resets by subtraction but Lava's LIF (reset 'zero') resets to zero; "
                          "'agreement' is with the trained SNN, 'agreement_with_zero_reset_snn' with the SNN "
                          "switched to reset-to-zero")
    log(f"SNN accuracy {snn_acc:.4f}; {primary['tag']} accuracy {primary['accuracy']:.4f} "
          f"(drop {100 * result['accuracy_drop']:.2f} points), agreement {primary['agreement']:.4f} on {n} images")
    return result
