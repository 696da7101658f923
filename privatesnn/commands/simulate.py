"""`privsnn simulate`: run real test images through Lava on the CPU and compare with the SNN."""

from __future__ import annotations

import argparse

DESCRIPTION = """Run an exported SNN in Lava on the CPU (Loihi2SimCfg, fixed_pt and/or floating_pt)
on real labelled test images, one image after another with the state reset in between, and
compare with the trained SNN (privatesnn's torch simulation of the same graph).

  privsnn simulate --artifact lava_dir --target lava --data digits --limit 100 --json sim.json
  privsnn simulate --artifact model.nir --target lava --data npy:X.npy:Y.npy --limit 200 --tag both

--artifact: a `privsnn export --target lava` directory, a .nir file (e.g. made by another tool)
or a lava-dl netx .net file. Reports accuracy, agreement of the Lava predictions with the SNN's,
spikes per layer per image and seconds per image. --reset zero deploys Lava's stock LIF (reset to
zero) even where the SNN resets by subtraction, to measure that difference.

Needs Lava, the privsnn[lava] extra (lava-nc 0.10, lava-dl 0.6; Python 3.10 only). Without it the
artifact is still checked, then the command stops with one error line (exit 2); the bit-exact
integer chip model (privatesnn.hw_targets.loihi.reference_fixed) works without Lava.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--artifact", required=True, metavar="DIR|FILE", help="lava export dir, .nir or .net file")
    p.add_argument("--target", default="lava", choices=("lava",))
    p.add_argument("--data", required=True, metavar="SPEC", help="digits | cifar10:DIR | npy:X.npy:Y.npy | ...")
    p.add_argument("--limit", type=int, default=None, help="first N test images (default: all)")
    p.add_argument("--timesteps", type=int, default=None, help="T (default: the artifact's)")
    p.add_argument("--tag", default="fixed_pt", choices=("fixed_pt", "floating_pt", "both"),
                   help="Lava models to run (default fixed_pt: bit-accurate Loihi arithmetic)")
    p.add_argument("--reset", default=None, choices=("match", "zero"),
                   help="neuron reset on Lava (default: the export's, else match)")
    p.add_argument("--chunk", type=int, default=100, help="images per Lava run call (default 100)")
    p.add_argument("--lava-conv", action="store_true",
                   help="use Lava's stock (scipy, slow) Conv model instead of the bit-identical im2col one")
    p.add_argument("--json", default=None, metavar="PATH")
    p.add_argument("--seed", type=int, default=0)


def load_deployable(path_text: str, timesteps: int | None = None):
    """(graph, T, provenance dict) from a lava export dir, a .nir or a .net file."""
    from pathlib import Path

    from privatesnn.exporters.netx import read_net
    from privatesnn.exporters.nir_import import read_nir_graph

    from ..errors import ArtifactError, PrivsnnError
    from ..manifest import read_manifest

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
        from ..manifest import check_export_files

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


def run(args: argparse.Namespace) -> int:
    import sys

    import numpy as np
    import torch

    from privatesnn.hw_targets.loihi import build_plan, quantize_plan

    from ..data import load_data
    from ..errors import PrivsnnError
    from ..evaluation import check_classes
    from ..lava_extra import require_lava
    from ..snn import SpikingNetwork
    from .common import emit

    if args.limit is not None and args.limit <= 0:
        raise PrivsnnError(f"--limit must be > 0, got {args.limit}")
    if args.chunk <= 0:
        raise PrivsnnError(f"--chunk must be > 0, got {args.chunk}")
    graph, T, info = load_deployable(args.artifact, args.timesteps)
    reset_mode = args.reset or info.get("reset_mode") or "match"
    plan = build_plan(graph, T, reset=reset_mode)  # refuses what Lava cannot run, before reading data
    fixed = quantize_plan(plan)
    require_lava("`privsnn simulate` (Lava processes on the CPU)")  # after the artifact checks, before any data
    data = load_data(args.data).limit(args.limit)
    check_classes(data, int(graph.meta.get("num_classes") or 0) or data.num_classes, "the SNN")
    n = len(data)
    if tuple(data.x.shape[1:]) != tuple(graph.input.shape):
        raise PrivsnnError(f"{args.data}: images are {tuple(data.x.shape[1:])}, the SNN takes {tuple(graph.input.shape)}")
    torch.manual_seed(args.seed)

    # the trained SNN (torch), and the same SNN with Lava's reset where that was forced
    net = SpikingNetwork(graph).eval()
    snn_logits, snn_spikes = [], {nm: [] for nm in plan.layers if plan.layers[nm].kind == "neuron"}
    with torch.no_grad():
        for i in range(0, n, 100):
            lg, sp = net(data.x[i:i + 100], T, return_spikes=True)
            snn_logits.append(lg)
            for nm in snn_spikes:
                snn_spikes[nm].append(sp[nm].flatten(2).sum((0, 2)))
    snn_logits = torch.cat(snn_logits)
    snn_pred = snn_logits.argmax(1)
    resets = sorted({nd.reset for nd in graph.neurons()})
    deployed_pred = None
    if reset_mode == "zero" and "subtract" in resets:
        g0 = graph.copy()
        for nd in g0.neurons():
            nd.reset = "zero"
        with torch.no_grad():
            deployed_pred = torch.cat([SpikingNetwork(g0).eval()(data.x[i:i + 100], T) for i in range(0, n, 100)]).argmax(1)

    from privatesnn.hw_targets.lava_sim import run_lava

    tags = ["fixed_pt", "floating_pt"] if args.tag == "both" else [args.tag]
    runs = []

    def progress(done: int, total: int) -> None:
        print(f"  {done}/{total} images", file=sys.stderr)

    for tag in tags:
        print(f"Lava {tag}: {n} images x {plan.period} steps (T={T} + {plan.output.lag} pipeline steps) ...",
              file=sys.stderr)
        res = run_lava(plan, fixed, data.x, tag, chunk=args.chunk, fast=not args.lava_conv, progress=progress)
        pred = res.predictions
        row = {"tag": tag, "accuracy": float((pred == data.y).float().mean()),
               "agreement": float((pred == snn_pred).float().mean()),
               "seconds_per_image": res.seconds / n, "seconds_total": res.seconds,
               "lava_steps": res.steps,
               "spikes_per_layer": {nm: float(np.mean(v)) for nm, v in res.spikes.items()}}
        if deployed_pred is not None:
            row["agreement_with_zero_reset_snn"] = float((pred == deployed_pred).float().mean())
        runs.append(row)
        print(f"Lava {tag}: accuracy {row['accuracy']:.4f}, agreement with the SNN {row['agreement']:.4f}, "
              f"{row['seconds_per_image']:.3f} s/image")
    primary = runs[0]
    snn_acc = float((snn_pred == data.y).float().mean())
    result = {
        "n": n, "accuracy": primary["accuracy"], "snn_accuracy": snn_acc, "agreement": primary["agreement"],
        "seconds_per_image": primary["seconds_per_image"], "tag": primary["tag"],
        "accuracy_drop": snn_acc - primary["accuracy"],
        "data": args.data, "artifact": args.artifact, "timesteps": T, "reset_mode": reset_mode, "snn_resets": resets,
        "runs": runs,
        "spikes_per_layer": {nm: {"lava": primary["spikes_per_layer"].get(nm),
                                  "snn": float(torch.cat(v).mean()) if v else None}
                             for nm, v in snn_spikes.items()},
        "quantization": [{"layer": r["layer"], "threshold_rel_error": r["threshold_rel_error"],
                          "bias_rel_error": r["bias_rel_error"],
                          "weight_rel_l2_error": [w["rel_l2_error"] for w in r["weights"]]} for r in fixed.report()],
        "input": "the first layer's current is computed on the host and injected as the neurons' bias (direct coding)",
        "real_data_read": True, "private": info.get("private"),
    }
    if deployed_pred is not None:
        result["note"] = ("the SNN resets by subtraction but Lava's LIF (reset 'zero') resets to zero; "
                          "'agreement' is with the trained SNN, 'agreement_with_zero_reset_snn' with the SNN "
                          "switched to reset-to-zero")
    print(f"SNN accuracy {snn_acc:.4f}; Lava {primary['tag']} accuracy {primary['accuracy']:.4f} "
          f"(drop {100 * result['accuracy_drop']:.2f} points), agreement {primary['agreement']:.4f} on {n} images")
    emit(result, args.json)
    return 0
