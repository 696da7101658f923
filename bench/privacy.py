"""Privacy benchmark: the class-leakage audit (`privsnn attack`, four threat models side by side)
for digits and the shared CIFAR-10 ResNet-20, and the defences of the encryption step on digits:
per defence setting, the SNN's accuracy and each attacker's success with its standard error, and the
trapdoor defence over six keys (mean and standard error across keys: how it holds for a random key).
Not a test; writes bench/results/privacy.json (and privacy.md, privacy_tradeoff_digits.png).

Threat models: (a) the paper's attacker (the SNN's weights in a plain ReLU ANN), (b) the
rescaling-aware attacker (thresholds and layer scales undone), (c) inversion through the SNN with
surrogate gradients, (d) an attacker with auxiliary public data (real images of the classes it does
not attack: digits' training split for digits 5-9, CIFAR-10's train4000 images of classes 5-9).

    python bench/privacy.py                         # digits + defences + key study + CIFAR-10 (~90 min, 2 CPU cores)
    python bench/privacy.py --cases digits          # digits, its defences and the trapdoor over 6 keys (~45 min)
    python bench/privacy.py --cases cifar10 --cifar-per-class 2 --cifar-iterations 60   # a quicker CIFAR run
    python bench/privacy.py --cases cifar10 --cifar-snn S.pt --cifar-defence S_trapdoor.pt --cifar-inversion-t 8
                                                    # an SNN and the same recipe with a defence, side by side
    python bench/privacy.py --cases digits --no-tradeoff --no-key-study   # the misalignment study only (~25 min)
    python bench/privacy.py --cases cifar10 --cifar-snn S.pt --cifar-tag TAG --cifar-objectives logit,ce

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

from common import (CIFAR_TEST, CIFAR_TRAIN4000, IMAGENET_NORM, RESNET20, RESULTS, ROOT, privsnn, read_json,  # noqa: E402
                    relative_paths, set_threads, shared_available, write_results)

from privatesnn.privacy.audit import ATTACK_CONVERGED, MAX_ACCURACY_DROP, ROUNDING, threat_models  # noqa: E402

WORK = ROOT / "runs" / "bench" / "privacy"
KEYS = ("accuracy", "weights_as_ann_accuracy", "weights_as_ann_mode", "weights_as_ann_modes", "inversion_accuracy",
        "snn_inversion_accuracy", "weight_cosine_mean", "timesteps", "relu_inversion_accuracy",
        "prior_inversion_accuracy", "inversion_accuracy_se", "snn_inversion_accuracy_se", "relu_inversion_accuracy_se",
        "prior_inversion_accuracy_se")
# The digits SNN the defences start from: the low-latency path (QCFS L=4, calibration at T=4), and
# its encryption without a defence (the accuracy bench's low-latency settings).
DIGITS_BASE_TRAIN = {"epochs": 15, "timesteps": 4, "lr": 1e-3, "kd_alpha": 1.0}
DIGITS_CONVERT = ("--qcfs-levels", 4, "--qcfs-epochs", 20, "--qcfs-optimizer", "sgd", "--qcfs-lr", 2e-3)
# Defences of the encryption step tried on digits (each from the same calibrated QCFS SNN, added to
# DIGITS_BASE_TRAIN): the model-inversion literature's (negative label smoothing, Struppek et al.
# ICLR 2024; BiDO-HSIC, Peng et al. KDD 2022) and the SNN-specific knobs measured before (leak, T).
TRADEOFF = [
    ("no defence", {}),
    ("negative LS -0.05", {"kd_alpha": 0.5, "label_smoothing": -0.05}),
    ("negative LS -0.1", {"kd_alpha": 0.5, "label_smoothing": -0.1}),
    ("negative LS -0.2, CE only", {"kd_alpha": 0.0, "label_smoothing": -0.2}),
    ("BiDO 0.05,0.5", {"kd_alpha": 0.5, "bido": "0.05,0.5"}),
    ("BiDO 0.5,0.5", {"kd_alpha": 0.5, "bido": "0.5,0.5"}),
    ("BiDO 2,1", {"kd_alpha": 0.5, "bido": "2,1"}),
    ("NLS -0.1 + BiDO 0.5,0.5", {"kd_alpha": 0.5, "label_smoothing": -0.1, "bido": "0.5,0.5"}),
    ("leak 0.5", {"leak": 0.5}),
    ("T=1", {"timesteps": 1}),
    # Trap-MID (Liu et al., NeurIPS 2024): secret per-class triggers in a share of each batch, so that
    # inversion ascends to the trigger rather than the class's features (fixed keys: reproducible rows)
    ("trapdoor 0.3", {"trapdoor": 0.3, "trapdoor_key": 1}),
    ("trapdoor 0.5", {"trapdoor": 0.5, "trapdoor_key": 1}),
    ("trapdoor 0.5, other key", {"trapdoor": 0.5, "trapdoor_key": 2}),
    ("trapdoor 0.3, alpha 0.1", {"trapdoor": 0.3, "trapdoor_alpha": 0.1, "trapdoor_key": 1}),
    ("trapdoor 0.3, alpha 0.1, other key", {"trapdoor": 0.3, "trapdoor_alpha": 0.1, "trapdoor_key": 2}),
    ("trapdoor 0.5, alpha 0.1", {"trapdoor": 0.5, "trapdoor_alpha": 0.1, "trapdoor_key": 1}),
]
# The trapdoor over several keys: one key's row says little (whether a class's inversion falls into
# its trigger depends on the draw, and the classes are the audit's clusters), so the defence is judged
# by its mean over keys, with the standard error across keys. Several triggers per class: more traps.
KEY_STUDY = [("trapdoor 0.5", {"trapdoor": 0.5}),
             ("trapdoor 0.5, 3 triggers per class", {"trapdoor": 0.5, "trapdoor_per_class": 3}),
             ("trapdoor 0.3", {"trapdoor": 0.3}),
             ("trapdoor 0.7", {"trapdoor": 0.7}),
             ("trapdoor 0.7, 3 triggers per class", {"trapdoor": 0.7, "trapdoor_per_class": 3}),
             ("trapdoor 0.6, 3 triggers per class", {"trapdoor": 0.6, "trapdoor_per_class": 3})]
KEY_STUDY_KEYS = (1, 2, 3, 4, 5, 6)
# Gradient misalignment (privatesnn/gradient_alignment.py; after TRS, Yang et al. NeurIPS 2021): the SNN's
# input gradients are turned away from the ANN's during QCFS fine-tuning (convert --qcfs-misalign) and kept
# away during the encryption (train --misalign), alone and with the trapdoor. Each setting: its own
# converted SNN (the bench's digits recipe plus the convert knobs), calibrated, then encrypted once per key.
# Audited with both inversion objectives (logit and CE: the logit ascent stalls on these SNNs, so an
# attacker switches), bars against the undefended converted SNN audited the same way.
MISALIGN_STUDY = [("misalign 1.5 / 0.3", {"qcfs_misalign": 1.5}, {"misalign": 0.3}, (None,)),  # no key: one run
                  ("misalign 1.5 / 0.3 + trapdoor 0.6, 3 per class", {"qcfs_misalign": 1.5},
                   {"misalign": 0.3, "trapdoor": 0.6, "trapdoor_per_class": 3}, KEY_STUDY_KEYS),
                  ("misalign 1.5 / 0.1 + trapdoor 0.6, 3 per class", {"qcfs_misalign": 1.5},
                   {"misalign": 0.1, "trapdoor": 0.6, "trapdoor_per_class": 3}, KEY_STUDY_KEYS),
                  # the misalignment in QCFS fine-tuning only (the encryption keeps the trapdoor, not the penalty):
                  # does (c) stall less where the encryption does not turn the gradients further?
                  ("misalign 1.5 / 0 + trapdoor 0.6, 3 per class", {"qcfs_misalign": 1.5},
                   {"trapdoor": 0.6, "trapdoor_per_class": 3}, KEY_STUDY_KEYS),
                  # the trapdoor alone under the same audit: what the misalignment adds
                  ("trapdoor 0.6, 3 per class (no misalignment)", {}, {"trapdoor": 0.6, "trapdoor_per_class": 3},
                   KEY_STUDY_KEYS)]
BOTH_OBJECTIVES = ["--objectives", "logit,ce"]
THREATS = (("a", "relu_inversion_accuracy", "(a) paper: ReLU reading"),
           ("b", "inversion_accuracy", "(b) rescaling-aware"),
           ("c", "snn_inversion_accuracy", "(c) through the SNN"),
           ("d", "prior_inversion_accuracy", "(d) public-data prior"))


def summary(report: dict) -> dict:
    """The numbers worth keeping from a full audit report."""
    out = {k: report[k] for k in ("variant", "verdict", "goals", "chance", "ann_accuracy", "accuracy",
                                  "weights_as_ann_accuracy", "weights_as_ann_mode", "inversion_accuracy",
                                  "snn_inversion_accuracy", "weight_cosine", "n_test", "n_inverted", "evaluator",
                                  "inversion_settings", "notes", "seconds", "threat_models", "prior")}
    out["objectives"] = report.get("objectives", ["logit"])
    out["variants"] = {name: {k: e.get(k) for k in KEYS} for name, e in report["variants"].items()}
    return out


def build(case: str, model: list[str], synth: dict, convert_t: int, train: dict, fresh: bool, device: str,
          convert_extra: tuple = (), calibrate_t: int | None = None) -> dict:
    """synthesize -> convert (-> calibrate) -> train with the CLI, reusing what exists unless ``fresh``."""
    work = WORK / case
    work.mkdir(parents=True, exist_ok=True)
    paths = {"synthetic": work / "synth.npz", "converted": work / "snn.pt", "encrypted": work / "private.pt"}
    times = {}
    if fresh or not paths["synthetic"].exists():
        times["synthesize"] = synthesize(model, synth, paths["synthetic"], device)
    if fresh or not paths["converted"].exists():
        times["convert"] = privsnn("convert", *model, "--synthetic", paths["synthetic"], "--timesteps", convert_t,
                                   *convert_extra, "--out", paths["converted"])
    if calibrate_t:
        cal = work / "snn_calibrated.pt"
        if fresh or not cal.exists():
            times["calibrate"] = privsnn("calibrate", "--snn", paths["converted"], "--synthetic", paths["synthetic"],
                                         "--timesteps", calibrate_t, "--out", cal)
        paths["converted"] = cal
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


def audit_or_reuse(snn: Path, out: Path, extra: list, device: str, fresh: bool, expect: dict) -> dict:
    """The audit of ``snn``, reusing ``out/privacy.json`` when it is newer than the SNN, of the same
    file name, and its inversion settings match ``expect`` (unless ``fresh``)."""
    done = out / "privacy.json"
    if not Path(snn).is_file():
        raise SystemExit(f"bench/privacy.py: no SNN artifact at {snn}")
    if not fresh and done.exists() and done.stat().st_mtime > Path(snn).stat().st_mtime:
        r = read_json(done)
        settings = r.get("inversion_settings", {})
        objectives = str(extra[extra.index("--objectives") + 1]).split(",") if "--objectives" in extra else ["logit"]
        if Path(r.get("snn", "")).name == Path(snn).name and all(settings.get(k) == v for k, v in expect.items()) \
                and r.get("objectives", ["logit"]) == objectives and same_distil(r, extra):
            print(f"reusing the audit in {out} (newer than {snn}; --fresh redoes it)")
            return r
    return audit(snn, out, extra, device)


def same_distil(report: dict, extra: list) -> bool:
    """Does ``report`` hold attacker (c) as ``extra``'s ``--distil`` (default auto) runs it? A report from
    before the option (no surrogates) is the same as "auto" where every (c) ascent reached its class."""
    want = str(extra[extra.index("--distil") + 1]) if "--distil" in extra else "auto"
    if "distil" in report:
        return report["distil"] == want
    return want == "auto" and all(e.get("snn_inversion_self_accuracy") is None
                                  or e["snn_inversion_self_accuracy"] >= ATTACK_CONVERGED
                                  for e in report["variants"].values())


def digits_row(build_info: dict, work: Path, label: str, knobs: dict, per_class: int, iterations: int, fresh: bool,
               device: str, tag: str | None = None) -> tuple[dict, Path, dict]:
    """Train one digits defence setting from the bench's calibrated SNN (reused when present) and audit it.
    Returns the row, the audit folder and the audit report."""
    tag = tag or "".join(c if c.isalnum() else "_" for c in label)
    out = work / f"{tag}.pt"
    knobs = {**DIGITS_BASE_TRAIN, **knobs}
    if fresh or not out.exists():
        train_variant(["--model", "digits"], Path(build_info["paths"]["converted"]),
                      Path(build_info["paths"]["synthetic"]), out, knobs, device)
    audit_dir = work / f"audit_{tag}"
    if fresh or not (audit_dir / "privacy.json").exists() or (audit_dir / "privacy.json").stat().st_mtime < out.stat().st_mtime:
        r = audit(out, audit_dir, ["--data", "digits", "--per-class", per_class, "--iterations", iterations], device)
    else:
        r = read_json(audit_dir / "privacy.json")
    e = r["variants"]["encrypted_snn"]
    conv = r["variants"].get("converted_snn", {})
    row = {"label": label, "train": knobs, **{k: e.get(k) for k in KEYS}, "verdict": r["verdict"], "goals": r["goals"],
           # recomputed from the numbers, so a reused audit follows the current bar rules
           "threat_models": threat_models(r).get("encrypted_snn"),
           "converted": {k: conv.get(k) for k in ("accuracy", *[t[1] for t in THREATS])},
           "ann_accuracy": r["ann_accuracy"], "chance": r["chance"]}
    print(f"defence {label:<34} SNN {100 * e['accuracy']:.1f}%  " + "  ".join(
        f"({t}) {'n/a' if e.get(k) is None else f'{100 * e[k]:.1f}%'}" for t, k, _ in THREATS), flush=True)
    return row, audit_dir, r


def holds(row: dict) -> bool:
    """Every attacker's bar met (converged attacks only) and the SNN within 2 points of the ANN."""
    tms = row.get("threat_models") or {}
    return bool(tms.get("bars_met") and all(tms["bars_met"].values())
                and row["ann_accuracy"] - row["accuracy"] <= MAX_ACCURACY_DROP + ROUNDING)


