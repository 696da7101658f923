"""Deployment benchmark: SNN -> NIR -> Lava (Loihi-style fixed point), measured on real test images.

For each SNN (digits, CIFAR-10 ResNet-20):
  * NIR round trip: write, read back with type checking, re-import, max |output difference| of
    the SNN in float (target < 1e-5);
  * Lava: the network as Lava processes on the CPU (Loihi2SimCfg), ``fixed_pt`` (bit-accurate
    Loihi arithmetic) on N test images: agreement of its predictions with the trained SNN's
    (target >= 99%), accuracy drop (target <= 0.5 points), seconds per image; ``floating_pt`` on
    the same images (the implementation without quantisation);
  * the bit-accurate integer reference (privatesnn.hw_targets.loihi.reference_fixed; checked bit-exact against
    the Lava run on the same images) on the whole test split, for a larger-sample estimate;
  * Loihi 2 resource mapping.

    python bench/deploy.py                                     # digits + ResNet-20, defaults below
    python bench/deploy.py --digits-snn private.pt --cifar-snn cifar_private.pt --cifar-limit 300

Without --digits-snn the digits SNN is the private deployment SNN made here with the CLI:
synthesize -> convert --reset zero -> train --reset zero --qat (T=16), no real data. Without
--cifar-snn the ResNet-20 SNN is the NON-PRIVATE baseline conversion (calibrated on 256 real
CIFAR-10 training images from ../shared/data), reset by subtraction (deployed with a subtracting
LIF), T=--cifar-timesteps; pass the private SNN (bench/accuracy.py trains it with --qat) to measure
it, e.g. --skip-digits --cifar-snn runs/bench/cifar10_resnet20/private.pt --cifar-timesteps 64.
Writes bench/results/deploy.json. Time on 2 CPU cores: digits ~3 min; ResNet-20 at T=64 ~10 s per
image through Lava (300 images: ~50 min; --cifar-limit 60: ~15 min with the NIR check).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"
RESNET = SHARED / "models" / "resnet20-12fca82f.th"
CIFAR_SPEC = f"npy:{SHARED / 'cifar10' / 'test_x.npy'}:{SHARED / 'cifar10' / 'test_y.npy'}"


def _snn_logits(graph, x, T, batch=100, dtype=torch.float32):
    from privatesnn.snn import SpikingNetwork

    net = SpikingNetwork(graph).to(dtype).eval()
    with torch.no_grad():
        return torch.cat([net(x[i:i + batch].to(dtype), T) for i in range(0, len(x), batch)])


def measure(name: str, graph, data, T: int, n_lava: int, reference_all: bool, chunk: int, tags=("fixed_pt", "floating_pt")):
    from privatesnn.exporters.nir_export import write_nir
    from privatesnn.exporters.nir_import import read_nir_graph
    from privatesnn.hw_targets.lava_sim import run_lava
    from privatesnn.hw_targets.loihi import TARGETS, build_plan, quantize_plan, reference_fixed, resource_map

    out: dict = {"name": name, "timesteps": T, "resets": sorted({n.reset for n in graph.neurons()})}
    graph.meta["timesteps"] = T
    # NIR round trip
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        path = write_nir(graph, Path(tmp) / "m.nir")
        back = read_nir_graph(path)
        xs = data.x[:200]
        diff = float((_snn_logits(graph, xs, T) - _snn_logits(back, xs, T)).abs().max())
        out["nir_round_trip"] = {"images": len(xs), "max_abs_output_diff": diff, "target": "< 1e-5",
                                 "pass": diff < 1e-5, "seconds": time.time() - t0}
    print(f"[{name}] NIR round trip: max |diff| {diff:.3g} on {len(xs)} images", flush=True)
    plan = build_plan(graph, T)
    fixed = quantize_plan(plan)
    out["quantization"] = [{"layer": r["layer"], "threshold_rel_error": r["threshold_rel_error"],
                            "bias_rel_error": r["bias_rel_error"],
                            "weight_rel_l2_error": [w["rel_l2_error"] for w in r["weights"]]} for r in fixed.report()]
    m = resource_map(plan, TARGETS["loihi2"])
    out["loihi2_mapping"] = {k: m[k] for k in ("cores_needed", "fits_one_chip", "chips_needed", "total_neurons",
                                               "total_synapses")}
    n = min(n_lava, len(data))
    x, y = data.x[:n], data.y[:n]
    # the trained SNN (on every image only when the reference runs on every image)
    snn_all = _snn_logits(graph, data.x if reference_all else x, T).argmax(1)
    out["snn_accuracy_measured"] = {"n": len(snn_all), "accuracy": float((snn_all == data.y[:len(snn_all)]).float().mean())}
    snn = snn_all[:n]
    # The SNN's own numerical reproducibility: the same SNN in float64. At low T many images sit on a
    # knife's edge (one spike decides), so any two implementations that are not bit-identical disagree
    # on them; this is the floor against which the chip's agreement with the SNN is read.
    f64 = _snn_logits(graph.copy(), data.x if reference_all else x, T, dtype=torch.float64).argmax(1)
    out["snn_float64_agreement"] = {"n": len(f64), "agreement_with_float32": float((f64 == snn_all).float().mean()),
                                    "accuracy": float((f64 == data.y[:len(f64)]).float().mean())}
    print(f"[{name}] the SNN in float64 vs float32: agreement {out['snn_float64_agreement']['agreement_with_float32']:.4f} "
          f"on {len(f64)} images", flush=True)
    lava = {}
    for tag in tags:
        t0 = time.time()
        res = run_lava(plan, fixed if tag == "fixed_pt" else None, x, tag, chunk=chunk,
                       progress=lambda d, tot: print(f"[{name}] Lava {tag}: {d}/{tot}", flush=True))
        pred = res.predictions
        row = {"n": n, "accuracy": float((pred == y).float().mean()), "snn_accuracy": float((snn == y).float().mean()),
               "agreement": float((pred == snn).float().mean()), "seconds_per_image": (time.time() - t0) / n,
               "tag": tag, "lava_steps": res.steps}
        row["accuracy_drop_points"] = 100 * (row["snn_accuracy"] - row["accuracy"])
        if tag == "fixed_pt":
            ref = reference_fixed(fixed, x)
            row["bit_exact_with_reference"] = bool(np.array_equal(res.raw_sums, ref.numpy()))
            row["targets"] = {"agreement>=0.99": row["agreement"] >= 0.99,
                              "accuracy_drop<=0.5": row["accuracy_drop_points"] <= 0.5}
        lava[tag] = row
        print(f"[{name}] Lava {tag} on {n} images: accuracy {row['accuracy']:.4f} (SNN {row['snn_accuracy']:.4f}), "
              f"agreement {row['agreement']:.4f}, {row['seconds_per_image']:.3f} s/image", flush=True)
    out["lava"] = lava
    if reference_all:
        t0 = time.time()
        preds = torch.cat([reference_fixed(fixed, data.x[i:i + 100]).argmax(1) for i in range(0, len(data), 100)])
        out["fixed_point_reference_all"] = {
            "n": len(data), "accuracy": float((preds == data.y).float().mean()),
            "agreement": float((preds == snn_all).float().mean()),
            "accuracy_drop_points": 100 * float(((snn_all == data.y).float().mean() - (preds == data.y).float().mean())),
            "seconds": time.time() - t0,
            "note": "bit-accurate integer reference of Lava's fixed_pt models (bit-exact with the Lava run above)"}
        print(f"[{name}] fixed-point reference on all {len(data)} images: agreement "
              f"{out['fixed_point_reference_all']['agreement']:.4f}", flush=True)
    return out


def private_digits_for_lava(T: int) -> Path:
    """The deployment path on digits with the CLI: synthetic images, conversion and training for the
    Lava neuron (reset to zero) on the 8-bit weight grid (quantisation-aware). Reused when present."""
    sys.path.insert(0, str(ROOT / "bench"))
    from common import RUNS, privsnn

    work = RUNS / "deploy"
    work.mkdir(parents=True, exist_ok=True)
    synth, snn, private = work / "digits_synth.npz", work / "digits_snn.pt", work / "digits_private_lava.pt"
    if not private.exists():
        if not synth.exists():
            privsnn("synthesize", "--model", "digits", "--num", 2000, "--out", synth)
        privsnn("convert", "--model", "digits", "--synthetic", synth, "--timesteps", T, "--reset", "zero",
                "--out", snn)
        (work / "digits_private_lava.pt.ckpt.pt").unlink(missing_ok=True)
        privsnn("train", "--snn", snn, "--teacher", "digits", "--synthetic", synth, "--epochs", 5, "--timesteps", T,
                "--reset", "zero", "--qat", "--lr", "1e-3", "--out", private)
    return private


def private_digits_low_latency(T: int = 4) -> Path:
    """The low-latency deployment path on digits with the CLI: QCFS fine-tuning (L = T), then
    encryption at that T on the 8-bit weight grid (reset by subtraction: a subtracting LIF on the
    chip). Synthetic images only. Reused when present."""
    sys.path.insert(0, str(ROOT / "bench"))
    from common import RUNS, privsnn

    work = RUNS / "deploy"
    work.mkdir(parents=True, exist_ok=True)
    synth, snn, private = work / "digits_synth.npz", work / f"digits_qcfs_t{T}.pt", work / f"digits_private_t{T}.pt"
    if not private.exists():
        if not synth.exists():
            privsnn("synthesize", "--model", "digits", "--num", 2000, "--out", synth)
        privsnn("convert", "--model", "digits", "--synthetic", synth, "--timesteps", T, "--qcfs-levels", T,
                "--qcfs-epochs", 20, "--qcfs-optimizer", "sgd", "--qcfs-lr", "2e-3", "--out", snn)
        Path(str(private) + ".ckpt.pt").unlink(missing_ok=True)
        privsnn("train", "--snn", snn, "--teacher", "digits", "--synthetic", synth, "--epochs", 15, "--timesteps", T,
                "--lr", "1e-3", "--kd-alpha", 1.0, "--qat", "--out", private)
    return private


def private_cifar_low_latency_qat() -> Path:
    """The accuracy bench's private T = 8 SNN (``runs/bench/cifar10_resnet20/private_low_latency_t8.pt``,
    made by ``python bench/accuracy.py --cases cifar10``), trained 2 more epochs at T = 8 on the chip's
    8-bit grid (``train --qat``, lr 1e-4, same synthetic images). Reused when present."""
    sys.path.insert(0, str(ROOT / "bench"))
    from common import IMAGENET_NORM, RESNET20, RUNS, privsnn

    work = RUNS / "cifar10_resnet20"
    start, out = work / "private_low_latency_t8.pt", work / "private_low_latency_t8_qat.pt"
    if not start.exists():
        raise SystemExit(f"{start} is missing: run `python bench/accuracy.py --cases cifar10` first")
    if not out.exists():
        Path(str(out) + ".ckpt.pt").unlink(missing_ok=True)
        privsnn("train", "--snn", start, "--teacher", f"resnet20:{RESNET20}", *IMAGENET_NORM, "--synthetic",
                work / "synth.npz", "--epochs", 2, "--timesteps", 8, "--batch-size", 32, "--lr", "1e-4",
                "--kd-alpha", 1.0, "--qat", "--out", out)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--digits-snn", default=None)
    p.add_argument("--cifar-snn", default=None)
    p.add_argument("--digits-limit", type=int, default=450, help="digits test images through Lava (default: all 450)")
    p.add_argument("--cifar-limit", type=int, default=300, help="CIFAR-10 test images through Lava (default 300)")
    p.add_argument("--cifar-timesteps", type=int, default=None,
                   help="T for the CIFAR-10 run (default: the artifact's; 64 for the baseline)")
    p.add_argument("--digits-low-latency", type=int, default=None, metavar="T",
                   help="deploy the low-latency digits SNN (QCFS + encryption at T, --qat) made here with the "
                        "CLI, as run 'digits-t<T>', instead of the T=16 one")
    p.add_argument("--cifar-low-latency", action="store_true",
                   help="deploy the accuracy bench's private T = 8 SNN after 2 epochs of --qat (made here, "
                        "reused when present) as run 'cifar10-resnet20-private-t8'")
    p.add_argument("--cifar-name", default=None,
                   help="the run's name in deploy.json (default cifar10-resnet20[-private]; e.g. "
                        "cifar10-resnet20-private-t8 keeps the T=64 run's results beside it)")
    p.add_argument("--digits-name", default=None,
                   help="the digits run's name in deploy.json (default digits, or digits-t<T>; e.g. "
                        "digits-windowed-t3 keeps the other digits runs' results beside it)")
    p.add_argument("--skip-cifar", action="store_true")
    p.add_argument("--skip-digits", action="store_true")
    p.add_argument("--reference-all", default="digits", choices=("digits", "all", "none"),
                   help="also run the integer reference on every test image (default: digits only; "
                        "ResNet-20 at T=64 takes over an hour on 2 cores)")
    p.add_argument("--chunk", type=int, default=50)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "deploy.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    import privatesnn.hw_targets.lava_sim  # noqa: F401  (import Lava before any progress bar fixes the mp context)
    from privatesnn.artifact import load_snn
    from privatesnn.conversion import ConversionSettings, convert
    from privatesnn.data import load_data
    from privatesnn.io_utils import write_json
    from privatesnn.models import load_model

    results = {"benchmark": "deploy", "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "runs": []}
    previous = Path(args.out)
    kept = []  # a run of some cases keeps the other cases' last results
    if previous.exists():
        import json

        kept = json.loads(previous.read_text()).get("runs", [])
    done: list[dict] = []

    def save(run: dict) -> None:
        done.append(run)
        names = {r["name"] for r in done}
        results["runs"] = [r for r in kept if r.get("name") not in names] + done
        sys.path.insert(0, str(ROOT / "bench"))
        from common import relative_paths

        write_json(args.out, relative_paths(results))

    # digits
    if not args.skip_digits:
        name = "digits"
        if args.digits_snn:
            art = load_snn(args.digits_snn)
            g, T, src = art.graph, art.timesteps, args.digits_snn
        elif args.digits_low_latency:
            T, name = args.digits_low_latency, f"digits-t{args.digits_low_latency}"
            path = private_digits_low_latency(T)
            g = load_snn(path).graph
            src = (f"{path.relative_to(ROOT)}: the private low-latency digits SNN: synthesize -> convert "
                   f"--qcfs-levels {T} -> train --qat at T={T}; no real data")
        else:
            T = 16
            path = private_digits_for_lava(T)
            g = load_snn(path).graph
            src = (f"{path}: the private digits SNN for Lava: synthesize -> convert --reset zero -> "
                   f"train --reset zero --qat (5 epochs, T={T}); no real data")
        name = args.digits_name or name
        d = load_data("digits")
        r = measure(name, g, d, T, args.digits_limit, args.reference_all != "none", args.chunk)
        r["snn"] = src
        save(r)
    # CIFAR-10 ResNet-20
    if not args.skip_cifar:
        if not SHARED.is_dir():
            print(f"skipping CIFAR-10: {SHARED} not found", flush=True)
        else:
            data = load_data(CIFAR_SPEC)
            if args.cifar_low_latency:
                args.cifar_snn = str(private_cifar_low_latency_qat())
                args.cifar_timesteps = args.cifar_timesteps or 8
                args.cifar_name = args.cifar_name or "cifar10-resnet20-private-t8"
            if args.cifar_snn:
                art = load_snn(args.cifar_snn)
                g, T, src = art.graph, args.cifar_timesteps or art.timesteps, args.cifar_snn
            else:
                T = args.cifar_timesteps or 64
                m = load_model(f"resnet20:{RESNET}", mean="0.485,0.456,0.406", std="0.229,0.224,0.225")
                xt = torch.from_numpy(np.load(SHARED / "cifar10" / "train4000_x.npy")[:256]).permute(0, 3, 1, 2).float() / 255
                g = convert(m, xt, ConversionSettings(timesteps=T, reset="subtract"))
                src = (f"ResNet-20 NON-PRIVATE baseline conversion (256 real training images), reset=subtract "
                       f"(deployed as a subtracting LIF), T={T}")
            name = args.cifar_name or ("cifar10-resnet20-private" if args.cifar_snn and art.private
                                       else "cifar10-resnet20")
            r = measure(name, g, data, T, args.cifar_limit, args.reference_all == "all", args.chunk,
                        tags=("fixed_pt",))
            r["snn"] = src
            save(r)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
