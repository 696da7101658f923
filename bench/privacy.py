"""Privacy benchmark: the class-leakage audit (`privsnn attack`) for digits and the shared CIFAR-10
ResNet-20, plus the privacy/accuracy trade-off of the encryption's training knobs on digits.
Not a test; writes bench/results/privacy.json (and privacy.md, privacy_tradeoff_digits.png).

    python bench/privacy.py                         # digits + trade-off + CIFAR-10 (~60-90 min, 2 CPU cores)
    python bench/privacy.py --cases digits          # digits and its trade-off only (~15 min)
    python bench/privacy.py --cases cifar10 --cifar-per-class 2 --cifar-iterations 60   # a quicker CIFAR run

Artifacts (synthetic set, converted and encrypted SNN per case, audit folders with the PNG grids)
are kept under runs/bench/privacy/<case>/ and reused on later runs (--fresh rebuilds them). They
are made with the CLI exactly as a user would: synthesize -> convert -> train (defaults unless
noted in the JSON) -> attack.

The CIFAR-10 evaluator is a small plain CNN trained on ../shared/data/cifar10/train4000_* by
bench/train_cifar_evaluator.py (bench/results/cifar10_evaluator.onnx; trained here when missing).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import (CIFAR_TEST, IMAGENET_NORM, RESNET20, RESULTS, ROOT, privsnn, read_json, set_threads,  # noqa: E402
                    shared_available, write_results)

WORK = ROOT / "runs" / "bench" / "privacy"
KEYS = ("accuracy", "weights_as_ann_accuracy", "weights_as_ann_mode", "weights_as_ann_modes", "inversion_accuracy",
        "snn_inversion_accuracy", "weight_cosine_mean", "timesteps")
# Training knobs tried on digits (each from the same converted SNN, T=8 unless set); "default" is
# `privsnn train` with its defaults (5 epochs, lr 1e-4, KD 0.7, IF neurons, subtractive reset).
TRADEOFF = [
    ("default", {}),
    ("20 epochs", {"epochs": 20}),
    ("lr 1e-3, 10 ep", {"epochs": 10, "lr": 1e-3}),
    ("lr 1e-2, 10 ep", {"epochs": 10, "lr": 1e-2}),
    ("leak 0.9", {"epochs": 10, "lr": 1e-3, "leak": 0.9}),
    ("leak 0.8", {"epochs": 10, "lr": 1e-3, "leak": 0.8}),
    ("leak 0.5", {"epochs": 10, "lr": 1e-3, "leak": 0.5}),
    ("reset zero", {"epochs": 10, "lr": 1e-3, "reset": "zero"}),
    ("T=2", {"epochs": 10, "lr": 1e-3, "timesteps": 2}),
    ("T=1", {"epochs": 10, "lr": 1e-3, "timesteps": 1}),
    ("T=2, reset zero, leak 0.8", {"epochs": 10, "lr": 1e-3, "timesteps": 2, "reset": "zero", "leak": 0.8}),
    ("kd-alpha 0 (CE only)", {"epochs": 10, "lr": 1e-3, "kd_alpha": 0.0}),
]


def summary(report: dict) -> dict:
    """The numbers worth keeping from a full audit report."""
    out = {k: report[k] for k in ("variant", "verdict", "goals", "chance", "ann_accuracy", "accuracy",
                                  "weights_as_ann_accuracy", "weights_as_ann_mode", "inversion_accuracy",
                                  "snn_inversion_accuracy", "weight_cosine", "n_test", "n_inverted", "evaluator",
                                  "inversion_settings", "notes", "seconds")}
    out["variants"] = {name: {k: e.get(k) for k in KEYS} for name, e in report["variants"].items()}
    return out


def build(case: str, model: list[str], synth: dict, convert_t: int, train: dict, fresh: bool, device: str) -> dict:
    """synthesize -> convert -> train with the CLI, reusing what exists unless ``fresh``."""
    work = WORK / case
    work.mkdir(parents=True, exist_ok=True)
    paths = {"synthetic": work / "synth.npz", "converted": work / "snn.pt", "encrypted": work / "private.pt"}
    times = {}
    if fresh or not paths["synthetic"].exists():
        times["synthesize"] = synthesize(model, synth, paths["synthetic"], device)
    if fresh or not paths["converted"].exists():
        times["convert"] = privsnn("convert", *model, "--synthetic", paths["synthetic"], "--timesteps", convert_t,
                                   "--out", paths["converted"])
    if fresh or not paths["encrypted"].exists():
        times["train"] = train_variant(model, paths["converted"], paths["synthetic"], paths["encrypted"], train, device)
    return {"paths": {k: str(v) for k, v in paths.items()}, "seconds": times, "synthetic": synth,
            "convert_timesteps": convert_t, "train": train}


def synthesize(model: list[str], synth: dict, out: Path, device: str) -> float:
    """The synthesis stage through its Python API (same code path as `privsnn synthesize`)."""
    from privatesnn.models import load_model
    from privatesnn.synthesis.driver import make_config, synthesize as run

    t0 = time.time()
    opts = dict(zip(model[2::2], model[3::2]))
    loaded = load_model(model[1], mean=opts.get("--mean"), std=opts.get("--std"))
    cfg = make_config(loaded, int(synth["num"]), batch_size=int(synth["batch"]), iterations=int(synth["iters"]))
    run(loaded, cfg, out, device=device, overwrite=True)
    return time.time() - t0


def train_variant(model: list[str], snn: Path, synth: Path, out: Path, knobs: dict, device: str) -> float:
    flags = []
    for k, v in knobs.items():
        flags += [f"--{k.replace('_', '-')}", v]
    Path(str(out) + ".ckpt.pt").unlink(missing_ok=True)
    return privsnn("train", "--snn", snn, "--teacher", *model[1:], "--synthetic", synth, *flags, "--out", out,
                   "--device", device)


def audit(snn: Path, out: Path, extra: list, device: str) -> dict:
    privsnn("attack", "--snn", snn, *extra, "--out", out, "--device", device)
    return read_json(out / "privacy.json")


def tradeoff_digits(build_info: dict, per_class: int, iterations: int, fresh: bool, device: str) -> list[dict]:
    work = WORK / "digits" / "tradeoff"
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for label, knobs in TRADEOFF:
        tag = "".join(c if c.isalnum() else "_" for c in label)
        out = work / f"{tag}.pt"
        if fresh or not out.exists():
            train_variant(["--model", "digits"], Path(build_info["paths"]["converted"]),
                          Path(build_info["paths"]["synthetic"]), out, {"timesteps": 8, **knobs}, device)
        r = audit(out, work / f"audit_{tag}", ["--data", "digits", "--per-class", per_class, "--iterations", iterations],
                  device)
        e = r["variants"]["encrypted_snn"]
        rows.append({"label": label, "train": {"timesteps": 8, **knobs},
                     **{k: e.get(k) for k in KEYS}, "verdict": r["verdict"], "goals": r["goals"],
                     "ann_accuracy": r["ann_accuracy"], "chance": r["chance"]})
        print(f"trade-off {label:<22} SNN {100 * e['accuracy']:.1f}%  weights-as-ANN "
              f"{100 * e['weights_as_ann_accuracy']:.1f}% ({e['weights_as_ann_mode']}; relu "
              f"{100 * e['weights_as_ann_modes']['relu']:.1f}%)  inversion {100 * e['inversion_accuracy']:.1f}%  "
              f"SNN inversion {100 * e['snn_inversion_accuracy']:.1f}%", flush=True)
    return rows


def plot_tradeoff(rows: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from privatesnn.io_utils import atomic_path

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    numbered = [(i, r) for i, r in enumerate(rows, 1) if r["accuracy"] > r["chance"] + 0.05]  # drop collapsed runs
    left_out = [str(i) for i, r in enumerate(rows, 1) if r["accuracy"] <= r["chance"] + 0.05]
    rows = [r for _, r in numbered]
    acc = [100 * r["accuracy"] for r in rows]
    for key, marker, name in (("weights_as_ann_accuracy", "o", "weights-as-ANN acc. (best reading)"),
                              ("weights_as_ann_relu", "x", "weights-as-ANN acc. (plain ReLU reading)"),
                              ("inversion_accuracy", "s", "inversion acc. (scenario 1)"),
                              ("snn_inversion_accuracy", "^", "SNN inversion acc. (scenario 2)")):
        vals = [r["weights_as_ann_modes"]["relu"] if key == "weights_as_ann_relu" else r[key] for r in rows]
        ax.scatter(acc, [100 * v for v in vals], marker=marker, label=name, alpha=0.8)
    for (i, r), a in zip(numbered, acc):  # row numbers of the table in privacy.md
        ax.annotate(str(i), (a, 100 * r["weights_as_ann_modes"]["relu"]), fontsize=6, xytext=(3, -6),
                    textcoords="offset points")
    chance = 100 * rows[0]["chance"]
    ax.axhline(chance + 5, color="k", ls="--", lw=0.8, label="goal: weights-as-ANN <= chance + 5")
    ax.axhline(chance + 10, color="gray", ls=":", lw=0.8, label="goal: inversion <= chance + 10")
    ax.axvline(100 * rows[0]["ann_accuracy"] - 0.5, color="r", ls="--", lw=0.8, label="accuracy goal: ANN - 0.5")
    ax.set_xlabel("encrypted SNN accuracy on real digits test (%)")
    ax.set_ylabel("attack accuracy (%)")
    ax.set_title("digits: leakage vs accuracy over training knobs (numbers: rows of privacy.md)"
                 + (f"\nnot shown (SNN at chance): {', '.join(left_out)}" if left_out else ""), fontsize=8)
    ax.set_ylim(0, 105)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def markdown(results: dict) -> str:
    pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    lines = ["# Privacy benchmark (bench/privacy.py)", "",
             "Attack accuracies are scored by an independent evaluator; chance = 1/classes. "
             "See docs/privacy.md for what they mean.", ""]
    for case, r in results["cases"].items():
        lines += [f"## {case}", "", f"**{r['verdict']}**", "",
                  "| variant | accuracy | weights-as-ANN best (mode) | weights-as-ANN relu | inversion (sc. 1) | SNN inversion (sc. 2) | mean cosine |",
                  "|---|---|---|---|---|---|---|"]
        for name, e in r["variants"].items():
            cos = e.get("weight_cosine_mean")
            t = f" (T={e['timesteps']})" if e.get("timesteps") else ""
            lines.append(f"| {name} | {pct(e['accuracy'])}{t} | {pct(e['weights_as_ann_accuracy'])} ({e['weights_as_ann_mode']}) "
                         f"| {pct(e['weights_as_ann_modes'].get('relu', e['weights_as_ann_accuracy']))} "
                         f"| {pct(e['inversion_accuracy'])} | {pct(e['snn_inversion_accuracy'])} | "
                         f"{'n/a' if cos is None else f'{cos:.4f}'} |")
        lines += ["", f"Evaluator: `{Path(r['evaluator']['spec']).name}` ({pct(r['evaluator']['accuracy'])} on the real "
                      f"test data); {r['n_inverted']} inverted images per attack.", ""]
    if results.get("digits_tradeoff"):
        lines += ["## digits: training knobs vs leakage (encrypted SNN only)", "",
                  "| # | training | SNN acc. | weights-as-ANN best (mode) | weights-as-ANN relu | inversion | SNN inversion | mean cosine |",
                  "|---|---|---|---|---|---|---|---|"]
        for i, r in enumerate(results["digits_tradeoff"], 1):
            t = "" if "T=" in r["label"] else f" (T={r['train']['timesteps']})"
            lines.append(f"| {i} | {r['label']}{t} | {pct(r['accuracy'])} | "
                         f"{pct(r['weights_as_ann_accuracy'])} ({r['weights_as_ann_mode']}) | "
                         f"{pct(r['weights_as_ann_modes']['relu'])} | {pct(r['inversion_accuracy'])} | "
                         f"{pct(r['snn_inversion_accuracy'])} | {r['weight_cosine_mean']:.4f} |")
        lines += ["", "![trade-off](privacy_tradeoff_digits.png)", ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default="digits,cifar10", help="comma list: digits, cifar10")
    p.add_argument("--no-tradeoff", action="store_true", help="skip the digits training-knob sweep")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--fresh", action="store_true", help="rebuild artifacts even if present")
    p.add_argument("--digits-per-class", type=int, default=8)
    p.add_argument("--digits-iterations", type=int, default=200)
    p.add_argument("--cifar-synth", type=int, default=512)
    p.add_argument("--cifar-synth-iters", type=int, default=200)
    p.add_argument("--cifar-epochs", type=int, default=2)
    p.add_argument("--cifar-train-t", type=int, default=8)
    p.add_argument("--cifar-per-class", type=int, default=4)
    p.add_argument("--cifar-iterations", type=int, default=100)
    p.add_argument("--cifar-inversion-t", type=int, default=8, help="T of scenario-2 inversion on CIFAR")
    p.add_argument("--cifar-limit", type=int, default=1000, help="CIFAR test images for the accuracies")
    p.add_argument("--cifar-evaluator", default=None, help="evaluator spec (default: train/reuse the bench one)")
    args = p.parse_args()
    set_threads(args.threads)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    results: dict = {"cases": {}, "command": " ".join(sys.argv), "device": args.device}
    t0 = time.time()
    if "digits" in cases:
        info = build("digits", ["--model", "digits"], {"num": 1000, "iters": 300, "batch": 250}, 8, {"timesteps": 8},
                     args.fresh, args.device)
        r = audit(Path(info["paths"]["encrypted"]), WORK / "digits" / "audit",
                  ["--data", "digits", "--per-class", args.digits_per_class, "--iterations", args.digits_iterations],
                  args.device)
        results["cases"]["digits"] = {**summary(r), "artifacts": info}
        for png in ("ann_inversion.png", "converted_snn_inversion.png", "encrypted_snn_inversion.png",
                    "encrypted_snn_snn_inversion.png"):
            src = WORK / "digits" / "audit" / png
            if src.exists():
                shutil.copyfile(src, RESULTS / f"privacy_digits_{png}")
        if not args.no_tradeoff:
            rows = tradeoff_digits(info, args.digits_per_class, args.digits_iterations, args.fresh, args.device)
            results["digits_tradeoff"] = rows
            plot_tradeoff(rows, RESULTS / "privacy_tradeoff_digits.png")
    if "cifar10" in cases:
        if not shared_available():
            print("cifar10: ../shared/data is absent; skipped")
        else:
            from train_cifar_evaluator import ensure_evaluator

            evaluator = args.cifar_evaluator or str(ensure_evaluator())
            model = ["--model", f"resnet20:{RESNET20}", *IMAGENET_NORM]
            info = build("cifar10_resnet20", model,
                         {"num": args.cifar_synth, "iters": args.cifar_synth_iters, "batch": 256}, 32,
                         {"timesteps": args.cifar_train_t, "epochs": args.cifar_epochs}, args.fresh, args.device)
            r = audit(Path(info["paths"]["encrypted"]), WORK / "cifar10_resnet20" / "audit",
                      [*model, "--data", CIFAR_TEST, "--evaluator", evaluator, "--per-class", args.cifar_per_class,
                       "--iterations", args.cifar_iterations, "--inversion-timesteps", args.cifar_inversion_t,
                       "--limit", args.cifar_limit], args.device)
            results["cases"]["cifar10_resnet20"] = {**summary(r), "artifacts": info}
            for png in ("ann_inversion.png", "encrypted_snn_inversion.png", "encrypted_snn_snn_inversion.png"):
                src = WORK / "cifar10_resnet20" / "audit" / png
                if src.exists():
                    shutil.copyfile(src, RESULTS / f"privacy_cifar10_{png}")
    results["total_seconds"] = round(time.time() - t0, 1)
    previous = RESULTS / "privacy.json"
    if previous.exists():  # keep the other cases' numbers when only some are rerun (read at the end:
        old = read_json(previous)  # another run may have finished meanwhile)
        results["cases"] = {**{k: v for k, v in old.get("cases", {}).items() if k.split("_")[0] not in cases},
                            **results["cases"]}
        if "digits_tradeoff" not in results and "digits_tradeoff" in old:
            results["digits_tradeoff"] = old["digits_tradeoff"]
        results["runs"] = {**old.get("runs", {}), **{c: {"command": results["command"], "seconds": results["total_seconds"]}
                                                     for c in cases}}
    else:
        results["runs"] = {c: {"command": results["command"], "seconds": results["total_seconds"]} for c in cases}
    write_results("privacy.json", results)
    from privatesnn.io_utils import atomic_path

    with atomic_path(RESULTS / "privacy.md") as tmp:
        tmp.write_text(markdown(results))
    for case, r in results["cases"].items():
        print(f"{case}: {r['verdict']}")


if __name__ == "__main__":
    main()
