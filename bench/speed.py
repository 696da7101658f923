"""Simulation speed, privsnn vs SpikingJelly, in one run (not a test; writes bench/results/speed.json).

Same model (the shared ResNet-20), same T, same images, same torch and thread count, one process,
the tools timed in turns at each batch size (one run of each per round, best of --repeats rounds,
so a slow spell of the machine hits all of them):
  * the ANN (images/s);
  * privsnn's SNN (`SpikingNetwork.logits_over_time`, what `evaluate` runs; image-timesteps/s) at
    each batch size of --batch-sizes;
  * SpikingJelly 0.0.0.0.14 (the optional `bench` extra, Python 3.10: `pip install -e .[bench]`):
    its `ann2snn.Converter` (mode "99.9%") on the same checkpoint, run step by step as its
    documentation does, at the same batch sizes;
  * the integer chip model (`simulate --engine reference`: the deployed network, 8-bit weights,
    bit-exact with Lava's fixed_pt processes) at the same batch sizes, image-timesteps/s, with its
    convolutions on the CPU's int8 units (where exact, see hw_targets/int8_conv.py) and, for
    reference, in float32; its neuron update is the fused C kernel where that builds
    (hw_targets/fused_lif.py), and, for reference, the torch passes it replaces (int8 convolutions);
  * the chip model vs Lava's fixed_pt processes, seconds per image (Lava on --lava-images images;
    skipped without the lava extra).
"default batch" is 100 for both (privsnn evaluate's default; the batch SpikingJelly's examples
evaluate with); "best batch" is each tool's fastest batch of the sweep. Ratios come from this run.

    .venv/bin/python bench/speed.py --threads 1                 # the 3.10 + Lava stack, with SpikingJelly
    .venv-core/bin/python bench/speed.py --threads 1            # the core on the newest Python (no SJ)

Run one at a time on an idle machine: two busy processes make both slow. SpikingJelly's converter
is calibrated on 512 real training images from ../shared/data when present (its own recipe; speed
does not depend on the weights), privsnn's SNN on uniform-noise images.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import (IMAGENET_MEAN, IMAGENET_STD, RESNET20, RESULTS, SHARED, relative_paths, set_threads,  # noqa: E402
                    shared_available, speed_workload)


def _best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _best_of_interleaved(fns: dict, repeats: int) -> dict:
    """Best seconds of each of ``fns``, timed in turns (one run of each per round): a slow spell of a
    shared machine then hits every tool alike instead of the one whose turn it was."""
    best = {key: float("inf") for key in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            best[key] = min(best[key], _best_of(fn, 1))
    return best


def spikingjelly_resnet20(checkpoint: Path, calib, mean, std):
    """The shared ResNet-20 as SpikingJelly's ann2snn converts it (None when SpikingJelly is missing)."""
    try:
        from spikingjelly.activation_based import ann2snn
    except ImportError as e:
        print(f"SpikingJelly not installed ({e}); `pip install -e .[bench]` on Python 3.10", flush=True)
        return None
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Block(nn.Module):
        def __init__(s, i, o, st):
            super().__init__()
            s.conv1, s.bn1 = nn.Conv2d(i, o, 3, st, 1, bias=False), nn.BatchNorm2d(o)
            s.conv2, s.bn2 = nn.Conv2d(o, o, 3, 1, 1, bias=False), nn.BatchNorm2d(o)
            s.r1, s.r2 = nn.ReLU(), nn.ReLU()
            s.pad = (o - i) // 2 if (st != 1 or i != o) else None

        def forward(s, x):
            out = s.bn2(s.conv2(s.r1(s.bn1(s.conv1(x)))))
            sc = x if s.pad is None else F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, s.pad, s.pad))
            return s.r2(out + sc)

    class R20(nn.Module):
        def __init__(s):
            super().__init__()
            s.conv1, s.bn1, s.r = nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
            blocks, i = [], 16
            for o, st in [(16, 1), (32, 2), (64, 2)]:
                for k in range(3):
                    blocks.append(Block(i, o, st if k == 0 else 1))
                    i = o
            s.layers, s.pool, s.linear = nn.Sequential(*blocks), nn.AdaptiveAvgPool2d(1), nn.Linear(64, 10)

        def forward(s, x):
            h = s.r(s.bn1(s.conv1((x - mean) / std)))
            return s.linear(torch.flatten(s.pool(s.layers(h)), 1))

    sd = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    m = R20()
    names = [k for k in m.state_dict() if not k.endswith("num_batches_tracked")]
    src = [v for k, v in sd.items() if not k.endswith("num_batches_tracked")]
    m.load_state_dict(dict(zip(names, src)), strict=False)
    m.eval()
    dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(calib, torch.zeros(len(calib))), batch_size=128)
    return ann2snn.Converter(mode="99.9%", dataloader=dl)(m).eval()