def tradeoff_digits(build_info: dict, per_class: int, iterations: int, fresh: bool, device: str) -> list[dict]:
    work = WORK / "digits" / "tradeoff"
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for label, knobs in TRADEOFF:
        row, audit_dir, r = digits_row(build_info, work, label, knobs, per_class, iterations, fresh, device)
        if holds(row):  # keep the grids of a defence that holds
            tag = audit_dir.name[len("audit_"):]
            report = r["variants"]["encrypted_snn"]
            for kind in ("snn_inversion", "prior_inversion"):
                if report.get(f"{kind}_png") and (audit_dir / report[f"{kind}_png"]).exists():
                    shutil.copyfile(audit_dir / report[f"{kind}_png"], RESULTS / f"privacy_digits_defence_{tag}_{kind}.png")
        rows.append(row)
    return rows


def across_keys(rows: list[dict]) -> dict:
    """Mean and standard error across keys of the accuracy and of each attacker's success (None for one
    key), with how many keys meet each attacker's bar and in how many that attack did not converge."""
    import numpy as np

    def spread(vals: list[float]) -> dict:
        v = np.array(vals)
        return {"mean": float(v.mean()), "se": float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else None}

    out = {"accuracy": spread([r["accuracy"] for r in rows])}
    for t, key, _ in THREATS:
        vals = [r[key] for r in rows if r.get(key) is not None]
        if vals:
            tms = [r.get("threat_models") or {} for r in rows]
            out[t] = {**spread(vals), "keys_meeting_bar": sum(bool((tm.get("bars_met") or {}).get(t)) for tm in tms),
                      "keys_not_converged": sum(t in (tm.get("not_converged") or []) for tm in tms)}
    return out


