"""Spike budget benchmark (not a test; writes bench/results/spike_budget.json).

The private windowed ResNet-20 at a low T spends its energy on spikes (plus the image convolution,
charged at every step under the strict count). This bench trades accuracy for spikes along two
knobs and reports the frontier on the shared CIFAR-10 test images (all 1900):

- ``convert --qcfs-rate-reg W``: a penalty on the mean QCFS level during the QCFS fine-tuning, which
  is the windowed SNN's spike rate at T = L (trained at the cost of an ANN step);
- ``train --rate-reg R``: the same penalty on the spikes during the encryption (BPTT at T).

Both weigh each layer by the synapses its spikes reach (``--weighting synops``, the default;
``layers``: every layer alike). Each setting: QCFS L = T fine-tuning (60 epochs, lr 3e-4, windowed
neurons), encryption at T (10 epochs, ``--kd-loss mse``, surrogate slope 1, EMA 0.998: the recipe of
bench/accuracy.py's ``low_latency_windowed_l6a1``), then accuracy (all 1900 images) and operations
(200 images) at each T of --timesteps by bench/energy.py's counter and conventions. Per setting it
prints the strict (all-timesteps) energy ratio and the smallest T within 2 points of the ANN; with
several --seeds, the mean and spread per setting.

    python bench/spike_budget.py --reuse --threads 1          # penalties {0, 8} x {0, 30}, seed 0
    python bench/spike_budget.py --qcfs-rate-reg 8 --train-rate-reg 30 --seeds 0,1,2 \
        --out spike_budget_seeds.json --reuse --threads 1     # the spread of one setting
    python bench/spike_budget.py --qcfs-kd-loss mse --qcfs-rate-reg 8,9,10,12 --qcfs-only \
        --out spike_budget_qcfs_mse.json --reuse --threads 1  # QCFS SNNs distilled by the logit MSE, no BPTT

``--qcfs-kd-loss mse`` distils the QCFS fine-tuning by the squared logit difference (artifacts named
``..._mse``); ``--include-qcfs`` adds each QCFS SNN itself (before encryption) as a row; ``--qcfs-only``
makes and measures only those. ``--qcfs-seeds 0,1,2`` repeats each QCFS fine-tuning with those seeds
(``convert --seed``; ``..._qs1``), and the summary gives each QCFS setting's mean and spread over them;
``--synthetic-sets K`` fine-tunes (and encrypts) on K synthetic sets of 2048 images, the bench's own and
``synth_s2.npz`` ... made with seeds 2 ... (``..._x3``):

    python bench/spike_budget.py --qcfs-kd-loss mse --qcfs-rate-reg 10,12 --synthetic-sets 3 --qcfs-epochs 30 \
        --qcfs-only --out spike_budget_qcfs_x3.json --reuse --threads 1
    python bench/spike_budget.py --qcfs-kd-loss mse --qcfs-rate-reg 8 --qcfs-seeds 0,1,2 --qcfs-only \
        --out spike_budget_qcfs_mse_seeds.json --reuse --threads 1     # one QCFS setting's spread
    python bench/spike_budget.py --qcfs-kd-loss mse --qcfs-rate-reg 10,12 --qcfs-ema 0.998 --qcfs-only \
        --out spike_budget_qcfs_ema.json --reuse --threads 1
    python bench/spike_budget.py --qcfs-kd-loss mse --qcfs-rate-reg 12 --qcfs-anchor 30 --qcfs-only \
        --out spike_budget_qcfs_anchor30.json --reuse --threads 1        # and --qcfs-anchor 300

``--qcfs-prune S --qcfs-prune-input S1`` prunes the QCFS network's weights during its fine-tuning
(gradual magnitude pruning, ``convert --qcfs-prune``; ``..._p50i50``): fewer synapses per spike and fewer
multiply-accumulates on the image; each row also gives the share of zero weights. ``--qat-finish T``
(with ``--qcfs-only``) finishes each QCFS SNN on the chip's weight grid at T (``..._qat7``; zeros kept),
the SNN that deploys as it is:

    python bench/spike_budget.py --qcfs-kd-loss mse --qcfs-rate-reg 8 --qcfs-prune 0.5 --qcfs-prune-input 0.5 \
        --qcfs-seeds 0,1,2 --qcfs-only --timesteps 6,7,8 --out spike_budget_qcfs_prune50.json --reuse --threads 1

Artifacts go to runs/bench/cifar10_resnet20/spike_budget/ (named by setting: ``qcfs_q8sy.pt``,
``q8sy_r30sy_s0.pt``; the synthetic images are bench/accuracy.py's ``synth.npz`` one folder up, made
here with the same settings if absent); --reuse keeps an artifact that exists and the stage time
recorded for it in that folder's stage_seconds.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import (IMAGENET_NORM, RESNET20, RUNS, privsnn, read_json, set_threads, shared_available,  # noqa: E402
                    train_argv, write_results)

MODEL = ["--model", f"resnet20:{RESNET20}", *IMAGENET_NORM]
# the encryption of the accuracy bench's T = 6 path (`low_latency_windowed_l6a1`), plus --rate-reg
ENCRYPTION = {"batch": 32, "lr": 3e-4, "anchor": 0.0, "kd_alpha": 1.0, "neuron_lr": 0.01, "kd_loss": "mse",
              "ema": 0.998, "surrogate_alpha": 1.0}
# the deployable finish of the accuracy bench's T = 6 path (`low_latency_windowed_l6a1_qat`): 4 epochs on the
# chip's weight grid at a third of the encryption's rate; here from a QCFS SNN (`--qat-finish T`)
QAT_FINISH = {**ENCRYPTION, "epochs": 4, "lr": 1e-4, "qat": True}


def floats(text: str, option: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"{option}: expected a comma list of numbers, got {text!r}") from None
    if not values or any(not v >= 0 for v in values):
        raise SystemExit(f"{option}: expected numbers >= 0, got {text!r}")
    return values


def integers(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"{option}: expected a comma list of integers, got {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise SystemExit(f"{option}: expected integers >= 0, got {text!r}")
    return values


def tag(weight: float, weighting: str) -> str:
    """``8`` (layers alike) or ``8sy`` (synaptic-op weighted); a zero penalty has no weighting."""
    return f"{weight:g}" + ("sy" if weight > 0 and weighting == "synops" else "")


def prune_tag(prune: float, prune_input: float) -> str:
    """``_p50i30``: 50% of the spike-fed layers' weights and 30% of the image layer's pruned ('' if none)."""
    if not prune and not prune_input:
        return ""
    return f"_p{round(100 * prune)}" + (f"i{round(100 * prune_input)}" if prune_input else "")


def qcfs_tag(qcfs_rr: float, weighting: str, kd_loss: str = "kl", sets: int = 1, seed: int = 0,
             ema: float = 0.0, anchor: float = 0.0, prune: float = 0.0, prune_input: float = 0.0) -> str:
    """``q8sy``; ``q8sy_mse`` for a QCFS fine-tuning distilled by the squared logit difference, ``_x3``
    on three synthetic sets, ``_ema0.998`` keeping its weight average, ``_a100`` with an L2-SP pull of
    100, ``_p50i30`` pruned (:func:`prune_tag`), ``_qs1`` with its seed 1 (seed 0, one set, none of these:
    no suffix)."""
    return (f"q{tag(qcfs_rr, weighting)}" + ("" if kd_loss == "kl" else f"_{kd_loss}")
            + (f"_x{sets}" if sets > 1 else "") + (f"_ema{ema:g}" if ema else "") + (f"_a{anchor:g}" if anchor else "")
            + prune_tag(prune, prune_input) + (f"_qs{seed}" if seed else ""))


def qcfs_name(qcfs_rr: float, weighting: str, kd_loss: str = "kl", sets: int = 1, seed: int = 0,
              ema: float = 0.0, anchor: float = 0.0, prune: float = 0.0, prune_input: float = 0.0) -> str:
    return f"qcfs_{qcfs_tag(qcfs_rr, weighting, kd_loss, sets, seed, ema, anchor, prune, prune_input)}"


def setting_name(qcfs_rr: float, train_rr: float, seed: int, args, qcfs_seed: int = 0) -> str:
    q = qcfs_tag(qcfs_rr, args.qcfs_weighting, getattr(args, "qcfs_kd_loss", "kl"),
                 getattr(args, "synthetic_sets", 1), qcfs_seed, getattr(args, "qcfs_ema", 0.0),
                 getattr(args, "qcfs_anchor", 0.0), getattr(args, "qcfs_prune", 0.0),
                 getattr(args, "qcfs_prune_input", 0.0))
    return f"{q}_r{tag(train_rr, args.weighting)}_s{seed}"


def qcfs_path(work: Path, qcfs_rr: float, args, qcfs_seed: int = 0) -> Path:
    name = qcfs_name(qcfs_rr, args.qcfs_weighting, args.qcfs_kd_loss, args.synthetic_sets, qcfs_seed, args.qcfs_ema,
                     args.qcfs_anchor, args.qcfs_prune, args.qcfs_prune_input)
    return work / f"{name}.pt"


def synthetic_sets(work: Path, count: int, device: str) -> list[Path]:
    """bench/accuracy.py's ``synth.npz`` (seed 0) and ``synth_s2.npz`` ... (seeds 2 ...; seed 1 is its
    held-out set) up to ``count`` sets of 2048 images, made with the same settings where absent."""
    paths = [work / "synth.npz"] + [work / f"synth_s{i + 1}.npz" for i in range(1, count)]
    for seed, path in zip([0, *range(2, count + 1)], paths):
        if not path.exists():
            privsnn("synthesize", *MODEL, "--num", 2048, "--iterations", 120, "--batch-size", 256, "--seed", seed,
                    "--out", path, "--device", device)
    return paths


def make_qcfs(work: Path, synth: list[Path], qcfs_rr: float, args, times: dict[str, float],
              qcfs_seed: int = 0) -> Path:
    """The QCFS SNN of penalty ``qcfs_rr`` (L = T levels, windowed), made unless --reuse finds it."""
    qcfs = qcfs_path(work, qcfs_rr, args, qcfs_seed)
    if not (args.reuse and qcfs.exists()):
        times[qcfs.stem] = privsnn("convert", *MODEL, "--synthetic", *synth, "--timesteps", args.t, "--windowed",
                                   "--qcfs-levels", args.t, "--qcfs-epochs", args.qcfs_epochs, "--qcfs-lr", 3e-4,
                                   "--qcfs-optimizer", "adam", "--qcfs-rate-reg", qcfs_rr,
                                   "--qcfs-rate-weighting", args.qcfs_weighting, "--qcfs-kd-loss", args.qcfs_kd_loss,
                                   "--qcfs-ema", args.qcfs_ema, "--qcfs-anchor", args.qcfs_anchor,
                                   "--qcfs-prune", args.qcfs_prune, "--qcfs-prune-input", args.qcfs_prune_input,
                                   "--seed", qcfs_seed,
                                   "--out", qcfs, "--device", args.device)
    return qcfs


def make_qat_finish(work: Path, synth: list[Path], qcfs: Path, args, times: dict[str, float]) -> Path:
    """``<qcfs>_qat<T>.pt``: the QCFS SNN after :data:`QAT_FINISH` at T = ``--qat-finish`` (deploys as it is;
    a pruned SNN keeps its zeros), made unless --reuse finds it."""
    out = work / f"{qcfs.stem}_qat{args.qat_finish}.pt"
    if not (args.reuse and out.exists()):
        Path(str(out) + ".ckpt.pt").unlink(missing_ok=True)
        recipe = {**QAT_FINISH, "t": args.qat_finish, "seed": 0}
        times[out.stem] = privsnn(*train_argv(qcfs, out, MODEL[1:], synth, recipe), "--device", args.device)
    return out


def make_artifacts(work: Path, synth: list[Path], qcfs_rr: float, train_rr: float, seed: int, args,
                   times: dict[str, float], qcfs_seed: int = 0) -> Path:
    """QCFS (penalty ``qcfs_rr``) -> encryption at T (penalty ``train_rr``, ``seed``); returns the
    encrypted artifact. The QCFS SNN is shared by every encryption of the same ``qcfs_rr``."""
    dev = ["--device", args.device]
    qcfs = make_qcfs(work, synth, qcfs_rr, args, times, qcfs_seed)
    out = work / f"{setting_name(qcfs_rr, train_rr, seed, args, qcfs_seed)}.pt"
    if not (args.reuse and out.exists()):
        Path(str(out) + ".ckpt.pt").unlink(missing_ok=True)
        recipe = {**ENCRYPTION, "epochs": args.epochs, "t": args.t, "seed": seed, "rate_reg": train_rr,
                  "rate_weighting": args.weighting}
        times[out.stem] = privsnn(*train_argv(qcfs, out, MODEL[1:], synth, recipe), *dev)
    return out


def setting_without_seed(name: str) -> str:
    """``q8sy_r30sy_s1`` -> ``q8sy_r30sy``; ``qcfs_q8sy_mse_qs2`` -> ``qcfs_q8sy_mse`` (a seed-0 QCFS
    name has no seed); ``qcfs_q8sy_mse_qs2_qat7`` -> ``qcfs_q8sy_mse_qat7``."""
    head, sep, t = name.rpartition("_qat")
    if sep and t.isdigit():
        return setting_without_seed(head) + f"_qat{t}"
    for mark in ("_qs", "_s"):
        head, sep, seed = name.rpartition(mark)
        if sep and seed.isdigit():
            return head
    return name


def summarize(rows: list[dict]) -> dict:
    """Per setting (its name without the seed) over its seeds: mean and sd of accuracy and strict
    ratio at each T."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(setting_without_seed(r["name"]), []).append(r)
    out = {}
    for key, runs in groups.items():
        per_t = {}
        for e in runs[0]["results"]:
            ts = e["timesteps"]
            accs = [x["accuracy"] for r in runs for x in r["results"] if x["timesteps"] == ts]
            ratios = [x["strict_ratio"] for r in runs for x in r["results"] if x["timesteps"] == ts]
            per_t[str(ts)] = {"runs": len(accs), "accuracy_mean": statistics.mean(accs),
                              "accuracy_sd": statistics.stdev(accs) if len(accs) > 1 else None,
                              "strict_ratio_mean": statistics.mean(ratios)}
        out[key] = per_t
    return out


