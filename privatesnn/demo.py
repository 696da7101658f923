"""The `privsnn demo` driver: the whole private pipeline on the embedded digits default.

Every stage is the real subcommand (called in-process), so the demo is also a smoke test of
the command line. Artifacts and reports go to ``--out`` (default ``demo_out/``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .errors import PrivsnnError

EVAL_T = [1, 2, 4, 8, 16]
LOW_T = 4  # the demo's SNN runs at T=4: QCFS fine-tuning, then encryption at that T (see README)


def _run(stage: str, argv: list) -> float:
    from .cli import main

    argv = [str(a) for a in argv]
    print(f"\n== {stage}: privsnn {' '.join(argv)}", file=sys.stderr)
    t0 = time.time()
    rc = main(argv)
    if rc != 0:
        raise SystemExit(f"demo stopped: stage '{stage}' exited with code {rc}")
    return time.time() - t0


def run_demo(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise PrivsnnError(f"--out {out} is a file; the demo needs a folder for its artifacts")
    out.mkdir(parents=True, exist_ok=True)
    quick = args.quick
    n_synth, epochs = (300, 4) if quick else (2000, 10)
    seed = str(args.seed)
    times: dict[str, float] = {}
    ts = ",".join(map(str, EVAL_T))
    synth, snn, private = out / "synth.npz", out / "snn.pt", out / "private.pt"

    times["evaluate ANN"] = _run("evaluate ANN", ["evaluate", "--model", "digits", "--data", "digits",
                                                 "--json", out / "ann.json"])
    times["synthesize"] = _run("synthesize (no real data)", [
        "synthesize", "--model", "digits", "--num", n_synth, "--batch-size", 250 if not quick else 150,
        "--iterations", 200 if not quick else 120, "--out", synth, "--seed", seed, "--overwrite"])
    times["convert"] = _run("convert on synthetic images (QCFS fine-tuning for low latency)", [
        "convert", "--model", "digits", "--synthetic", synth, "--timesteps", LOW_T, "--qcfs-levels", LOW_T,
        "--qcfs-epochs", 6 if quick else 20, "--qcfs-optimizer", "sgd", "--qcfs-lr", 2e-3, "--out", snn])
    calibrated = out / "snn_cal.pt"
    times["calibrate"] = _run(f"calibrate biases for T={LOW_T}", [
        "calibrate", "--snn", snn, "--synthetic", synth, "--timesteps", LOW_T, "--out", calibrated])
    ckpt = out / "private.pt.ckpt.pt"
    ckpt.unlink(missing_ok=True)
    times["train"] = _run(f"train (encrypt weights: BPTT + KD at T={LOW_T}, on the chip's 8-bit weight grid)", [
        "train", "--snn", calibrated, "--teacher", "digits", "--synthetic", synth, "--epochs", epochs, "--timesteps", LOW_T,
        "--lr", 1e-3, "--kd-alpha", 1.0, "--qat", "--out", private, "--seed", seed])
    for name, path in (("converted", snn), ("encrypted", private)):
        times[f"evaluate {name}"] = _run(f"evaluate {name} SNN", [
            "evaluate", "--snn", path, "--model", "digits", "--data", "digits", "--timesteps", ts,
            "--json", out / f"eval_{name}.json"])
    ann = json.loads((out / "ann.json").read_text())
    conv = {r["timesteps"]: r["accuracy"] for r in json.loads((out / "eval_converted.json").read_text())["results"]}
    enc = {r["timesteps"]: r["accuracy"] for r in json.loads((out / "eval_encrypted.json").read_text())["results"]}
    extra = _later_stages(out, private, quick, times)
    print("\nprivsnn demo: digits (real test split, n=%d); no real data was read by synthesize/convert/train"
          % ann["n"])
    print(f"{'model':<28}" + "".join(f"T={t:<7}" for t in EVAL_T))
    print(f"{'ANN (digits_cnn)':<28}{100 * ann['accuracy']:.2f}%")
    print(f"{'converted SNN (synthetic)':<28}" + "".join(f"{100 * conv[t]:<9.2f}" for t in EVAL_T))
    print(f"{'encrypted SNN (trained)':<28}" + "".join(f"{100 * enc[t]:<9.2f}" for t in EVAL_T))
    for line in extra:
        print(line)
    times["report"] = _run("report (one HTML page)", ["report", out, "--out", out / "report.html",
                                                      "--title", "privsnn demo: digits"])
    print("stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()))
    print(f"artifacts and reports in {out}/; open {out / 'report.html'} in a browser")
    return 0


def _later_stages(out: Path, private: Path, quick: bool, times: dict[str, float]) -> list[str]:
    """Audit, energy, export and Lava simulation; each adds a summary line."""
    lines = []
    times["attack"] = _run("privacy audit", [
        "attack", "--snn", private, "--model", "digits", "--data", "digits", "--out", out / "audit",
        "--json", out / "audit.json",
        # the demo inverts 5 images per class (default 8) so the four attackers fit its 3-minute budget
        *(["--iterations", "60", "--per-class", "4"] if quick else ["--per-class", "5"])])
    audit = json.loads((out / "audit.json").read_text())
    lines.append(f"privacy audit: {audit.get('verdict', '(see audit/summary.md)')}")
    times["energy"] = _run("energy", ["energy", "--snn", private, "--model", "digits", "--data", "digits",
                                      "--timesteps", LOW_T, "--out", out / "energy"])
    energy = json.loads((out / "energy" / "energy.json").read_text())
    conv = energy.get("conventions", {})
    ratios = ", ".join(f"{k} {v['ratio']:.1f}x" for k, v in conv.items() if isinstance(v, dict) and v.get("ratio"))
    lines.append(f"energy at T={LOW_T} (ANN/SNN): {ratios}")
    times["export nir"] = _run("export NIR", ["export", "--snn", private, "--target", "nir", "--out", out / "model.nir"])
    times["export lava"] = _run("export Lava", ["export", "--snn", private, "--target", "lava", "--out", out / "lava"])
    from .lava_extra import INSTALL_HINT, lava_missing

    # The whole test split on the integer chip model (Lava's fixed_pt arithmetic, batched), with the
    # first images also run as Lava processes and compared bit for bit where Lava is installed.
    check = 10 if quick else 20
    times["simulate chip"] = _run("simulate on the chip model (all test images; Lava fixed_pt cross-check)", [
        "simulate", "--artifact", out / "lava", "--engine", "reference", "--data", "digits", "--check-lava", check,
        "--json", out / "chip_sim.json"])
    sim = json.loads((out / "chip_sim.json").read_text())
    lines.append(f"chip model (Lava fixed_pt integer arithmetic) on all {sim['n']} test images: accuracy "
                 f"{100 * sim['accuracy']:.1f}%, agreement with the trained SNN {100 * sim['agreement']:.1f}%, "
                 f"{1000 * sim['seconds_per_image']:.1f} ms/image")
    cross = sim.get("lava_cross_check", {})
    no_lava = lava_missing()
    if no_lava is not None:  # the core install: everything but the Lava run
        lines.append(f"Lava cross-check skipped: {no_lava} (it needs the privsnn[lava] extra: {INSTALL_HINT})")
    else:
        verdict = "bit-exact" if cross.get("bit_exact") else "NOT bit-exact"
        lines.append(f"Lava fixed_pt processes on the first {cross.get('images')} images: {verdict} with the chip "
                     f"model ({cross.get('lava_seconds_per_image', 0):.2f} s/image)")
    return lines