def key_study_digits(build_info: dict, per_class: int, iterations: int, fresh: bool, device: str) -> list[dict]:
    """Each KEY_STUDY setting over KEY_STUDY_KEYS: per-key rows and the mean (standard error across keys)
    of the accuracy and of each attacker's success, with how many keys meet each bar."""
    work = WORK / "digits" / "keys"
    work.mkdir(parents=True, exist_ok=True)
    out = []
    for label, knobs in KEY_STUDY:
        rows = []
        for key in KEY_STUDY_KEYS:
            tag = "".join(c if c.isalnum() else "_" for c in label) + f"_key{key}"
            rows.append(digits_row(build_info, work, f"{label}, key {key}", {**knobs, "trapdoor_key": key},
                                   per_class, iterations, fresh, device, tag=tag)[0])
        summary_row = {"label": label, "train": {**DIGITS_BASE_TRAIN, **knobs}, "keys": list(KEY_STUDY_KEYS),
                       "ann_accuracy": rows[0]["ann_accuracy"], "chance": rows[0]["chance"],
                       "converted": rows[0]["converted"], "keys_holding": sum(holds(r) for r in rows), "per_key": rows}
        out.append({**summary_row, **across_keys(rows)})
    return out


def bars_against(report: dict, reference: dict) -> dict:
    """The encrypted SNN's threat models with the bars of (c), (d) taken against ``reference`` (the
    undefended converted SNN's audit entry) instead of the report's own converted parent."""
    return threat_models({**report, "variants": {**report["variants"], "converted_snn": reference}})["encrypted_snn"]


