"""Accuracy benchmark of the private pipeline (not a test; writes bench/results/accuracy.json).

For (a) the embedded digits model and (b) the shared CIFAR-10 ResNet-20 (skipped when
../shared/data is absent), every variant made by the CLI and evaluated on the real test images at
T = 1, 2, 4, 8, 16, 32 (one simulation of 32 steps per image), with the wall time of each stage:

  converted_real       conversion calibrated on 256 REAL training images (non-private baseline; CIFAR)
  converted_synthetic  conversion on synthetic images (private)
  encrypted            + PrivateSNN training (BPTT + KD) at T=8 (CIFAR: with --anchor)
  qcfs                 conversion + QCFS fine-tuning with L levels (`convert --qcfs-levels`)
  qcfs_calibrated      + bias calibration at the low T (`privsnn calibrate`)
  low_latency          + encryption at the low T (`train --timesteps T`, from qcfs_calibrated; CIFAR:
                       thresholds and initial membranes learnt too, `--neuron-lr 1e-2`)
  qcfs_t8, qcfs_t8_calibrated, low_latency_t8
                       CIFAR: the same path one step longer (QCFS L=8, calibration and encryption at T=8)
  qcfs_signed, qcfs_signed_calibrated, low_latency_signed, qcfs_signed_t8_calibrated, low_latency_signed_t8
                       CIFAR: the T=4 path with signed neurons (`convert --signed`: a neuron also fires -1
                       to take back an early spike) with calibration at T=4 measured, and encryption at
                       T=4 from the QCFS SNN (10 epochs), and from the same QCFS SNN calibration at T=8 and
                       encryption at T=8 (16 epochs); both `--kd-loss mse`
  qcfs_signed_l8, qcfs_signed_l8_calibrated, low_latency_signed_l8
                       CIFAR: the same with QCFS L=8 (calibration and encryption at T=8)
  qcfs_signed_q60, qcfs_signed_q60_calibrated, low_latency_signed_q60
                       CIFAR: the signed T=4 path after a longer QCFS fine-tuning (60 epochs, lr 3e-4)
  qcfs_windowed, low_latency_windowed, qcfs_windowed_q60, low_latency_windowed_q60, qcfs_windowed_l8,
  low_latency_windowed_l8
                       CIFAR: windowed IF neurons (`convert --windowed`: each layer integrates its whole
                       window of T steps, then fires; binary spikes, no temporal error): the QCFS SNN (L=4,
                       15 epochs; L=4, 60 epochs at lr 3e-4; L=8) as converted, and after encryption at
                       T=4 (L=4) or T=8 (L=8); `--kd-loss mse`, `--ema 0.998`, no calibration (nothing
                       temporal to correct)
  low_latency_windowed_qat, low_latency_windowed_q60_qat, low_latency_windowed_l8_qat
                       + 2 epochs on the chip's grid at a third of the rate (`train --qat --ema 0.99`): the SNNs that
                       deploy to Lava with the chip model's spikes equal to the SNN's (bench/deploy.py)
  qcfs_windowed_l6, low_latency_windowed_l6
                       CIFAR: windowed, QCFS L=6 (60 epochs at lr 3e-4), encryption at T=6 (evaluated at T=6 too)
  qcfs_windowed_q60mse, low_latency_windowed_q60mse
                       CIFAR: the 60-epoch windowed path with the QCFS fine-tuning distilled by the squared logit
                       difference (`convert --qcfs-kd-loss mse`), encryption at T=4
  low_latency_windowed_l6a1, low_latency_windowed_l6a1_qat
                       CIFAR: the same QCFS L=6 SNN encrypted at T=6 with `--surrogate-alpha 1` (the surrogate's
                       slope summed over the window is then the staircase's straight-through slope, 1; at the
                       default 0.3 each windowed layer scales the gradient by 0.3), + 4 epochs `--qat --ema 0.998`
  low_latency_windowed_q60_s1, _s2, low_latency_windowed_q60mse_s1, _s2, low_latency_windowed_l6a1_s1, _s2
                       CIFAR: the T=4 and T=6 encryptions trained again with `--seed 1`, `--seed 2` (the spread;
                       mean and standard deviation in windowed_{q60,q60mse,l6a1}_seed_spread)
  qcfs_windowed_t3, low_latency_windowed_t3
                       digits: windowed neurons at T=3 (`--digits-windowed-t`): QCFS L=3 (the digits QCFS recipe),
                       encryption at T=3 on the chip's weight grid (the digits low-T recipe with `--qat`: the SNN
                       deploys to Lava as it is, bench/deploy.py --digits-snn), evaluated at T=3 too

and, for each, the top-1 agreement with the ANN on held-out synthetic images (`privsnn choose-t`,
another seed), to show how well that real-data-free estimate predicts the real accuracy.

    python bench/accuracy.py                                   # both cases, defaults below
    python bench/accuracy.py --cases digits                    # digits only (~6 min)
    python bench/accuracy.py --cases cifar10 --reuse-synthetic            # reuse the 2048 synthetic images
    python bench/accuracy.py --device cuda --cifar-synth 8192 --cifar-low-epochs 50     # larger, on a GPU

Artifacts are kept under runs/bench/<case>/ for bench/energy.py, bench/deploy.py, bench/privacy.py
and bench/latency_gap.py.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import (CIFAR_TEST, CIFAR_TRAIN4000, IMAGENET_NORM, RESNET20, RESULTS, ROOT, RUNS, privsnn,  # noqa: E402
                    read_json, set_threads, shared_available, train_argv, write_results)

TIMESTEPS = "1,2,4,8,16,32"
VARIANTS = ("converted_real", "converted_synthetic", "encrypted", "qcfs", "qcfs_calibrated", "low_latency",
            "qcfs_t8", "qcfs_t8_calibrated", "low_latency_t8", "qcfs_signed", "qcfs_signed_calibrated",
            "low_latency_signed", "qcfs_signed_t8_calibrated", "low_latency_signed_t8", "qcfs_signed_l8",
            "qcfs_signed_l8_calibrated", "low_latency_signed_l8", "qcfs_signed_q60", "qcfs_signed_q60_calibrated",
            "low_latency_signed_q60", "qcfs_windowed", "low_latency_windowed", "low_latency_windowed_qat",
            "qcfs_windowed_q60", "low_latency_windowed_q60", "low_latency_windowed_q60_qat", "qcfs_windowed_l8",
            "low_latency_windowed_l8", "low_latency_windowed_l8_qat", "qcfs_windowed_l6", "low_latency_windowed_l6",
            "low_latency_windowed_q60_s1", "low_latency_windowed_q60_s2", "low_latency_windowed_q60_s3",
            "qcfs_windowed_q60mse", "low_latency_windowed_q60mse", "low_latency_windowed_q60mse_s1",
            "low_latency_windowed_q60mse_s2", "low_latency_windowed_q60mse_s3", "low_latency_windowed_l6a1",
            "low_latency_windowed_l6a1_qat", "low_latency_windowed_l6a1_s1", "low_latency_windowed_l6a1_s2",
            "low_latency_windowed_l6a1_s3", "qcfs_windowed_t3", "low_latency_windowed_t3")


def run_case(name: str, model: list[str], data: str, calib_real: str | None, synth: dict, train: dict, low: dict,
             device: str, eval_limit: int | None, fresh: bool, reuse: bool = False, skip: tuple[str, ...] = (),
             low2: dict | None = None, signed: dict | None = None, windowed: dict | None = None,
             windowed_small: dict | None = None) -> dict:
    """One model: every variant converted/trained by the CLI, evaluated on the real test images at
    every T, and its agreement with the ANN on held-out synthetic images (choose-t). With ``reuse``,
    a stage whose output (artifact, or evaluation JSON newer than its artifact) exists is not rerun;
    stage times are kept in runs/bench/<case>/stage_seconds.json."""
    from privatesnn.io_utils import write_json

    work = RUNS / name
    work.mkdir(parents=True, exist_ok=True)
    times_path = work / "stage_seconds.json"
    times: dict[str, float] = read_json(times_path) if reuse and times_path.exists() else {}
    lim = ["--limit", str(eval_limit)] if eval_limit else []
    dev = ["--device", device]
    result: dict = {}

    def stage(key: str, out: Path, *argv) -> None:
        """Run one CLI stage unless reusing and ``out`` is already there."""
        if not (reuse and out.exists()):  # a reused stage keeps the time of the run that made it, if recorded
            times[key] = privsnn(*argv)
            write_json(times_path, times)

    def ev(snn: Path | None, tag: str, timesteps: str = TIMESTEPS) -> dict:
        out = work / f"eval_{tag}.json"
        if snn and out.exists() and out.stat().st_mtime < snn.stat().st_mtime:
            out.unlink()  # stale: the artifact was remade
        args = ["evaluate", *model, "--data", data, *lim, "--json", out, *dev]
        if snn:
            args += ["--snn", snn, "--timesteps", timesteps]
        stage(f"evaluate_{tag}", out, *args)
        return read_json(out)

    def variant(tag: str, snn: Path, timesteps: str = TIMESTEPS) -> None:
        result[tag] = ev(snn, tag, timesteps)["results"]
        out = work / f"choose_t_{tag}.json"
        if out.exists() and out.stat().st_mtime < snn.stat().st_mtime:
            out.unlink()
        stage(f"choose_t_{tag}", out, "choose-t", "--snn", snn, *model, "--synthetic", heldout, "--timesteps",
              timesteps, "--json", out, *dev)
        result.setdefault("synthetic_agreement", {})[tag] = read_json(out)["agreement"]

    ann = ev(None, "ann")
    result.update(ann_accuracy=ann["accuracy"], n=ann["n"])
    synth_path, heldout = work / "synth.npz", work / "heldout.npz"
    for path, num, seed in ((synth_path, synth["num"], 0), (heldout, synth["heldout"], 1)):
        if fresh or not path.exists():
            times[f"synthesize_{path.stem}"] = privsnn(
                "synthesize", *model, "--num", num, "--iterations", synth["iters"], "--batch-size", synth["batch"],
                "--seed", seed, "--out", path, "--overwrite", *dev)
    if calib_real and "converted_real" not in skip:
        base = work / "snn_real.pt"
        stage("convert_real", base, "convert", *model, "--calibration-data", calib_real, "--calibration-limit", 256,
              "--timesteps", 32, "--out", base)
        variant("converted_real", base)
    conv = work / "snn_synthetic.pt"
    stage("convert_synthetic", conv, "convert", *model, "--synthetic", synth_path, "--timesteps", 32, "--out", conv)
    if "converted_synthetic" not in skip:
        variant("converted_synthetic", conv)

    def train_from(src: Path, out: Path, cfg: dict, tag: str) -> None:
        if not (reuse and out.exists()):
            Path(str(out) + ".ckpt.pt").unlink(missing_ok=True)
        stage(f"train_{tag}", out, *train_argv(src, out, model[1:], synth_path, cfg), *dev)

    private = work / "private.pt"
    if "encrypted" not in skip:
        train_from(conv, private, train, "encrypted")
        variant("encrypted", private)

    def low_path(low: dict, suffix: str, qcfs_from: Path | None = None) -> dict[str, Path]:
        """QCFS fine-tuning -> bias calibration at the low T -> encryption at the low T (``qcfs_from``:
        start from that QCFS SNN instead of fine-tuning one)."""
        qcfs = qcfs_from or work / f"snn_qcfs{suffix}.pt"
        if qcfs_from is None:
            qargs = ["--qcfs-levels", low["levels"], "--qcfs-epochs", low["qcfs_epochs"], "--qcfs-lr", low["qcfs_lr"],
                     "--qcfs-optimizer", low["qcfs_optimizer"], *(["--signed"] if low.get("signed") else []),
                     *(["--qcfs-kd-loss", low["qcfs_kd_loss"]] if low.get("qcfs_kd_loss") else []),
                     *(["--windowed"] if low.get("windowed") else [])]
            stage(f"convert_qcfs{suffix}", qcfs, "convert", *model, "--synthetic", synth_path, "--timesteps", low["t"],
                  *qargs, "--out", qcfs, *dev)
            variant(f"qcfs{suffix}", qcfs, low.get("eval_timesteps", TIMESTEPS))
        calibrated = work / f"snn_qcfs{suffix}_calibrated.pt"
        if low.get("calibrate"):
            stage(f"calibrate_qcfs{suffix}", calibrated, "calibrate", "--snn", qcfs, "--synthetic", synth_path,
                  "--timesteps", low["t"], "--out", calibrated, *dev)
            variant(f"qcfs{suffix}_calibrated", calibrated)
        fast = work / f"private_low_latency{suffix}.pt"
        # calibration is a better start for low-T training of IF neurons; signed neurons train better from
        # the QCFS SNN itself (docs/low_latency.md, session 17), so that path only measures the calibration
        start = calibrated if low.get("calibrate") and not low.get("signed") else qcfs
        train_from(start, fast, {"epochs": low["epochs"], "t": low["t"], "batch": low["batch"], "lr": low["lr"],
                                 "kd_alpha": 1.0, "qat": low.get("qat"), "neuron_lr": low.get("neuron_lr", 0.0),
                                 "kd_loss": low.get("kd_loss", "kl"), "ema": low.get("ema", 0.0),
                                 "surrogate_alpha": low.get("surrogate_alpha")},
                   f"low_latency{suffix}")
        variant(f"low_latency{suffix}", fast, low.get("eval_timesteps", TIMESTEPS))
        made = {f"qcfs{suffix}": qcfs, f"qcfs{suffix}_calibrated": calibrated, f"low_latency{suffix}": fast}
        if low.get("qat_epochs"):  # a short finish on the chip's grid at a lower rate: the deployable SNN
            deployed = work / f"private_low_latency{suffix}_qat.pt"
            train_from(fast, deployed, {"epochs": low["qat_epochs"], "t": low["t"], "batch": low["batch"],
                                        "lr": low["lr"] / 3, "kd_alpha": 1.0, "qat": True,
                                        "neuron_lr": low.get("neuron_lr", 0.0), "kd_loss": low.get("kd_loss", "kl"),
                                        "ema": low.get("qat_ema", 0.99) if low.get("ema") else 0.0,
                                        "surrogate_alpha": low.get("surrogate_alpha")},
                       f"low_latency{suffix}_qat")
            variant(f"low_latency{suffix}_qat", deployed, low.get("eval_timesteps", TIMESTEPS))
            made[f"low_latency{suffix}_qat"] = deployed
        return made

    made = low_path(low, "") if "low_latency" not in skip else {}  # skip the T=4 path as a whole
    if low2:
        made.update(low_path(low2, f"_t{low2['t']}"))
    if signed:  # the signed-neuron path: one QCFS SNN, then calibration + encryption at T=4 and at T=8
        made.update(low_path(signed, "_signed"))
        made.update(low_path({**signed, "t": 8, "epochs": signed["epochs_t8"]}, "_signed_t8",
                             qcfs_from=made["qcfs_signed"]))
        made.pop("qcfs_signed_t8")
        # QCFS with 8 levels: the finer staircase for T = 8-16 (calibration measured at T = 8)
        made.update(low_path({**signed, "levels": 8, "t": 8, "epochs": signed["epochs_t8"]}, "_signed_l8"))
        # a longer QCFS fine-tuning for T = 4 (a static network: cheap next to BPTT)
        made.update(low_path({**signed, "qcfs_epochs": 60, "qcfs_lr": 3e-4}, "_signed_q60"))
    if windowed_small:  # one windowed path at a small T (digits: T = 3, the smallest within 1 point)
        made.update(low_path(windowed_small, f"_windowed_t{windowed_small['t']}"))
        made.pop(f"qcfs_windowed_t{windowed_small['t']}_calibrated")
    if windowed:  # windowed IF neurons (binary spikes): the same QCFS networks, encryption at T=4 / T=8
        made.update(low_path(windowed, "_windowed"))
        made.update(low_path({**windowed, "qcfs_epochs": 60, "qcfs_lr": 3e-4}, "_windowed_q60"))
        made.update(low_path({**windowed, "levels": 8, "t": 8, "epochs": windowed["epochs_t8"]}, "_windowed_l8"))
        # QCFS L=6, encryption at T=6 (evaluated at T=6 too): between the T=4 and T=8 paths
        made.update(low_path({**windowed, "levels": 6, "t": 6, "qcfs_epochs": 60, "qcfs_lr": 3e-4, "qat_epochs": 0,
                              "eval_timesteps": "1,2,4,6,8,16,32"}, "_windowed_l6"))
        # the QCFS fine-tuning distilled with the squared logit difference (`--qcfs-kd-loss mse`), as BPTT is
        made.update(low_path({**windowed, "qcfs_epochs": 60, "qcfs_lr": 3e-4, "qcfs_kd_loss": "mse", "qat_epochs": 0},
                             "_windowed_q60mse"))
        # the L=6 QCFS SNN encrypted at T=6 with the surrogate's slope at 1 (the staircase's straight-through
        # slope; at 0.3 conv1's gradient is 3e-6 of the last layer's: bench/surrogate_gradients.py)
        l6a1 = {**windowed, "levels": 6, "t": 6, "surrogate_alpha": 1.0, "qat_epochs": 4, "qat_ema": 0.998,
                "eval_timesteps": "1,2,4,6,8,16,32"}  # the QAT finish: 4 epochs, EMA 0.998 (2 / 0.99 cost 1.4 pt)
        made.update(low_path(l6a1, "_windowed_l6a1", qcfs_from=made["qcfs_windowed_l6"]))
        made.pop("qcfs_windowed_l6a1")
        # the encryptions again with other seeds: their run-to-run spread
        # path -> (its QCFS SNN, its encryption settings, its evaluation T)
        seed_paths = {"q60": ("qcfs_windowed_q60", {"t": windowed["t"]}, TIMESTEPS),
                      "q60mse": ("qcfs_windowed_q60mse", {"t": windowed["t"]}, TIMESTEPS),
                      "l6a1": ("qcfs_windowed_l6", {"t": l6a1["t"], "surrogate_alpha": l6a1["surrogate_alpha"]},
                               l6a1["eval_timesteps"])}
        for path, (source, extra, eval_timesteps) in seed_paths.items():
            for seed in windowed.get("seeds", ()):
                tag = f"low_latency_windowed_{path}_s{seed}"
                snn = work / f"private_{tag}.pt"
                train_from(made[source], snn,
                           {"epochs": windowed["epochs"], "batch": windowed["batch"],
                            "lr": windowed["lr"], "kd_alpha": 1.0, "neuron_lr": windowed["neuron_lr"],
                            "kd_loss": "mse", "ema": windowed["ema"], "seed": seed, **extra}, tag)
                variant(tag, snn, eval_timesteps)
                made[tag] = snn
            runs = [result[k] for k in (f"low_latency_windowed_{path}", *(f"low_latency_windowed_{path}_s{s}"
                                                                            for s in windowed.get("seeds", ())))
                    if k in result]
            if len(runs) > 1:  # the same recipe, other seeds: mean and sample standard deviation per T
                by_t = {e["timesteps"]: [r_["accuracy"] for run in runs for r_ in run
                                         if r_["timesteps"] == e["timesteps"]] for e in runs[0]}
                result[f"windowed_{path}_seed_spread"] = {
                    str(t): {"runs": len(a), "mean": statistics.mean(a), "sd": statistics.stdev(a)}
                    for t, a in by_t.items() if len(a) > 1}
        for key in [k for k in made if k.startswith("qcfs_windowed") and k.endswith("_calibrated")]:
            made.pop(key)
    result["settings"] = {"synthetic": synth, "train": train, "low_latency": low, "low_latency_2": low2,
                          "eval_limit": eval_limit, "real_calibration_images": 256 if calib_real else 0,
                          "skipped": list(skip)}
    result["seconds"] = times
    result["artifacts"] = {k: str(v.relative_to(ROOT)) for k, v in (
        ("synthetic", synth_path), ("heldout_synthetic", heldout), ("converted", conv), ("encrypted", private),
        *made.items()) if v.exists()}
    return result


def agreement_fit(case: dict) -> dict:
    """How well the real-data-free estimate (synthetic agreement with the ANN) predicts the real
    accuracy relative to the ANN, over every variant and T of a case: median of |agreement -
    accuracy / ANN accuracy| and of the signed difference (> 0: the estimate is optimistic), points."""
    diffs = []
    for key, agree in case.get("synthetic_agreement", {}).items():
        accs = {str(e["timesteps"]): e["accuracy"] for e in case.get(key, [])}
        diffs += [100 * (a - accs[t] / case["ann_accuracy"]) for t, a in agree.items() if t in accs]
    if not diffs:
        return {}
    return {"pairs": len(diffs), "median_abs_points": statistics.median(abs(d) for d in diffs),
            "median_signed_points": statistics.median(diffs)}


def print_table(results: dict) -> None:
    ts = sorted({str(e["timesteps"]) for r in results["cases"].values() for k in VARIANTS for e in r.get(k, [])}
                | set(TIMESTEPS.split(",")), key=int)
    print(f"\n{'case':<17} {'variant':<26} " + " ".join(f"T={t:<6}" for t in ts))
    for case, r in results["cases"].items():
        print(f"{case:<17} {'ANN':<26} {100 * r['ann_accuracy']:.2f}%")
        for key in VARIANTS:
            if key in r:
                accs = {str(e["timesteps"]): e["accuracy"] for e in r[key]}
                agree = r.get("synthetic_agreement", {}).get(key, {})
                for label, row in ((key, accs), ("  synthetic agreement", agree)):
                    if row:
                        print(f"{'':<17} {label:<26} " + " ".join(f"{100 * row[t]:6.2f}%" if t in row else f"{'-':>7}"
                                                               for t in ts))
        for path in ("q60", "q60mse", "l6a1"):
            spread = r.get(f"windowed_{path}_seed_spread")
            if spread:
                print(f"{'':<17} windowed {path} encryption over {next(iter(spread.values()))['runs']} seeds, "
                      "mean +- sd: " + ", ".join(f"T={t} {100 * v['mean']:.2f} +- {100 * v['sd']:.2f}%"
                                                 for t, v in spread.items()))
        if r.get("agreement_fit"):
            f = r["agreement_fit"]
            print(f"{'':<17} synthetic agreement vs accuracy/ANN over {f['pairs']} (variant, T): median |diff| "
                  f"{f['median_abs_points']:.2f} points, median signed {f['median_signed_points']:+.2f}")
        print(f"{'':<17} stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in r["seconds"].items()))


def low_settings(args: argparse.Namespace, case: str) -> dict:
    get = lambda k: getattr(args, f"{case}_{k}")  # noqa: E731
    return {"levels": get("levels"), "qcfs_epochs": get("qcfs_epochs"), "qcfs_lr": get("qcfs_lr"),
            "qcfs_optimizer": get("qcfs_optimizer"), "t": get("low_t"),
            "epochs": get("low_epochs"), "lr": get("low_lr"), "batch": get("low_batch"), "calibrate": get("calibrate"),
            "neuron_lr": get("neuron_lr"), "kd_loss": get("kd_loss")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default="digits,cifar10", help="comma list: digits, cifar10")
    p.add_argument("--summary-only", action="store_true",
                   help="run nothing: recompute the summaries of bench/results/accuracy.json and print its table")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch threads (1 is best on a busy machine)")
    p.add_argument("--eval-limit", type=int, default=None, help="CIFAR test images (default all 1900)")
    p.add_argument("--digits-synth", type=int, default=2000)
    p.add_argument("--digits-epochs", type=int, default=5)
    p.add_argument("--digits-windowed-t", type=int, default=3,
                   help="T (= QCFS levels) of the digits windowed path (0 = off): the digits QCFS and low-T "
                        "encryption recipes with windowed neurons")
    p.add_argument("--cifar-synth", type=int, default=2048)
    p.add_argument("--cifar-synth-iters", type=int, default=120)
    p.add_argument("--cifar-epochs", type=int, default=2)
    p.add_argument("--cifar-train-t", type=int, default=8)
    p.add_argument("--cifar-lr", type=float, default=1e-4)
    p.add_argument("--cifar-batch", type=int, default=16)
    p.add_argument("--cifar-anchor", type=float, default=1.0,
                   help="weight of KD on the T->infinity rate limit (keeps long-T accuracy; 0 = the paper's loss)")
    p.add_argument("--cifar-qat", action=argparse.BooleanOptionalAction, default=False,
                   help="train on the Loihi 8-bit weight grid (for bench/deploy.py; costs ~1.8 points at "
                        "T=64 on ResNet-20 with the default budget)")
    p.add_argument("--cifar-heldout", type=int, default=256, help="held-out synthetic images for choose-t")
    for case, d in (("digits", {"t": 4, "qcfs_epochs": 20, "epochs": 15, "lr": 1e-3, "batch": 32,
                                "qcfs_optimizer": "sgd", "qcfs_lr": 2e-3}),
                    ("cifar", {"t": 4, "qcfs_epochs": 15, "epochs": 10, "lr": 3e-4, "batch": 32, "neuron_lr": 1e-2})):
        g = p.add_argument_group(f"{case}: low-latency path (QCFS fine-tuning, then encryption at low T)")
        g.add_argument(f"--{case}-levels", type=int, default=4, help="QCFS levels L (default 4)")
        g.add_argument(f"--{case}-qcfs-epochs", type=int, default=d["qcfs_epochs"])
        g.add_argument(f"--{case}-qcfs-lr", type=float, default=d.get("qcfs_lr", 1e-4))
        g.add_argument(f"--{case}-qcfs-optimizer", choices=("adam", "sgd"), default=d.get("qcfs_optimizer", "adam"))
        g.add_argument(f"--{case}-low-t", type=int, default=d["t"], help="T of calibration and low-T training")
        g.add_argument(f"--{case}-low-epochs", type=int, default=d["epochs"])
        g.add_argument(f"--{case}-low-lr", type=float, default=d["lr"])
        g.add_argument(f"--{case}-low-batch", type=int, default=d["batch"])
        g.add_argument(f"--{case}-neuron-lr", type=float, default=d.get("neuron_lr", 0.0),
                       help="learning rate of the per-layer thresholds and initial membranes in the low-T "
                            "encryption (`train --neuron-lr`; 0 = fixed; CIFAR default 1e-2)")
        g.add_argument(f"--{case}-kd-loss", choices=("kl", "mse"), default="kl",
                       help="distillation term of the low-T encryption (`train --kd-loss`; mse: +1.2 points at "
                            "T = 8 on ResNet-20 in docs/low_latency.md, session 14)")
        g.add_argument(f"--{case}-calibrate", action=argparse.BooleanOptionalAction, default=True,
                       help="also measure QCFS + bias calibration at the low T (`privsnn calibrate`)")
    p.add_argument("--cifar-t8-path", action=argparse.BooleanOptionalAction, default=True,
                   help="also run the path at T=8 (QCFS L=8, calibration and encryption at T=8, 8 epochs)")
    p.add_argument("--cifar-signed", action=argparse.BooleanOptionalAction, default=True,
                   help="also run the signed-neuron paths (`convert --signed`; QCFS L=4: calibration and "
                        "encryption at T=4, 10 epochs, and at T=8, 16 epochs; QCFS L=8: at T=8; QCFS L=4 "
                        "fine-tuned 60 epochs at lr 3e-4: at T=4; `--kd-loss mse`)")
    p.add_argument("--cifar-windowed", action=argparse.BooleanOptionalAction, default=True,
                   help="also run the windowed-neuron paths (`convert --windowed`, binary spikes; QCFS L=4 15 "
                        "and 60 epochs: encryption at T=4; QCFS L=8: at T=8; `--kd-loss mse`)")
    p.add_argument("--cifar-windowed-epochs", type=int, default=10, help="encryption epochs of the windowed paths")
    p.add_argument("--cifar-windowed-seeds", default="1,2",
                   help="train the windowed T=4 encryption (QCFS 60 epochs) again with these seeds (comma list, "
                        "at most 1,2,3; '' = none): the spread between runs")
    p.add_argument("--reuse-synthetic", action="store_true", help="reuse runs/bench/<case>/synth.npz if present")
    p.add_argument("--reuse-results", action="store_true",
                   help="resume an interrupted run: keep every stage whose output exists in runs/bench/<case>/")
    p.add_argument("--skip", default="",
                   help="comma list of variants not to make (converted_real, converted_synthetic, encrypted, "
                        "low_latency = the whole low-T path): their results from the last accuracy.json are kept")
    args = p.parse_args()
    if args.summary_only:
        if not (RESULTS / "accuracy.json").exists():
            raise SystemExit(f"--summary-only: {RESULTS / 'accuracy.json'} is missing; run the bench first")
        results = read_json(RESULTS / "accuracy.json")
        for case in results["cases"].values():
            case["agreement_fit"] = agreement_fit(case)
        write_results("accuracy.json", results)
        print_table(results)
        return
    if args.digits_windowed_t < 0:
        raise SystemExit(f"--digits-windowed-t: expected T >= 1 (or 0 = off), got {args.digits_windowed_t}")
    if not {s.strip() for s in args.cifar_windowed_seeds.split(",") if s.strip()} <= {"1", "2", "3"}:
        raise SystemExit(f"--cifar-windowed-seeds: expected a comma list of 1, 2, 3, got {args.cifar_windowed_seeds!r}")
    set_threads(args.threads)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    out = {"cases": {}, "timesteps": [int(t) for t in TIMESTEPS.split(",")], "device": args.device,
           "command": " ".join(sys.argv)}
    t0 = time.time()
    if "digits" in cases:
        out["cases"]["digits"] = run_case(
            "digits", ["--model", "digits"], "digits", None,
            synth={"num": args.digits_synth, "iters": 300, "batch": 250, "heldout": 500},
            train={"epochs": args.digits_epochs, "t": 8, "batch": 32, "lr": 1e-4},
            low=low_settings(args, "digits"), reuse=args.reuse_results, skip=tuple(args.skip.split(",")),
            device=args.device, eval_limit=None, fresh=not args.reuse_synthetic,
            windowed_small=({**low_settings(args, "digits"), "windowed": True, "calibrate": False,
                             "levels": args.digits_windowed_t, "t": args.digits_windowed_t, "qat": True,
                             "eval_timesteps": ",".join(sorted({*TIMESTEPS.split(","), str(args.digits_windowed_t)},
                                                               key=int))}
                            if args.digits_windowed_t else None))
    if "cifar10" in cases:
        if not shared_available():
            print("cifar10: ../shared/data is absent; skipped")
        else:
            out["cases"]["cifar10_resnet20"] = run_case(
                "cifar10_resnet20", ["--model", f"resnet20:{RESNET20}", *IMAGENET_NORM], CIFAR_TEST, CIFAR_TRAIN4000,
                synth={"num": args.cifar_synth, "iters": args.cifar_synth_iters, "batch": 256,
                       "heldout": args.cifar_heldout},
                train={"epochs": args.cifar_epochs, "t": args.cifar_train_t, "batch": args.cifar_batch,
                       "lr": args.cifar_lr, "anchor": args.cifar_anchor, "qat": args.cifar_qat},
                signed=({**low_settings(args, "cifar"), "signed": True, "epochs": 10, "epochs_t8": 16, "kd_loss": "mse"}
                        if args.cifar_signed else None),
                windowed=({**low_settings(args, "cifar"), "windowed": True, "calibrate": False, "kd_loss": "mse",
                           "epochs": args.cifar_windowed_epochs, "epochs_t8": args.cifar_windowed_epochs,
                           "qat_epochs": 2, "ema": 0.998,
                           "seeds": [int(s) for s in args.cifar_windowed_seeds.split(",") if s.strip()]}
                          if args.cifar_windowed else None),
                low=low_settings(args, "cifar"), reuse=args.reuse_results, skip=tuple(args.skip.split(",")),
                device=args.device, eval_limit=args.eval_limit, fresh=not args.reuse_synthetic,
                low2={**low_settings(args, "cifar"), "levels": 8, "t": 8, "epochs": 8} if args.cifar_t8_path else None)
    out["total_seconds"] = time.time() - t0
    previous = RESULTS / "accuracy.json"
    if previous.exists():  # a subset of cases (or of variants, with --skip) keeps the others' last results
        kept = read_json(previous).get("cases", {})
        for case, new in out["cases"].items():
            old = kept.get(case, {})
            for key in ("synthetic_agreement", "seconds", "artifacts"):
                new[key] = {**old.get(key, {}), **new.get(key, {})}
            out["cases"][case] = {**{k: v for k, v in old.items() if k in VARIANTS and k not in new}, **new}
        out["cases"] = {**{k: v for k, v in kept.items() if k not in out["cases"]}, **out["cases"]}
    for case in out["cases"].values():
        case["agreement_fit"] = agreement_fit(case)
    write_results("accuracy.json", out)
    print_table(out)


if __name__ == "__main__":
    main()
