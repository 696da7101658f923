"""Accuracy benchmark of the private pipeline (not a test; writes bench/results/accuracy.json).

For (a) the embedded digits model and (b) the shared CIFAR-10 ResNet-20 (skipped when
../shared/data is absent): ANN accuracy; conversion calibrated on REAL images (the non-private
baseline, 256 images of train4000 / the digits test split is NOT used: digits uses its own
synthetic vs real-train calibration); conversion on SYNTHETIC images; the encrypted (trained) SNN —
each at T in {8, 16, 32, 64} on the real test images, plus the wall time of each stage.

    python bench/accuracy.py                    # defaults: finish within ~90 min on 2 CPU cores
    python bench/accuracy.py --cases digits     # digits only (~3 min)
    python bench/accuracy.py --device cuda --cifar-synth 5000 --cifar-epochs 20   # larger, on a GPU

Budget flags (CIFAR): --cifar-synth (synthetic images, default 1024), --cifar-synth-iters
(optimisation steps per batch, 200), --cifar-epochs and --cifar-train-t (training epochs and T:
2 at T=8), --eval-limit (test images; default all 1900). Training defaults for CIFAR: lr 1e-4,
batch 16, --cifar-anchor 1.0 (distillation on the T->infinity rate limit keeps the long-T accuracy
that plain low-T training loses); --cifar-qat trains on the 8-bit Loihi weight grid instead (the
SNN bench/deploy.py deploys; it costs accuracy in this short budget).
Artifacts are kept under runs/bench/<case>/ for bench/energy.py, bench/deploy.py, bench/privacy.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import (CIFAR_TEST, CIFAR_TRAIN4000, IMAGENET_NORM, RESNET20, RESULTS, RUNS, privsnn,  # noqa: E402
                    read_json, set_threads, shared_available, write_results)

TIMESTEPS = "8,16,32,64"


def run_case(name: str, model: list[str], data: str, calib_real: str | None, synth: dict, train: dict,
             device: str, eval_limit: int | None, fresh: bool) -> dict:
    work = RUNS / name
    work.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    lim = ["--limit", str(eval_limit)] if eval_limit else []
    dev = ["--device", device]

    def ev(snn: str | None, tag: str) -> dict:
        out = work / f"eval_{tag}.json"
        args = ["evaluate", *model, "--data", data, *lim, "--json", out, *dev]
        if snn:
            args += ["--snn", snn, "--timesteps", TIMESTEPS]
        times[f"evaluate_{tag}"] = privsnn(*args)
        return read_json(out)

    ann = ev(None, "ann")
    synth_path = work / "synth.npz"
    if fresh or not synth_path.exists():
        times["synthesize"] = privsnn("synthesize", *model, "--num", synth["num"], "--iterations", synth["iters"],
                                      "--batch-size", synth["batch"], "--out", synth_path, "--overwrite", *dev)
    conv = work / "snn_synthetic.pt"
    times["convert_synthetic"] = privsnn("convert", *model, "--synthetic", synth_path, "--timesteps", 32, "--out", conv)
    result = {"ann_accuracy": ann["accuracy"], "n": ann["n"]}
    if calib_real:
        base = work / "snn_real.pt"
        times["convert_real"] = privsnn("convert", *model, "--calibration-data", calib_real,
                                        "--calibration-limit", 256, "--timesteps", 32, "--out", base)
        result["converted_real"] = ev(str(base), "real")["results"]
    result["converted_synthetic"] = ev(str(conv), "synthetic")["results"]
    private = work / "private.pt"
    ckpt = work / "private.pt.ckpt.pt"
    ckpt.unlink(missing_ok=True)
    times["train"] = privsnn("train", "--snn", conv, "--teacher", *model[1:], "--synthetic", synth_path,
                             "--epochs", train["epochs"], "--timesteps", train["t"], "--batch-size", train["batch"],
                             "--lr", train["lr"], "--anchor", train.get("anchor", 0.0), "--out", private,
                             *(["--qat"] if train.get("qat") else []), *dev)
    result["encrypted"] = ev(str(private), "encrypted")["results"]
    result["settings"] = {"synthetic": synth, "train": train, "eval_limit": eval_limit,
                          "real_calibration_images": 256 if calib_real else 0}
    result["seconds"] = times
    result["artifacts"] = {"synthetic": str(synth_path), "converted": str(conv), "encrypted": str(private),
                           **({"converted_real": str(work / "snn_real.pt")} if calib_real else {})}
    return result


def print_table(results: dict) -> None:
    print(f"\n{'case':<10} {'variant':<22} " + " ".join(f"T={t:<6}" for t in TIMESTEPS.split(",")))
    for case, r in results["cases"].items():
        print(f"{case:<10} {'ANN':<22} {100 * r['ann_accuracy']:.2f}%")
        for key in ("converted_real", "converted_synthetic", "encrypted"):
            if key in r:
                accs = {e["timesteps"]: e["accuracy"] for e in r[key]}
                print(f"{'':<10} {key:<22} " + " ".join(f"{100 * accs[int(t)]:6.2f}%" for t in TIMESTEPS.split(",")))
        print(f"{'':<10} stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in r["seconds"].items()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default="digits,cifar10", help="comma list: digits, cifar10")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch threads (1 is best on a busy machine)")
    p.add_argument("--eval-limit", type=int, default=None, help="CIFAR test images (default all 1900)")
    p.add_argument("--digits-synth", type=int, default=2000)
    p.add_argument("--digits-epochs", type=int, default=5)
    p.add_argument("--cifar-synth", type=int, default=1024)
    p.add_argument("--cifar-synth-iters", type=int, default=200)
    p.add_argument("--cifar-epochs", type=int, default=2)
    p.add_argument("--cifar-train-t", type=int, default=8)
    p.add_argument("--cifar-lr", type=float, default=1e-4)
    p.add_argument("--cifar-batch", type=int, default=16)
    p.add_argument("--cifar-anchor", type=float, default=1.0,
                   help="weight of KD on the T->infinity rate limit (keeps long-T accuracy; 0 = the paper's loss)")
    p.add_argument("--cifar-qat", action=argparse.BooleanOptionalAction, default=False,
                   help="train on the Loihi 8-bit weight grid (for bench/deploy.py; costs ~1.8 points at "
                        "T=64 on ResNet-20 with the default budget)")
    p.add_argument("--reuse-synthetic", action="store_true", help="reuse runs/bench/<case>/synth.npz if present")
    args = p.parse_args()
    set_threads(args.threads)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    out = {"cases": {}, "timesteps": [int(t) for t in TIMESTEPS.split(",")], "device": args.device,
           "command": " ".join(sys.argv)}
    t0 = time.time()
    if "digits" in cases:
        out["cases"]["digits"] = run_case(
            "digits", ["--model", "digits"], "digits", None,
            synth={"num": args.digits_synth, "iters": 300, "batch": 250},
            train={"epochs": args.digits_epochs, "t": 8, "batch": 32, "lr": 1e-4},
            device=args.device, eval_limit=None, fresh=not args.reuse_synthetic)
    if "cifar10" in cases:
        if not shared_available():
            print("cifar10: ../shared/data is absent; skipped")
        else:
            out["cases"]["cifar10_resnet20"] = run_case(
                "cifar10_resnet20", ["--model", f"resnet20:{RESNET20}", *IMAGENET_NORM], CIFAR_TEST, CIFAR_TRAIN4000,
                synth={"num": args.cifar_synth, "iters": args.cifar_synth_iters, "batch": 256},
                train={"epochs": args.cifar_epochs, "t": args.cifar_train_t, "batch": args.cifar_batch,
                       "lr": args.cifar_lr, "anchor": args.cifar_anchor, "qat": args.cifar_qat},
                device=args.device, eval_limit=args.eval_limit, fresh=not args.reuse_synthetic)
    out["total_seconds"] = time.time() - t0
    previous = RESULTS / "accuracy.json"
    if previous.exists():  # running a subset of cases keeps the others' last results
        kept = read_json(previous).get("cases", {})
        out["cases"] = {**{k: v for k, v in kept.items() if k not in out["cases"]}, **out["cases"]}
    print_table(out)
    write_results("accuracy.json", out)


if __name__ == "__main__":
    main()
