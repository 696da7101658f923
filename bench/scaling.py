"""Training throughput on 1 vs N processes (torchrun, DistributedDataParallel); not a test.

Runs `privsnn train` on the same converted SNN and synthetic set as
  - 1 process with 1 thread, 1 process with N threads (the same cores, one process), and
  - N processes with 1 thread each under `torchrun --nproc_per_node N` (gloo on CPU),
and reports synthetic images per second of training (epoch time only: start-up excluded) and the
largest weight difference between the 1-process and N-process results. With --device cuda it
uses one GPU per process (nccl). Writes bench/results/scaling.json.

    python bench/scaling.py                      # digits, then ResNet-20 if ../shared/data exists
    python bench/scaling.py --cases digits --nproc 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import IMAGENET_NORM, RESNET20, RUNS, privsnn, read_json, shared_available, write_results  # noqa: E402


def prepare(case: str, work: Path) -> tuple[list[str], Path, Path]:
    """(teacher args, synthetic set, converted SNN) for a case, made once and reused."""
    if case == "digits":
        model = ["digits"]
        num, iters = 512, 60
    else:
        model = [f"resnet20:{RESNET20}", *IMAGENET_NORM]
        num, iters = 128, 20
    synth, snn = work / "synth.npz", work / "snn.pt"
    if not synth.exists():
        privsnn("synthesize", "--model", *model, "--num", num, "--iterations", iters, "--batch-size", 128,
                "--out", synth)
    if not snn.exists():
        privsnn("convert", "--model", *model, "--synthetic", synth, "--timesteps", 8, "--out", snn)
    return model, synth, snn


def run_train(launcher: list[str], threads: int, model: list[str], synth: Path, snn: Path, out: Path,
              epochs: int, timesteps: int, batch: int, device: str) -> dict:
    for p in (out, out.with_name(out.name + ".ckpt.pt")):
        p.unlink(missing_ok=True)
    js = out.with_suffix(".json")
    env = dict(os.environ, PRIVSNN_THREADS=str(threads), OMP_NUM_THREADS=str(threads), TQDM_DISABLE="1")
    cmd = [*launcher, "train", "--snn", str(snn), "--teacher", *model, "--synthetic", str(synth),
           "--epochs", str(epochs), "--timesteps", str(timesteps), "--batch-size", str(batch), "--seed", "1",
           "--out", str(out), "--json", str(js), "--device", device]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    hist = read_json(js)["history"]
    seconds = sum(h["seconds"] for h in hist)
    return {"seconds_per_epoch": seconds / len(hist), "images_per_second": None, "history": hist}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default="digits,cifar10")
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    from privatesnn.artifact import load_snn
    from privatesnn.synthesis.store import load_synthetic

    single = [sys.executable, "-m", "privatesnn.cli"]
    multi = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
             "-m", "privatesnn.cli"]
    results = {}
    for case in args.cases.split(","):
        if case == "cifar10" and not shared_available():
            print("cifar10: ../shared/data not found, skipped")
            continue
        work = RUNS / "scaling" / case
        work.mkdir(parents=True, exist_ok=True)
        model, synth, snn = prepare(case, work)
        n_images = len(load_synthetic(synth))
        t, batch = (8, 64) if case == "digits" else (4, 32)
        rows = {}
        for name, launcher, threads in (("1 process x 1 thread", single, 1),
                                        (f"1 process x {args.nproc} threads", single, args.nproc),
                                        (f"{args.nproc} processes x 1 thread (DDP)", multi, 1)):
            out = work / f"{name.split()[0]}p{threads}t.pt"
            r = run_train(launcher, threads, model, synth, snn, out, args.epochs, t, batch, args.device)
            r["images_per_second"] = n_images / r["seconds_per_epoch"]
            r["artifact"] = str(out)
            rows[name] = r
            print(f"{case:8s} {name:28s} {r['seconds_per_epoch']:8.2f} s/epoch {r['images_per_second']:8.1f} img/s")
        a = load_snn(rows["1 process x 1 thread"]["artifact"]).graph
        b = load_snn(rows[f"{args.nproc} processes x 1 thread (DDP)"]["artifact"]).graph
        diff = max(float((x.weight - y.weight).abs().max()) for x, y in zip(a.weighted(), b.weighted()))
        base = rows["1 process x 1 thread"]["images_per_second"]
        results[case] = {"images": n_images, "timesteps": t, "global_batch": batch, "epochs": args.epochs,
                         "device": args.device, "max_weight_diff_1_vs_ddp": diff,
                         "runs": {k: {"seconds_per_epoch": v["seconds_per_epoch"],
                                      "images_per_second": v["images_per_second"],
                                      "speedup_vs_1x1": v["images_per_second"] / base} for k, v in rows.items()}}
        print(f"{case:8s} max |weight difference| 1 process vs DDP: {diff:.2e}")
    print(f"\n{'case':8s} {'run':32s} {'s/epoch':>8s} {'img/s':>8s} {'speed-up':>8s}")
    for case, r in results.items():
        for k, v in r["runs"].items():
            print(f"{case:8s} {k:32s} {v['seconds_per_epoch']:8.2f} {v['images_per_second']:8.1f} "
                  f"{v['speedup_vs_1x1']:7.2f}x")
    write_results("scaling.json", {"cpu_count": os.cpu_count(), "nproc": args.nproc, "cases": results})


if __name__ == "__main__":
    main()