def spikingjelly_run(snn, x, T: int, batch: int):
    """One SpikingJelly pass over ``x`` (to be timed)."""
    import torch
    from spikingjelly.activation_based import functional

    def run():
        with torch.no_grad():
            for i in range(0, len(x), batch):
                functional.reset_net(snn)
                acc = 0
                for _ in range(T):
                    acc = acc + snn(x[i:i + batch])
    return run


def chip_vs_lava(fixed, x, lava_images: int) -> dict:
    """Seconds per image of the integer chip model (batch 100) and of Lava fixed_pt, and whether
    their integer outputs agree on the images Lava ran."""
    import numpy as np

    from privatesnn.lava_extra import lava_available
    from privatesnn.simulation import run_chip_model

    chip = run_chip_model(fixed, x, 100, progress=False)
    out = {"images": len(x), "chip_model_seconds_per_image": chip.seconds / len(x)}
    if lava_available() and lava_images > 0:
        from privatesnn.hw_targets.lava_sim import run_lava

        res = run_lava(fixed.plan, fixed, x[:lava_images], "fixed_pt", chunk=lava_images)
        out.update(lava_images=lava_images, lava_seconds_per_image=res.seconds / lava_images,
                   bit_exact=bool(np.array_equal(res.raw_sums, chip.sums[:lava_images])))
        out["speedup"] = out["lava_seconds_per_image"] / out["chip_model_seconds_per_image"]
    else:
        out["lava"] = "skipped (the privsnn[lava] extra is not installed)"
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--timesteps", type=int, default=32)
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--batch-sizes", default="5,25,50,100,200")
    p.add_argument("--default-batch", type=int, default=100)
    p.add_argument("--repeats", type=int, default=2, help="best of N timed runs per setting")
    p.add_argument("--lava-images", type=int, default=3, help="images through Lava for the chip-model comparison")
    p.add_argument("--skip-spikingjelly", action="store_true")
    args = p.parse_args()
    set_threads(args.threads)
    import numpy as np
    import torch

    from privatesnn.snn import SpikingNetwork

    torch.set_grad_enabled(False)
    T = args.timesteps
    loaded, x, graph = speed_workload(args.images, T)
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    ann = loaded.module().eval()
    net = SpikingNetwork(graph).eval()
    batches = [int(v) for v in args.batch_sizes.split(",")]
    if args.default_batch not in batches:
        batches.append(args.default_batch)
    n = len(x)
    ann_s = _best_of(lambda: [ann(x[i:i + 100]) for i in range(0, n, 100)], args.repeats)
    print(f"ANN: {n / ann_s:.0f} images/s", flush=True)
    rows = []
    sj = None
    if shared_available() and not args.skip_spikingjelly:
        t = torch.tensor
        calib_path = SHARED / "cifar10" / "train4000_x.npy"
        calib = torch.from_numpy(np.load(calib_path)[:512]).permute(0, 3, 1, 2).float() / 255
        sj = spikingjelly_resnet20(RESNET20, calib, t(mean).view(1, 3, 1, 1), t(std).view(1, 3, 1, 1))
    from privatesnn.hw_targets.int8_conv import int8_conv_exact
    from privatesnn.hw_targets.loihi import build_plan, quantize_plan
    from privatesnn.simulation import run_chip_model

    fixed = quantize_plan(build_plan(graph, T))
    int8 = int8_conv_exact()
    for b in batches:
        fns = {"privsnn": lambda: [net.logits_over_time(x[i:i + b], [T]) for i in range(0, n, b)]}
        for key, use_int8, fused in (("chip_int8", True, None), ("chip_float32", False, None),
                                     ("chip_int8_torch_update", True, False)):
            if not use_int8 or int8:
                fns[key] = lambda use_int8=use_int8, fused=fused: run_chip_model(fixed, x, b, progress=False,
                                                                                int8=use_int8, fused=fused)
        if sj is not None:
            fns["spikingjelly"] = spikingjelly_run(sj, x, T, b)
        seconds = _best_of_interleaved(fns, args.repeats)
        row = {"batch": b, **{f"{key}_image_timesteps_per_s": n * T / s for key, s in seconds.items()}}
        if sj is not None:
            row["ratio"] = row["privsnn_image_timesteps_per_s"] / row["spikingjelly_image_timesteps_per_s"]
            if int8:
                row["chip_int8_ratio"] = row["chip_int8_image_timesteps_per_s"] / row["spikingjelly_image_timesteps_per_s"]
        rows.append(row)
        print(f"batch {b:>4}: privsnn {row['privsnn_image_timesteps_per_s']:7.0f}"
              + (f"  chip model int8 {row['chip_int8_image_timesteps_per_s']:7.0f}" if int8 else "")
              + f"  chip model float32 {row['chip_float32_image_timesteps_per_s']:7.0f}"
              + (f"  chip model int8 + torch neuron passes {row['chip_int8_torch_update_image_timesteps_per_s']:7.0f}"
                 if int8 else "")
              + (f"  SpikingJelly {row['spikingjelly_image_timesteps_per_s']:7.0f}  ratio {row['ratio']:.2f}x"
                 + (f" (chip int8 {row['chip_int8_ratio']:.2f}x)" if int8 else "")
                 if sj is not None else "") + "  image-timesteps/s", flush=True)
    best_p = max(rows, key=lambda r: r["privsnn_image_timesteps_per_s"])
    default = next(r for r in rows if r["batch"] == args.default_batch)
    summary = {"default_batch": args.default_batch,
               "privsnn_default": default["privsnn_image_timesteps_per_s"],
               "privsnn_best": best_p["privsnn_image_timesteps_per_s"], "privsnn_best_batch": best_p["batch"],
               "chip_int8_exact_on_this_cpu": int8}
    chip_key = "chip_int8_image_timesteps_per_s" if int8 else "chip_float32_image_timesteps_per_s"
    best_c = max(rows, key=lambda r: r[chip_key])
    from privatesnn.hw_targets.fused_lif import fused_lif_available

    summary.update(chip_engine="int8" if int8 else "float32", chip_fused_neuron_update=fused_lif_available(),
                   chip_default=default[chip_key],
                   chip_best=best_c[chip_key], chip_best_batch=best_c["batch"])
    if sj is not None:
        best_s = max(rows, key=lambda r: r["spikingjelly_image_timesteps_per_s"])
        summary.update(spikingjelly_default=default["spikingjelly_image_timesteps_per_s"],
                       spikingjelly_best=best_s["spikingjelly_image_timesteps_per_s"],
                       spikingjelly_best_batch=best_s["batch"],
                       ratio_at_default_batch=default["ratio"],
                       ratio_best_vs_best=summary["privsnn_best"] / best_s["spikingjelly_image_timesteps_per_s"],
                       chip_ratio_at_default_batch=default[chip_key] / default["spikingjelly_image_timesteps_per_s"],
                       chip_ratio_best_vs_best=best_c[chip_key] / best_s["spikingjelly_image_timesteps_per_s"])
        print(f"privsnn / SpikingJelly: {summary['ratio_at_default_batch']:.2f}x at the default batch "
              f"({args.default_batch}), {summary['ratio_best_vs_best']:.2f}x best vs best "
              f"(batches {best_p['batch']} / {best_s['batch']})", flush=True)
        print(f"chip model ({summary['chip_engine']}) / SpikingJelly: {summary['chip_ratio_at_default_batch']:.2f}x at "
              f"the default batch, {summary['chip_ratio_best_vs_best']:.2f}x best vs best (batches "
              f"{best_c['batch']} / {best_s['batch']})", flush=True)
    chip = chip_vs_lava(fixed, x[:100], args.lava_images)
    print(f"chip model: {chip['chip_model_seconds_per_image'] * 1000:.0f} ms/image"
          + (f"; Lava fixed_pt {chip['lava_seconds_per_image']:.2f} s/image ({chip['speedup']:.0f}x), "
             f"bit-exact {chip['bit_exact']}" if "speedup" in chip else f"; Lava {chip.get('lava')}"), flush=True)
    stack = f"python {platform.python_version()}, torch {torch.__version__.split('+')[0]}"
    entry = {"model": loaded.describe().get("arch", loaded.spec), "timesteps": T, "images": n,
             "threads": args.threads, "ann_images_per_s": n / ann_s, "snn": rows, "summary": summary,
             "chip_model_vs_lava": chip, "spikingjelly": "0.0.0.0.14" if sj is not None else None,
             "command": " ".join(sys.argv)}
    path = RESULTS / "speed.json"
    results = json.loads(path.read_text()) if path.exists() else {"stacks": {}}
    results["stacks"][stack] = entry
    from privatesnn.io_utils import write_json

    write_json(path, relative_paths(results))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