def misalign_study_digits(build_info: dict, per_class: int, iterations: int, fresh: bool, device: str) -> dict:
    """Each MISALIGN_STUDY setting: convert with its knobs, calibrate, encrypt per key, audit with both
    objectives; per-key rows and the mean (standard error across keys) as in the key study."""
    work = WORK / "digits" / "misalign"
    work.mkdir(parents=True, exist_ok=True)
    attack_args = ["--data", "digits", "--per-class", per_class, "--iterations", iterations, *BOTH_OBJECTIVES]
    # the reference: the undefended encrypted SNN and its converted parent, attacked with both objectives
    ref = audit_or_reuse(Path(build_info["paths"]["encrypted"]), WORK / "digits" / "audit_both_objectives",
                         attack_args, device, fresh, {"per_class": per_class, "iterations": iterations})
    reference = ref["variants"]["converted_snn"]
    synth = Path(build_info["paths"]["synthetic"])
    out = {"reference": {"converted": {k: reference.get(k) for k in ("accuracy", *[t[1] for t in THREATS])},
                         "encrypted": {k: ref["variants"]["encrypted_snn"].get(k) for k in ("accuracy", *[t[1] for t in THREATS])},
                         "threat_models": bars_against(ref, reference)},
           "settings": []}
    for label, convert_knobs, train_knobs, keys in MISALIGN_STUDY:
        tag = "".join(c if c.isalnum() else "_" for c in label)
        conv_tag = "_".join(f"{k}{v}" for k, v in convert_knobs.items()) or "plain"  # shared by equal knobs
        conv, cal = work / f"{conv_tag}_converted.pt", work / f"{conv_tag}_calibrated.pt"
        flags = [a for k, v in convert_knobs.items() for a in (f"--{k.replace('_', '-')}", v)]
        if fresh or not conv.exists():
            privsnn("convert", "--model", "digits", "--synthetic", synth, "--timesteps", 4, *DIGITS_CONVERT, *flags,
                    "--out", conv)
        if fresh or not cal.exists() or cal.stat().st_mtime < conv.stat().st_mtime:
            privsnn("calibrate", "--snn", conv, "--synthetic", synth, "--timesteps", 4, "--out", cal)
        rows = []
        for key in keys:
            knobs = {**DIGITS_BASE_TRAIN, **train_knobs, **({} if key is None else {"trapdoor_key": key})}
            run = tag if key is None else f"{tag}_key{key}"
            snn = work / f"{run}.pt"
            if fresh or not snn.exists() or snn.stat().st_mtime < cal.stat().st_mtime:
                train_variant(["--model", "digits"], cal, synth, snn, knobs, device)
            r = audit_or_reuse(snn, work / f"audit_{run}", attack_args, device, fresh,
                               {"per_class": per_class, "iterations": iterations})
            e = r["variants"]["encrypted_snn"]
            row = {"label": label if key is None else f"{label}, key {key}", "convert": convert_knobs, "train": knobs,
                   **{k: e.get(k) for k in KEYS}, "threat_models": bars_against(r, reference),
                   "objectives": {k: e.get(f"{k.replace('_accuracy', '')}_objective") for _, k, _ in THREATS},
                   "c_routes": e.get("snn_inversion_readings_tried"), "c_surrogates": e.get("snn_inversion_distilled"),
                   "converted_accuracy": r["variants"]["converted_snn"]["accuracy"],
                   "ann_accuracy": r["ann_accuracy"], "chance": r["chance"]}
            rows.append(row)
            print(f"misalign {row['label']:<52} SNN {100 * e['accuracy']:.1f}%  " + "  ".join(
                f"({t}) {'n/a' if e.get(k) is None else f'{100 * e[k]:.1f}%'}" for t, k, _ in THREATS), flush=True)
        out["settings"].append({"label": label, "convert": convert_knobs, "train": {**DIGITS_BASE_TRAIN, **train_knobs},
                                "keys": list(keys), "ann_accuracy": rows[0]["ann_accuracy"], "chance": rows[0]["chance"],
                                "keys_holding": sum(holds(r) for r in rows), "per_key": rows, **across_keys(rows)})
    return out


