"""`privsnn simulate`: run real test images through Lava on the CPU and compare with the SNN."""

from __future__ import annotations

import argparse

DESCRIPTION = """Run an exported SNN on real labelled test images as the chip would, and compare with
the trained SNN (privatesnn's torch simulation of the same graph).

Engines: `lava` (default): Lava processes on the CPU (Loihi2SimCfg, fixed_pt and/or floating_pt),
one image after another with the state reset in between. `reference`: the integer chip model
(Lava's fixed_pt arithmetic, bit-exact, batched: whole test sets in minutes); it also runs the
first --check-lava images through Lava and reports whether the two agree bit for bit.

  privsnn simulate --artifact lava_dir --target lava --data digits --limit 100 --json sim.json
  privsnn simulate --artifact model.nir --target lava --data npy:X.npy:Y.npy --limit 200 --tag both
  privsnn simulate --artifact lava_dir --engine reference --data cifar10:DIR --check-lava 20

--artifact: a `privsnn export --target lava` directory, a .nir file (e.g. made by another tool)
or a lava-dl netx .net file. Reports accuracy, agreement of the Lava predictions with the SNN's,
spikes per layer per image and seconds per image. --reset zero deploys Lava's stock LIF (reset to
zero) even where the SNN resets by subtraction, to measure that difference.

The lava engine needs Lava, the privsnn[lava] extra (lava-nc 0.10, lava-dl 0.6; Python 3.10 only).
Without it the artifact is still checked, then the command stops with one error line (exit 2);
`--engine reference` works without Lava (its cross-check is then skipped, and says so).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--artifact", required=True, metavar="DIR|FILE", help="lava export dir, .nir or .net file")
    p.add_argument("--target", default="lava", choices=("lava",))
    p.add_argument("--data", required=True, metavar="SPEC", help="digits | cifar10:DIR | npy:X.npy:Y.npy | ...")
    p.add_argument("--limit", type=int, default=None, help="first N test images (default: all)")
    p.add_argument("--timesteps", type=int, default=None, help="T (default: the artifact's)")
    p.add_argument("--engine", default="lava", choices=("lava", "reference"),
                   help="lava (default): Lava processes; reference: the batched integer chip model")
    p.add_argument("--check-lava", type=int, default=20, metavar="N",
                   help="with --engine reference: images also run through Lava and compared bit for bit "
                        "(default 20; 0 = none)")
    p.add_argument("--batch-size", type=int, default=100, help="images per batch of the chip model and SNN")
    p.add_argument("--tag", default="fixed_pt", choices=("fixed_pt", "floating_pt", "both"),
                   help="Lava models to run (default fixed_pt: bit-accurate Loihi arithmetic)")
    p.add_argument("--reset", default=None, choices=("match", "zero"),
                   help="neuron reset on Lava (default: the export's, else match)")
    p.add_argument("--chunk", type=int, default=100, help="images per Lava run call (default 100)")
    p.add_argument("--lava-conv", action="store_true",
                   help="use Lava's stock (scipy, slow) Conv model instead of the bit-identical im2col one")
    p.add_argument("--json", default=None, metavar="PATH")
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    import sys

    import numpy as np
    import torch

    from privatesnn.hw_targets.loihi import build_plan, quantize_plan

    from ..data import load_data
    from ..errors import PrivsnnError
    from ..evaluation import check_classes
    from ..lava_extra import lava_available, require_lava
    from ..simulation import cross_check_lava, load_deployable, run_chip_model, run_snn
    from .common import emit

    if args.limit is not None and args.limit <= 0:
        raise PrivsnnError(f"--limit must be > 0, got {args.limit}")
    if args.chunk <= 0:
        raise PrivsnnError(f"--chunk must be > 0, got {args.chunk}")
    if args.batch_size <= 0:
        raise PrivsnnError(f"--batch-size must be > 0, got {args.batch_size}")
    if args.check_lava < 0:
        raise PrivsnnError(f"--check-lava must be >= 0, got {args.check_lava}")
    graph, T, info = load_deployable(args.artifact, args.timesteps)
    reset_mode = args.reset or info.get("reset_mode") or "match"
    plan = build_plan(graph, T, reset=reset_mode)  # refuses what Lava cannot run, before reading data
    fixed = quantize_plan(plan)
    if args.engine == "lava":
        require_lava("`privsnn simulate` (Lava processes on the CPU; `--engine reference` runs without Lava)")
    data = load_data(args.data).limit(args.limit)
    check_classes(data, int(graph.meta.get("num_classes") or 0) or data.num_classes, "the SNN")
    n = len(data)
    if tuple(data.x.shape[1:]) != tuple(graph.input.shape):
        raise PrivsnnError(f"{args.data}: images are {tuple(data.x.shape[1:])}, the SNN takes {tuple(graph.input.shape)}")
    torch.manual_seed(args.seed)

    # the trained SNN (torch), and the same SNN with Lava's reset where that was forced
    snn = run_snn(graph, data.x, T, args.batch_size)
    snn_pred = snn.logits.argmax(1)
    resets = sorted({nd.reset for nd in graph.neurons()})
    deployed_pred = None
    if reset_mode == "zero" and "subtract" in resets:
        g0 = graph.copy()
        for nd in g0.neurons():
            nd.reset = "zero"
        deployed_pred = run_snn(g0, data.x, T, args.batch_size, desc="SNN (reset to zero)").logits.argmax(1)

    def progress(done: int, total: int) -> None:
        print(f"  {done}/{total} images", file=sys.stderr)

    def compare(tag: str, pred: torch.Tensor, seconds: float, spikes: dict) -> dict:
        row = {"tag": tag, "accuracy": float((pred == data.y).float().mean()),
               "agreement": float((pred == snn_pred).float().mean()),
               "seconds_per_image": seconds / n, "seconds_total": seconds,
               "spikes_per_layer": {nm: float(np.mean(v)) for nm, v in spikes.items()}}
        if deployed_pred is not None:
            row["agreement_with_zero_reset_snn"] = float((pred == deployed_pred).float().mean())
        print(f"{tag}: accuracy {row['accuracy']:.4f}, agreement with the SNN {row['agreement']:.4f}, "
              f"{row['seconds_per_image']:.4f} s/image")
        return row

    runs = []
    cross_check = None
    if args.engine == "reference":
        print(f"chip model (Lava fixed_pt arithmetic): {n} images x T={T} ...", file=sys.stderr)
        chip = run_chip_model(fixed, data.x, args.batch_size)
        runs.append(compare("reference", chip.predictions, chip.seconds, chip.spikes_per_layer))
        k = min(args.check_lava, n)
        if k and lava_available():
            print(f"cross-check: the first {k} images through Lava fixed_pt ...", file=sys.stderr)
            cross_check = cross_check_lava(plan, fixed, data.x[:k], chip, chunk=args.chunk, progress=progress)
            verdict = "bit-exact" if cross_check["bit_exact"] else "NOT bit-exact"
            print(f"cross-check with Lava on {k} images: {verdict} "
                  f"({cross_check['bit_exact_images']}/{k} images equal)")
        elif k:
            cross_check = {"images": 0, "skipped": "Lava is not installed (the privsnn[lava] extra, Python 3.10)"}
            print(f"cross-check with Lava skipped: {cross_check['skipped']}", file=sys.stderr)
    else:
        from privatesnn.hw_targets.lava_sim import run_lava

        for tag in (["fixed_pt", "floating_pt"] if args.tag == "both" else [args.tag]):
            print(f"Lava {tag}: {n} images x {plan.period} steps (T={T} + {plan.output.lag} pipeline steps) ...",
                  file=sys.stderr)
            res = run_lava(plan, fixed, data.x, tag, chunk=args.chunk, fast=not args.lava_conv, progress=progress)
            row = compare(f"Lava {tag}", res.predictions, res.seconds, res.spikes)
            row.update(tag=tag, lava_steps=res.steps)
            runs.append(row)
    primary = runs[0]
    snn_acc = float((snn_pred == data.y).float().mean())
    result = {
        "n": n, "engine": args.engine, "accuracy": primary["accuracy"], "snn_accuracy": snn_acc,
        "agreement": primary["agreement"], "seconds_per_image": primary["seconds_per_image"], "tag": primary["tag"],
        "accuracy_drop": snn_acc - primary["accuracy"], "snn_seconds_per_image": snn.seconds / n,
        "data": args.data, "artifact": args.artifact, "timesteps": T, "reset_mode": reset_mode, "snn_resets": resets,
        "runs": runs,
        "spikes_per_layer": {nm: {"chip" if args.engine == "reference" else "lava": primary["spikes_per_layer"].get(nm),
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
    print(f"SNN accuracy {snn_acc:.4f}; {primary['tag']} accuracy {primary['accuracy']:.4f} "
          f"(drop {100 * result['accuracy_drop']:.2f} points), agreement {primary['agreement']:.4f} on {n} images")
    emit(result, args.json)
    return 0
