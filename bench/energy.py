"""Energy benchmark (not a test; writes bench/results/energy.json).

For the embedded digits model and the shared CIFAR-10 ResNet-20 (skipped when ../shared/data is
absent): each SNN artifact's operations counted during simulation and its energy against the ANN
under the four conventions of docs/energy.md, at every T of the accuracy benchmark (1 ... 32),
next to that T's accuracy on the real test images (privatesnn.snn_eval.snn_accuracy_over_time).
For each SNN it also reports the smallest T within 1 and within 2 points of the ANN and the honest
(all-timesteps) energy ratio there: the number that low latency is for.

    python bench/energy.py                                   # artifacts of bench/accuracy.py
    python bench/energy.py --digits-snn a.pt,b.pt --cifar-snn private.pt --threads 1
    python bench/energy.py --cases digits --count-limit 200
    python bench/energy.py --cases cifar10 --cifar-snn signed4.pt,signed8.pt --out energy_signed.json

SNN artifacts: --digits-snn / --cifar-snn (repeatable or comma lists); otherwise every *.pt
artifact under runs/bench/<case>/ (left by bench/accuracy.py) and bench/results/; if none is found,
one is converted here on 512 uniform-noise images (no real data) and kept in runs/bench/energy/.
Counts come from one simulation of max(T) steps on --count-limit test images (the first T steps of
a T_max run are exactly a T-step run; an SNN with windowed neurons is simulated once per T: its
spikes depend on T, and each of its neurons updates 2T times); accuracy uses --eval-limit test
images (default all).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import (CIFAR_TEST, IMAGENET_NORM, RESNET20, RESULTS, RUNS, set_threads, shared_available,  # noqa: E402
                    write_results)

TIMESTEPS = "1,2,4,8,16,32"
CASES = {
    "digits": {"model": "digits", "norm": {}, "data": "digits", "runs": "digits"},
    "cifar10_resnet20": {"model": f"resnet20:{RESNET20}", "norm": {"mean": IMAGENET_NORM[1], "std": IMAGENET_NORM[3]},
                         "data": CIFAR_TEST, "runs": "cifar10_resnet20"},
}


def split_paths(values: list[str] | None) -> list[Path]:
    return [Path(p.strip()) for v in (values or []) for p in v.split(",") if p.strip()]


def find_artifacts(case: str, arch: str) -> list[Path]:
    """SNN artifacts of this case left by other benchmarks (runs/bench/<case>/, bench/results/)."""
    from privatesnn.artifact import load_snn
    from privatesnn.errors import PrivsnnError

    found = []
    for root in (RUNS / CASES[case]["runs"], RESULTS):
        for p in sorted(root.glob("*.pt")) if root.is_dir() else []:
            if p.name.endswith(".ckpt.pt"):
                continue
            try:
                a = load_snn(p)
            except PrivsnnError:
                continue
            if a.model.get("arch") == arch:
                found.append(p)
    return found


def build_noise_snn(case: str, loaded, timesteps: int = 32) -> Path:
    """Convert on 512 uniform-noise images (no real data); keep it in runs/bench/energy/."""
    import torch

    from privatesnn.artifact import save_snn
    from privatesnn.conversion import ConversionSettings, convert
    from privatesnn.manifest import Manifest

    out = RUNS / "energy" / f"{case}_noise_snn.pt"
    if out.exists():
        return out
    images = torch.rand(512, *loaded.input_shape, generator=torch.Generator().manual_seed(0))
    settings = ConversionSettings(timesteps=timesteps)
    graph = convert(loaded, images, settings)
    record = {**settings.__dict__, "calibration_images": 512, "calibration": "uniform noise (bench/energy.py)",
              "private": True}
    save_snn(out, graph, record, Manifest(kind="snn", command="bench/energy.py", settings=record,
                                          inputs={"model": loaded.sha256}, seed=0,
                                          parents=[{"role": "model", **loaded.describe()}]))
    print(f"{case}: no SNN artifact given or found; converted {out} on 512 uniform-noise images")
    return out


def compact(res: dict) -> dict:
    """The per-T entry: accuracy, totals, per-layer counts and the four conventions (no breakdown by layer)."""
    keep = ("name", "type", "input", "dense", "eff_acs", "eff_macs", "input_events", "constant_input")
    conv = {}
    for name, c in res["conventions"].items():
        conv[name] = {k: c.get(k) for k in ("snn_pj", "ann_pj", "ratio", "ratio_synaptic_only", "ratio_input_once",
                                            "snn_pj_input_once", "ratio_vs_ann_pruned_alike", "ratio_note", "description", "snn_breakdown_pj", "ann_breakdown_pj") if k in c}
    return {"timesteps": res["timesteps"], "accuracy": res["accuracy"], "count_accuracy": res.get("count_accuracy"),
            "totals": res["totals"], "layers": [{k: l[k] for k in keep} for l in res["layers"]],
            "neurons": [{k: n[k] for k in ("name", "neurons", "spikes", "spike_rate", "readout")} for n in res["neurons"]],
            "conventions": conv,
            "latency": {k: v for k, v in res.get("latency", {}).items() if k != "layers"}}


def run_case(case: str, snns: list[Path], ts: list[int], args, model) -> dict:
    from privatesnn.artifact import check_same_model, load_snn
    from privatesnn.conversion import ann_graph
    from privatesnn.data import load_data
    from privatesnn.energy_report import make_result
    from privatesnn.evaluation import accuracy
    from privatesnn.models import load_model
    from privatesnn.ops_count import count_ann, count_snn
    from privatesnn.snn_eval import snn_accuracy_over_time

    cfg = CASES[case]
    loaded = load_model(cfg["model"], **cfg["norm"])
    data = load_data(cfg["data"])
    eval_data = data.limit(args.eval_limit)
    count_data = data.limit(args.count_limit)
    if not snns:
        snns = find_artifacts(case, loaded.arch) or ([build_noise_snn(case, loaded)] if not args.no_build else [])
    t0 = time.time()
    ann_acc = accuracy(loaded.module(), eval_data, loaded.num_classes, 256, args.device)
    ann_counts = count_ann(ann_graph(loaded), count_data.x, 256, count_data.y, args.device)
    out = {"model": cfg["model"], "data": cfg["data"], "ann_accuracy": ann_acc, "eval_images": len(eval_data),
           "count_images": len(count_data), "ann": {"dense_macs": ann_counts.totals()["dense_macs"],
                                                   "effective_macs": ann_counts.totals()["eff_macs"]},
           "snns": []}
    for path in snns:
        artifact = load_snn(path)
        check_same_model(artifact, loaded, f"{path}")
        t1 = time.time()
        accs, _ = snn_accuracy_over_time(artifact, eval_data, ts, args.batch_size, args.device, args.seed,
                                         desc=path.name)
        counts = count_snn(artifact.graph, count_data.x, ts, args.batch_size, count_data.y, args.seed, args.device,
                           progress=True)
        entries = []
        for t in ts:
            res = make_result(counts[t], ann_counts, model, {"snn": str(path)}, graph=artifact.graph)
            res["count_accuracy"], res["accuracy"] = res["accuracy"], accs[t]
            entries.append(compact(res))
        out["snns"].append({"snn": str(path), "private": artifact.private,
                            "calibration": artifact.settings.get("calibration"), "encoding": artifact.graph.input.encoding,
                            "seconds": time.time() - t1, "results": entries,
                            "within_ann": within_ann(entries, ann_acc)})
    out["seconds"] = time.time() - t0
    return out


def within_ann(entries: list[dict], ann_acc: float) -> dict:
    """For a margin of 1 and 2 points: the smallest T whose accuracy is within it of the ANN, with
    the energy ratios there (None when no T of the run reaches it)."""
    out = {}
    for points in (1, 2):
        hit = next((e for e in sorted(entries, key=lambda e: e["timesteps"])
                    if e["accuracy"] >= ann_acc - points / 100), None)
        out[f"{points}_point"] = None if hit is None else {
            "timesteps": hit["timesteps"], "accuracy": hit["accuracy"],
            "all_timesteps_ratio": hit["conventions"]["all_timesteps"]["ratio"],
            "all_timesteps_input_once_ratio": hit["conventions"]["all_timesteps"]["ratio_input_once"],
            "per_timestep_ratio": hit["conventions"]["per_timestep"]["ratio"],
            "memory_aware_ratio": hit["conventions"]["memory_aware"]["ratio"],
            "latency_ms_per_image": hit.get("latency", {}).get("latency_ms_per_image")}
    return out


def print_table(results: dict) -> None:
    from privatesnn.hw_targets.energy_models import CONVENTIONS, format_energy

    head = f"{'case':<17} {'snn':<26} {'T':>3} {'acc':>7} {'synops/img':>11} {'rate':>6} " + \
           " ".join(f"{c:>13}" for c in CONVENTIONS) + f" {'delay/img':>10}"
    print("\nratio ANN energy / SNN energy per image under each convention; loihi: SNN energy per image "
          "(no ANN baseline); accuracy on the real test images")
    print(head)
    for case, r in results["cases"].items():
        print(f"{case:<17} {'ANN':<26} {'':>3} {100 * r['ann_accuracy']:6.2f}% "
              f"{r['ann']['dense_macs'] / 1e6:9.3g} M (dense MACs)")
        for s in r["snns"]:
            for e in s["results"]:
                ratios = " ".join(f"{format_energy(e['conventions'][c]['snn_pj']):>13}" if c == "loihi"
                                  else f"{e['conventions'][c]['ratio']:12.3g}x" for c in CONVENTIONS)
                lat = e.get("latency", {})
                delay = f"{lat['latency_ms_per_image']:8.3g}ms" if lat.get("available") else f"{'n/a':>10}"
                print(f"{'':<17} {Path(s['snn']).name[:26]:<26} {e['timesteps']:>3} {100 * e['accuracy']:6.2f}% "
                      f"{e['totals']['synops'] / 1e6:9.3g} M {e['totals']['spike_rate']:6.3f} {ratios} {delay}")
            for key, hit in s["within_ann"].items():
                print(f"{'':<17} {Path(s['snn']).name[:26]:<26} smallest T within {key.replace('_', ' ')} of the ANN: "
                      + ("none" if hit is None else f"T={hit['timesteps']} ({100 * hit['accuracy']:.2f}%), honest "
                         f"{hit['all_timesteps_ratio']:.3g}x (image current once: {hit['all_timesteps_input_once_ratio']:.3g}x), "
                         f"per-timestep {hit['per_timestep_ratio']:.3g}x"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default="digits,cifar10", help="comma list: digits, cifar10")
    p.add_argument("--digits-snn", action="append", help="digits SNN artifact(s); repeat or comma-separate")
    p.add_argument("--cifar-snn", action="append", help="CIFAR-10 ResNet-20 SNN artifact(s)")
    p.add_argument("--timesteps", default=TIMESTEPS, help=f"comma list (default {TIMESTEPS})")
    p.add_argument("--eval-limit", type=int, default=None, help="test images for accuracy (default all)")
    p.add_argument("--count-limit", type=int, default=None,
                   help="test images for op counting (default: all for digits, 200 for CIFAR)")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--energy-model", default=None, metavar="FILE")
    p.add_argument("--no-build", action="store_true", help="do not convert an SNN when none is given or found")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch threads (1 is best on a busy machine)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="energy.json",
                   help="results file under bench/results/ (default energy.json; another name keeps it, e.g. for a "
                        "subset of SNNs)")
    args = p.parse_args()
    set_threads(args.threads)
    import torch

    from privatesnn.hw_targets.energy_models import load_energy_model
    from privatesnn.snn_eval import parse_timesteps

    torch.set_grad_enabled(False)
    ts = parse_timesteps(args.timesteps, 32)
    model = load_energy_model(args.energy_model)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    out = {"timesteps": ts, "energy_model": model.to_dict(), "command": " ".join(sys.argv), "cases": {}}
    t0 = time.time()
    count_limit = args.count_limit
    if "digits" in cases:
        args.count_limit = count_limit
        out["cases"]["digits"] = run_case("digits", split_paths(args.digits_snn), ts, args, model)
    if "cifar10" in cases:
        if not shared_available():
            print(f"cifar10: {RESNET20.parent.parent} is absent; CIFAR-10 ResNet-20 skipped")
        else:
            args.count_limit = count_limit or 200
            out["cases"]["cifar10_resnet20"] = run_case("cifar10_resnet20", split_paths(args.cifar_snn), ts, args,
                                                        model)
    out["total_seconds"] = time.time() - t0
    print_table(out)
    write_results(Path(args.out).name, out)


if __name__ == "__main__":
    main()