def distil_check_digits(build_info: dict, per_class: int, iterations: int, fresh: bool, device: str) -> dict:
    """Is the distil-then-invert route of attacker (c) a real attacker? The undefended encrypted SNN and
    its converted parent audited with ``--distil always``: per variant, each route's evaluator accuracy,
    the share the SNN itself puts in the target class, and the surrogates' fidelity."""
    args = ["--data", "digits", "--per-class", per_class, "--iterations", iterations, *BOTH_OBJECTIVES,
            "--distil", "always"]
    r = audit_or_reuse(Path(build_info["paths"]["encrypted"]), WORK / "digits" / "audit_distil_always", args, device,
                       fresh, {"per_class": per_class, "iterations": iterations})
    return {name: {"accuracy": e["accuracy"], "routes": e.get("snn_inversion_readings_tried"),
                   "surrogates": {route: {k: d[k] for k in ("start", "n_queries", "rounds", "fidelity", "fidelity_real")}
                                  for route, d in (e.get("snn_inversion_distilled") or {}).items()}}
            for name, e in r["variants"].items() if name != "ann"}


def plot_tradeoff(rows: list[dict], path: Path) -> Path:
    """SNN accuracy (x) against each attacker's success (y, with standard errors), one point per defence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from privatesnn.io_utils import atomic_path

    fig, ax = plt.subplots(figsize=(7, 4.4))
    kept = [(i, r) for i, r in enumerate(rows, 1) if r["accuracy"] > r["chance"] + 0.05]  # drop collapsed runs
    left_out = [str(i) for i, r in enumerate(rows, 1) if r["accuracy"] <= r["chance"] + 0.05]
    for (tm, key, name), marker, color in zip(THREATS, ("x", "o", "^", "s"), ("C0", "C1", "C2", "C3")):
        for converged in (True, False):  # hollow markers: the attack did not reach its goal on the victim
            pts = [(100 * r["accuracy"], 100 * r[key], 100 * (r.get(f"{key}_se") or 0)) for _, r in kept
                   if r.get(key) is not None
                   and (tm not in ((r.get("threat_models") or {}).get("not_converged") or [])) == converged]
            if pts:
                xs, ys, es = zip(*pts)
                ax.errorbar(xs, ys, yerr=es, fmt=marker, color=color, alpha=0.8, capsize=2,
                            label=name if converged else None, mfc=None if converged else "none")
    for i, r in kept:  # row numbers of the table in privacy.md
        ax.annotate(str(i), (100 * r["accuracy"], 100 * r["inversion_accuracy"]), fontsize=6, xytext=(3, -7),
                    textcoords="offset points")
    chance = 100 * rows[0]["chance"]
    ax.axhline(chance + 10, color="gray", ls=":", lw=0.8, label="bar for (a), (b): chance + 10")
    conv = rows[0].get("converted") or {}
    if conv.get("snn_inversion_accuracy"):
        ax.axhline(50 * conv["snn_inversion_accuracy"], color="tab:green", ls="--", lw=0.8,
                   label="bar for (c): half of the converted SNN's")
    ax.axvline(100 * rows[0]["ann_accuracy"] - 2, color="r", ls="--", lw=0.8, label="accuracy bar: ANN - 2 points")
    ax.set_xlabel("encrypted SNN accuracy on real digits test (%)")
    ax.set_ylabel("attack accuracy of inverted images (%)")
    ax.set_title("digits: each defence's accuracy vs each attacker (numbers: rows of privacy.md)\n"
                 "hollow markers: the attack did not converge on the victim (does not count)"
                 + (f"\nnot shown (SNN at chance): {', '.join(left_out)}" if left_out else ""), fontsize=8)
    ax.set_ylim(0, 105)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def _pm(e: dict, key: str) -> str:
    v, se = e.get(key), e.get(f"{key}_se")
    return "n/a" if v is None else f"{100 * v:.1f}%" + ("" if se is None else f" ± {100 * se:.1f}")


def markdown(results: dict) -> str:
    pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    lines = ["# Privacy benchmark (bench/privacy.py)", "",
             "Attack accuracies of the inverted images are scored by an independent evaluator (± standard error, "
             "classes as clusters); chance = 1/classes. Threat models: (a) the paper's attacker (the SNN's weights in "
             "a plain ReLU ANN), (b) rescaling-aware (thresholds and layer scales undone), (c) inversion through the "
             "SNN with surrogate gradients, (d) an attacker with public real images of the classes it does not "
             "attack (inversion started from them, with a VAE prior learnt from them; scored on the lower half of "
             "the classes). See docs/privacy.md.", ""]
    for case, r in results["cases"].items():
        lines += [f"## {case}", "", f"**{r['verdict']}**", "",
                  "| variant | accuracy | weights-as-ANN best (mode) | " + " | ".join(t[2] for t in THREATS) + " |",
                  "|---|---|---|---|---|---|---|"]
        for name, e in r["variants"].items():
            t = f" (T={e['timesteps']})" if e.get("timesteps") else ""
            lines.append(f"| {name} | {pct(e['accuracy'])}{t} | {pct(e['weights_as_ann_accuracy'])} "
                         f"({e['weights_as_ann_mode']}) | " + " | ".join(_pm(e, k) for _, k, _ in THREATS) + " |")
        lines += ["", f"Evaluator: `{Path(r['evaluator']['spec']).name}` ({pct(r['evaluator']['accuracy'])} on the real "
                      f"test data); {r['n_inverted']} inverted images per attack"
                  + (f", each with the objectives {', '.join(r['objectives'])} (the strongest run counts)."
                     if len(r.get("objectives") or []) > 1 else ".")
                  + (f" Prior data: `{r['prior']['data']}` ({r['prior']['n_public_images']} images of classes "
                     f"{r['prior']['public_classes'][0]}-{r['prior']['public_classes'][-1]})." if r.get("prior") else ""), ""]
    rows = results.get("digits_tradeoff")
    if rows:
        lines += ["## digits: defences of the encryption step vs each attacker (encrypted SNN)", "",
                  "All from the same calibrated QCFS SNN (T = 4), 15 epochs at T = 4, lr 1e-3; the row's settings are "
                  "added. Bars: SNN within 2 points of the ANN; (a), (b) <= chance + 10 points; (c), (d) <= half "
                  "of their success against the unencrypted converted SNN (first row's audit). \"did not converge\": "
                  "the attacked model itself put fewer than 75% of that attack's images in their target class, so the "
                  "optimisation failed (e.g. masked gradients) and the low score does not count towards a bar.", "",
                  "| # | defence | SNN acc. | weights-as-ANN | " + " | ".join(t[2] for t in THREATS) + " | bars met |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for i, r in enumerate(rows, 1):
            bars = r.get("threat_models", {}) or {}
            within = r["ann_accuracy"] - r["accuracy"] <= MAX_ACCURACY_DROP + ROUNDING
            met = ", ".join(k for k, v in (bars.get("bars_met") or {}).items() if v) or "none"
            met += "; accuracy" + (" within 2 points" if within else " not within 2 points")
            failed = bars.get("not_converged") or []
            lines.append(f"| {i} | {r['label']} | {pct(r['accuracy'])} | {pct(r['weights_as_ann_accuracy'])} | "
                         + " | ".join(_pm(r, k) + (" (did not converge)" if t in failed else "") for t, k, _ in THREATS)
                         + f" | {met} |")
        conv = rows[0].get("converted") or {}
        lines += ["", "Unencrypted converted SNN (reference for (c), (d)): accuracy " + pct(conv.get("accuracy")) + "; "
                  + ", ".join(f"{t[2]} {pct(conv.get(t[1]))}" for t in THREATS) + ".", "",
                  "![trade-off](privacy_tradeoff_digits.png)", ""]
    studies = results.get("digits_keys")
    if studies:
        keys = ", ".join(map(str, studies[0]["keys"]))
        lines += [f"## digits: the trapdoor over {len(studies[0]['keys'])} keys (keys {keys})", "",
                  "One key's row above says little: whether a class's inversion falls into its trigger depends on the "
                  "draw, and the audit's standard errors are over 10 classes. Here each setting is trained and audited "
                  "once per key (same start and recipe as the table above); mean ± standard error across keys, and "
                  "in brackets how many keys meet that attacker's bar (non-converged attacks do not count).", "",
                  "| setting | SNN acc. | " + " | ".join(t[2] for t in THREATS) + " | keys where every bar holds within 2 points |",
                  "|---|---|---|---|---|---|---|"]
        for s in studies:
            n = len(s["keys"])
            cells = []
            for t, _, _ in THREATS:
                v = s.get(t)
                cells.append("n/a" if not v else f"{100 * v['mean']:.1f} ± {100 * v['se']:.1f} [{v['keys_meeting_bar']}/{n}"
                             + (f"; {v['keys_not_converged']} did not converge" if v["keys_not_converged"] else "") + "]")
            lines.append(f"| {s['label']} | {100 * s['accuracy']['mean']:.1f} ± {100 * s['accuracy']['se']:.1f} | "
                         + " | ".join(cells) + f" | {s['keys_holding']}/{n} |")
        lines += ["", "Per key (SNN accuracy; (a), (b), (c), (d)):", ""]
        for s in studies:
            lines.append(f"- {s['label']}: " + "; ".join(
                f"key {k}: {pct(r['accuracy'])}, " + ", ".join(
                    pct(r.get(key)) + ("*" if t in ((r.get("threat_models") or {}).get("not_converged") or []) else "")
                    for t, key, _ in THREATS) for k, r in zip(s["keys"], s["per_key"])))
        lines += ["", "(* did not converge.)", ""]
    study = results.get("digits_misalign")
    if study:
        ref = study["reference"]
        lines += ["## digits: gradient misalignment (convert --qcfs-misalign, train --misalign)", "",
                  "The SNN's input gradients are turned away from the ANN's while it is fine-tuned and encrypted "
                  "(privatesnn/gradient_alignment.py). Every attack runs with both inversion objectives (logit and "
                  "CE; the stronger converged run counts), the reference too: the undefended converted SNN "
                  f"(accuracy {pct(ref['converted']['accuracy'])}; "
                  + ", ".join(f"{t[2]} {pct(ref['converted'].get(t[1]))}" for t in THREATS)
                  + ") and its encryption without a defence ("
                  + pct(ref["encrypted"]["accuracy"]) + "; " + ", ".join(pct(ref["encrypted"].get(t[1])) for t in THREATS)
                  + "). Bars for (c), (d): half of the undefended converted SNN's. Mean ± standard error across keys, "
                  "in brackets how many keys meet the bar.", "",
                  "| setting | keys | SNN acc. | " + " | ".join(t[2] for t in THREATS) + " | keys where every bar holds within 2 points |",
                  "|---|---|---|---|---|---|---|---|"]
        for s in study["settings"]:
            n = len(s["keys"])
            se = lambda v: "" if v is None else f" ± {100 * v:.1f}"  # noqa: E731
            cells = ["n/a" if not s.get(t) else f"{100 * s[t]['mean']:.1f}{se(s[t]['se'])} [{s[t]['keys_meeting_bar']}/{n}"
                     + (f"; {s[t]['keys_not_converged']} did not converge" if s[t]["keys_not_converged"] else "") + "]"
                     for t, _, _ in THREATS]
            lines.append(f"| {s['label']} | {n} | {100 * s['accuracy']['mean']:.1f}{se(s['accuracy']['se'])} | "
                         + " | ".join(cells) + f" | {s['keys_holding']}/{n} |")
        lines += ["", "Per key (SNN accuracy; (a), (b), (c), (d), with the objective that counted):", ""]
        for s in study["settings"]:
            lines.append(f"- {s['label']}: " + "; ".join(
                ("" if k is None else f"key {k}: ") + f"{pct(r['accuracy'])}, " + ", ".join(
                    pct(r.get(key)) + f" {r['objectives'].get(key) or ''}".rstrip()
                    + ("*" if t in (r["threat_models"].get("not_converged") or []) else "")
                    for t, key, _ in THREATS) for k, r in zip(s["keys"], s["per_key"])))
        lines += ["", "(* did not converge with either objective.)", ""]
        routed = [(s["label"], k, r) for s in study["settings"] for k, r in zip(s["keys"], s["per_key"])
                  if len(r.get("c_routes") or {}) > 1]
        if routed:
            lines += ["Where (c)'s ascent through the SNN stalled, the attacker also inverted ReLU surrogates fitted to "
                      "the SNN's outputs (`privsnn attack --distil auto`; evaluator accuracy [share the SNN itself puts "
                      "in the target class]; surrogate agreement with the SNN on real test images):", ""]
            for label, k, r in routed:
                lines.append(f"- {label}" + ("" if k is None else f", key {k}") + ": " + "; ".join(
                    f"{route} {pct(v['evaluator'])} [{pct(v['self'])}]"
                    + (f", agreement {pct(r['c_surrogates'][route]['fidelity_real'])}"
                       if route in (r.get("c_surrogates") or {}) else "") for route, v in r["c_routes"].items()))
            lines.append("")
    check = results.get("digits_distil_check")
    if check:
        lines += ["## digits: attacker (c)'s surrogate routes on the undefended SNNs (`--distil always`)", "",
                  "Whether distil-then-invert is a real attacker: the bench's undefended SNNs attacked by every route "
                  "(evaluator accuracy [share the SNN itself puts in the target class]; agreement of the surrogate with "
                  "the SNN on held-out queries / real test images).", "",
                  "| variant | accuracy | " + " | ".join(next(iter(check.values()))["routes"] or {}) + " |",
                  "|---|---|" + "---|" * len(next(iter(check.values()))["routes"] or {})]
        for name, c in check.items():
            lines.append(f"| {name} | {pct(c['accuracy'])} | " + " | ".join(
                f"{pct(v['evaluator'])} [{pct(v['self'])}]" + (
                    f"; {pct(c['surrogates'][route]['fidelity'])} / {pct(c['surrogates'][route]['fidelity_real'])}"
                    if route in c["surrogates"] else "") for route, v in (c["routes"] or {}).items()) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default="digits,cifar10", help="comma list: digits, cifar10")
    p.add_argument("--no-tradeoff", action="store_true", help="skip the digits training-knob sweep")
    p.add_argument("--no-key-study", action="store_true", help="skip the digits trapdoor over several keys")
    p.add_argument("--no-misalign-study", action="store_true",
                   help="skip the digits gradient-misalignment defence (with and without the trapdoor)")
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
    p.add_argument("--cifar-defence", default=None, metavar="PT",
                   help="also audit this CIFAR-10 SNN trained with a defence (e.g. `train --trapdoor 0.5` from the "
                        "same start as --cifar-snn), reported as case cifar10_resnet20_defence")
    p.add_argument("--cifar-snn", default=None, metavar="PT",
                   help="audit this trained CIFAR-10 SNN (e.g. the low-latency one) instead of building one")
    p.add_argument("--cifar-objectives", default="logit", metavar="LIST",
                   help="inversion objectives of the CIFAR-10 attacks (privsnn attack --objectives; default logit; "
                        "logit,ce for defences whose logit ascent may stall)")
    p.add_argument("--cifar-tag", default="", metavar="TAG",
                   help="report the CIFAR-10 audit as case cifar10_resnet20_TAG (its own audit folder and PNGs), "
                        "beside the other CIFAR-10 cases of privacy.json instead of replacing them")
    args = p.parse_args()
    set_threads(args.threads)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    results: dict = {"cases": {}, "command": " ".join(sys.argv), "device": args.device}
    t0 = time.time()
    if "digits" in cases:
        info = build("digits", ["--model", "digits"], {"num": 2000, "iters": 300, "batch": 250}, 4, DIGITS_BASE_TRAIN,
                     args.fresh, args.device, convert_extra=DIGITS_CONVERT, calibrate_t=4)
        r = audit(Path(info["paths"]["encrypted"]), WORK / "digits" / "audit",
                  ["--data", "digits", "--per-class", args.digits_per_class, "--iterations", args.digits_iterations],
                  args.device)
        results["cases"]["digits"] = {**summary(r), "artifacts": info}
        for png in ("ann_inversion.png", "converted_snn_inversion.png", "encrypted_snn_inversion.png",
                    "encrypted_snn_snn_inversion.png", "encrypted_snn_prior_inversion.png", "encrypted_snn_relu_inversion.png"):
            src = WORK / "digits" / "audit" / png
            if src.exists():
                shutil.copyfile(src, RESULTS / f"privacy_digits_{png}")
        if not args.no_tradeoff:
            rows = tradeoff_digits(info, args.digits_per_class, args.digits_iterations, args.fresh, args.device)
            results["digits_tradeoff"] = rows
            plot_tradeoff(rows, RESULTS / "privacy_tradeoff_digits.png")
        if not args.no_key_study:
            results["digits_keys"] = key_study_digits(info, args.digits_per_class, args.digits_iterations, args.fresh,
                                                      args.device)
        if not args.no_misalign_study:
            results["digits_distil_check"] = distil_check_digits(info, args.digits_per_class, args.digits_iterations,
                                                                 args.fresh, args.device)
            results["digits_misalign"] = misalign_study_digits(info, args.digits_per_class, args.digits_iterations,
                                                               args.fresh, args.device)
    if "cifar10" in cases:
        if not shared_available():
            print("cifar10: ../shared/data is absent; skipped")
        else:
            from train_cifar_evaluator import ensure_evaluator

            evaluator = args.cifar_evaluator or str(ensure_evaluator())
            model = ["--model", f"resnet20:{RESNET20}", *IMAGENET_NORM]
            if args.cifar_snn:
                info = {"paths": {"encrypted": args.cifar_snn}, "note": "an existing SNN, audited as it is"}
            else:
                info = build("cifar10_resnet20", model,
                             {"num": args.cifar_synth, "iters": args.cifar_synth_iters, "batch": 256}, 32,
                             {"timesteps": args.cifar_train_t, "epochs": args.cifar_epochs}, args.fresh, args.device)
            attack_args = [*model, "--data", CIFAR_TEST, "--evaluator", evaluator, "--per-class", args.cifar_per_class,
                           "--iterations", args.cifar_iterations, "--inversion-timesteps", args.cifar_inversion_t,
                           "--limit", args.cifar_limit, "--prior-data", CIFAR_TRAIN4000,
                           "--objectives", args.cifar_objectives]
            expect = {"per_class": args.cifar_per_class, "iterations": args.cifar_iterations,
                      "timesteps": args.cifar_inversion_t}
            case = "cifar10_resnet20" + (f"_{args.cifar_tag}" if args.cifar_tag else "")
            audit_dir = WORK / "cifar10_resnet20" / ("audit" + (f"_{args.cifar_tag}" if args.cifar_tag else ""))
            r = audit_or_reuse(Path(info["paths"]["encrypted"]), audit_dir, attack_args,
                               args.device, args.fresh, expect)
            results["cases"][case] = {**summary(r), "artifacts": info}
            if args.cifar_defence:
                d = audit_or_reuse(Path(args.cifar_defence), WORK / "cifar10_resnet20" / "audit_defence", attack_args,
                                   args.device, args.fresh, expect)
                results["cases"]["cifar10_resnet20_defence"] = {
                    **summary(d), "artifacts": {"paths": {"encrypted": args.cifar_defence},
                                                "note": "trained with a defence; its settings are in the manifest"}}
            attacked = r["variant"]  # encrypted_snn, or converted_snn for an SNN without an encryption step
            for png in ("ann_inversion.png", f"{attacked}_inversion.png", f"{attacked}_snn_inversion.png",
                        f"{attacked}_prior_inversion.png"):
                src = audit_dir / png
                if src.exists():
                    shutil.copyfile(src, RESULTS / f"privacy_{case.replace('_resnet20', '')}_{png}")
    results["total_seconds"] = round(time.time() - t0, 1)
    run_keys = [f"{c}_{args.cifar_tag}" if c == "cifar10" and args.cifar_tag else c for c in cases]
    previous = RESULTS / "privacy.json"
    if previous.exists():  # keep the other cases' numbers when only some are rerun (read at the end:
        old = read_json(previous)  # another run may have finished meanwhile)
        # an untagged run replaces its cases' old entries; a tagged one (--cifar-tag) adds its own beside them
        rerun = {k for k in old.get("cases", {}) if k.split("_")[0] in cases and not args.cifar_tag}
        merged = {**{k: v for k, v in old.get("cases", {}).items() if k not in rerun}, **results["cases"]}
        results["cases"] = dict(sorted(merged.items(), key=lambda kv: (kv[0].split("_")[0] != "digits", kv[0])))
        for part in ("digits_tradeoff", "digits_keys", "digits_misalign", "digits_distil_check"):
            if part not in results and part in old:
                results[part] = old[part]
        results["runs"] = {**old.get("runs", {}), **{c: {"command": results["command"], "seconds": results["total_seconds"]}
                                                     for c in run_keys}}
    else:
        results["runs"] = {c: {"command": results["command"], "seconds": results["total_seconds"]} for c in run_keys}
    write_results("privacy.json", results)
    from privatesnn.io_utils import atomic_path

    with atomic_path(RESULTS / "privacy.md") as tmp:
        tmp.write_text(markdown(relative_paths(results)))
    for case, r in results["cases"].items():
        print(f"{case}: {r['verdict']}")


if __name__ == "__main__":
    main()