def print_table(result: dict) -> None:
    ann = result["ann_accuracy"]
    print(f"\nANN {100 * ann:.2f}% on {result['eval_images']} images; strict = every timestep charged "
          "(image convolution included); once = image convolution counted once; rate = spikes per neuron per step")
    print(f"{'setting':<22} {'T':>3} {'acc':>7} {'vs ANN':>7} {'rate':>6} {'strict':>7} {'once':>7}")
    for r in result["rows"]:
        for e in r["results"]:
            print(f"{r['name']:<22} {e['timesteps']:>3} {100 * e['accuracy']:6.2f}% "
                  f"{100 * (e['accuracy'] - ann):+6.2f} "
                  f"{e['spike_rate']:6.3f} {e['strict_ratio']:6.2f}x {e['input_once_ratio']:6.2f}x")
        hit = r["within_ann"]["2_point"]
        print(f"{'':<22} smallest T within 2 points: "
              + ("none" if hit is None else f"T={hit['timesteps']} ({100 * hit['accuracy']:.2f}%), strict "
                 f"{hit['all_timesteps_ratio']:.2f}x"))
    if result.get("summary"):
        print("\nover seeds (mean +- sd):")
        for key, per_t in result["summary"].items():
            cells = [f"T={t}: {100 * v['accuracy_mean']:.2f}"
                     + (f" +- {100 * v['accuracy_sd']:.2f}" if v["accuracy_sd"] is not None else "")
                     + f"% {v['strict_ratio_mean']:.2f}x" for t, v in per_t.items()]
            print(f"  {key:<12} " + "; ".join(cells))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--qcfs-rate-reg", default="0,8", help="comma list of `convert --qcfs-rate-reg` weights")
    p.add_argument("--train-rate-reg", default="0,30", help="comma list of `train --rate-reg` weights")
    p.add_argument("--seeds", default="0", help="comma list of encryption seeds")
    p.add_argument("--qcfs-seeds", default="0", help="comma list of QCFS fine-tuning seeds (`convert --seed`)")
    p.add_argument("--qcfs-ema", type=float, default=0.0,
                   help="`convert --qcfs-ema`: keep the QCFS weights' moving average with this decay (..._ema<D>)")
    p.add_argument("--qcfs-anchor", type=float, default=0.0,
                   help="`convert --qcfs-anchor`: L2-SP pull towards the converted ANN's weights (..._a<W>)")
    p.add_argument("--qcfs-prune", type=float, default=0.0,
                   help="`convert --qcfs-prune`: share of zero weights in the spike-fed layers (..._p<S>, in percent)")
    p.add_argument("--qcfs-prune-input", type=float, default=0.0,
                   help="`convert --qcfs-prune-input`: the same for the layer reading the image (..._p<S>i<S1>, in percent)")
    p.add_argument("--synthetic-sets", type=int, default=1,
                   help="synthetic sets of 2048 images to fine-tune and encrypt on (the bench's, then seeds 2 ...)")
    p.add_argument("--weighting", choices=("layers", "synops"), default="synops",
                   help="how the encryption's penalty weighs the layers' rates (`train --rate-weighting`)")
    p.add_argument("--qcfs-weighting", choices=("layers", "synops"), default=None,
                   help="how the QCFS penalty weighs them (`convert --qcfs-rate-weighting`; default: --weighting)")
    p.add_argument("--qcfs-kd-loss", choices=("kl", "mse"), default="kl",
                   help="distillation of the QCFS fine-tuning (`convert --qcfs-kd-loss`; mse: artifacts named ..._mse)")
    p.add_argument("--include-qcfs", action="store_true",
                   help="also measure each QCFS SNN itself (no encryption): rows named qcfs_...")
    p.add_argument("--qcfs-only", action="store_true",
                   help="make and measure only the QCFS SNNs (no encryption; --train-rate-reg and --seeds unused)")
    p.add_argument("--qat-finish", type=int, default=0, metavar="T",
                   help="with --qcfs-only: also finish each QCFS SNN on the chip's weight grid at this T (4 epochs, "
                        "`train --qat`; rows ..._qat<T>, the SNNs that deploy as they are; default 0 = off)")
    p.add_argument("--t", type=int, default=6, help="T of the encryption and QCFS levels L (default 6)")
    p.add_argument("--timesteps", default="6,8", help="T at which accuracy and energy are measured")
    p.add_argument("--qcfs-epochs", type=int, default=60)
    p.add_argument("--epochs", type=int, default=10, help="encryption epochs")
    p.add_argument("--reuse", action="store_true", help="keep the artifacts that exist (and their stage times)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch threads (1 is best on a busy machine)")
    p.add_argument("--out", default="spike_budget.json", help="results file under bench/results/")
    args = p.parse_args()
    args.qcfs_weighting = args.qcfs_weighting or args.weighting
    qcfs_rrs, train_rrs = floats(args.qcfs_rate_reg, "--qcfs-rate-reg"), floats(args.train_rate_reg, "--train-rate-reg")
    seeds, qcfs_seeds = integers(args.seeds, "--seeds"), integers(args.qcfs_seeds, "--qcfs-seeds")
    if not 0 <= args.qcfs_ema < 1:
        raise SystemExit(f"--qcfs-ema: expected a decay in [0, 1), got {args.qcfs_ema}")
    if not args.qcfs_anchor >= 0:
        raise SystemExit(f"--qcfs-anchor: expected a weight >= 0, got {args.qcfs_anchor}")
    for option, value in (("--qcfs-prune", args.qcfs_prune), ("--qcfs-prune-input", args.qcfs_prune_input)):
        if not 0 <= value < 1:
            raise SystemExit(f"{option}: expected a share of the weights in [0, 1), got {value}")
    if args.qat_finish < 0 or (args.qat_finish and not args.qcfs_only):
        raise SystemExit(f"--qat-finish: expected a T >= 1 used with --qcfs-only (0 = off), got {args.qat_finish}")
    if args.synthetic_sets < 1:
        raise SystemExit(f"--synthetic-sets: expected >= 1, got {args.synthetic_sets}")
    if not shared_available():
        print("../shared/data is absent: the spike budget bench needs the shared ResNet-20 and CIFAR-10 images")
        return
    set_threads(args.threads)
    import energy  # bench/energy.py: the same counter, conventions and accuracy

    from privatesnn.hw_targets.energy_models import load_energy_model
    from privatesnn.io_utils import write_json

    t0 = time.time()
    work = RUNS / "cifar10_resnet20" / "spike_budget"
    work.mkdir(parents=True, exist_ok=True)
    synth = synthetic_sets(work.parent, args.synthetic_sets, args.device)
    times_path = work / "stage_seconds.json"
    times = read_json(times_path) if args.reuse and times_path.exists() else {}
    def save_times() -> None:  # merged: another run of the bench may share the file
        write_json(times_path, {**(read_json(times_path) if times_path.exists() else {}), **times})

    settings = [] if args.qcfs_only else [(q, qs, r, s) for q in qcfs_rrs for qs in qcfs_seeds
                                          for r in train_rrs for s in seeds]
    paths = []
    for q, qs, r, s in settings:
        paths.append(make_artifacts(work, synth, q, r, s, args, times, qs))
        save_times()
    finished = []
    for q, qs in [(q, qs) for q in qcfs_rrs for qs in qcfs_seeds] if args.qcfs_only else ():
        qcfs = make_qcfs(work, synth, q, args, times, qs)
        save_times()
        if args.qat_finish:
            finished.append((q, qs, make_qat_finish(work, synth, qcfs, args, times)))
            save_times()
    import torch

    from privatesnn.snn_eval import parse_timesteps

    torch.set_grad_enabled(False)
    ts = parse_timesteps(args.timesteps, 32)
    count_args = argparse.Namespace(eval_limit=None, count_limit=200, batch_size=50, device=args.device, seed=0,
                                    no_build=True)
    model = load_energy_model(None)
    if args.include_qcfs or args.qcfs_only:  # the QCFS SNNs themselves, before any encryption (train penalty: none)
        for q in qcfs_rrs:
            for qs in qcfs_seeds:
                settings.append((q, qs, None, None))
                paths.append(qcfs_path(work, q, args, qs))
    for q, qs, path in finished:
        settings.append((q, qs, None, None))
        paths.append(path)
    case = energy.run_case("cifar10_resnet20", paths, ts, count_args, model)
    from privatesnn.artifact import load_snn
    from privatesnn.pruning import weight_sparsity

    rows = []
    for (q, qs, r, s), path, snn in zip(settings, paths, case["snns"]):
        results = [{"timesteps": e["timesteps"], "accuracy": e["accuracy"], "spike_rate": e["totals"]["spike_rate"],
                    "strict_ratio": e["conventions"]["all_timesteps"]["ratio"],
                    "input_once_ratio": e["conventions"]["all_timesteps"]["ratio_input_once"],
                    "per_timestep_ratio": e["conventions"]["per_timestep"]["ratio"]} for e in snn["results"]]
        rows.append({"name": setting_name(q, r, s, args, qs) if r is not None else path.stem, "qcfs_rate_reg": q,
                     "train_rate_reg": r, "seed": s, "qcfs_seed": qs, "synthetic_sets": args.synthetic_sets,
                     "qcfs_weighting": args.qcfs_weighting,
                     "qcfs_kd_loss": args.qcfs_kd_loss, "weighting": args.weighting,
                     "snn": str(path), "weight_sparsity": weight_sparsity(load_snn(path).graph)["all"],
                     "results": results, "within_ann": snn["within_ann"],
                     "seconds": {"qcfs": times.get(qcfs_path(work, q, args, qs).stem),
                                 "train": times.get(path.stem) if path.stem != qcfs_path(work, q, args, qs).stem
                                 else None}})
    result = {"command": " ".join(sys.argv), "t": args.t, "timesteps": ts, "ann_accuracy": case["ann_accuracy"],
              "eval_images": case["eval_images"], "count_images": case["count_images"],
              "recipe": {"qcfs": {"levels": args.t, "epochs": args.qcfs_epochs, "lr": 3e-4, "windowed": True,
                                  "kd_loss": args.qcfs_kd_loss, "ema": args.qcfs_ema, "anchor": args.qcfs_anchor,
                                  "prune": args.qcfs_prune, "prune_input": args.qcfs_prune_input,
                                  "synthetic_images": 2048 * args.synthetic_sets},
                         "train": {"epochs": args.epochs, **ENCRYPTION},
                         "qat_finish": {**QAT_FINISH, "t": args.qat_finish} if args.qat_finish else None},
              "rows": rows, "summary": summarize(rows) if len(seeds) > 1 or len(qcfs_seeds) > 1 else None,
              "total_seconds": time.time() - t0}
    print_table(result)
    write_results(Path(args.out).name, result)


if __name__ == "__main__":
    main()
