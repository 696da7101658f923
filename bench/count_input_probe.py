"""Probe: could the image enter a T-step SNN as binary spikes instead of a direct (analog) current?

Counted over every timestep, the direct-coded image convolution of a windowed ResNet-20 at T = 6 is
a third of the SNN's energy: its 3 x 3 x 3 -> 16 MACs run at every step (docs/low_latency.md). A
binary input would make them accumulates, but a pixel then carries at most T + 1 levels: each
fires round(x T) spikes in its window (a windowed first layer sums its window, so only the count
matters). This probe measures what that quantisation costs the ANN, before and after distillation
on the synthetic images with the quantised input (no real data in the fine-tuning; the real test
images only score):

    python bench/count_input_probe.py --levels 6,8 --epochs 12

Prints a table and writes bench/results/count_input_probe.json.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESNET20, SHARED, set_threads, shared_available, write_results  # noqa: E402

IMAGENET = dict(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])


def accuracy(net, normalize, x, y, levels: int | None) -> float:
    xq = x if levels is None else torch.round(x * levels) / levels
    net.eval()
    with torch.no_grad():
        return float((net(normalize(xq)).argmax(1) == y).float().mean())


def distil(teacher, normalize, synth: torch.Tensor, levels: int, epochs: int, seed: int):
    """KD (tempered KL, T = 4) of a copy of the ANN fed the quantised image, the teacher the full one;
    Adam 1e-4 with cosine decay, random flips and shifts of up to 3 pixels."""
    torch.manual_seed(seed)
    student = copy.deepcopy(teacher).train()
    for q in student.parameters():  # the teacher's are frozen, and deepcopy keeps that
        q.requires_grad_(True)
    opt = torch.optim.Adam(student.parameters(), 1e-4)
    steps = epochs * -(-len(synth) // 128)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        student.train()
        for i in range(0, len(synth), 128):
            b = synth[torch.randperm(len(synth), generator=gen)[:128]]
            if float(torch.rand((), generator=gen)) < 0.5:
                b = b.flip(3)
            dy, dx = torch.randint(-3, 4, (2,), generator=gen).tolist()
            b = torch.roll(b, (dy, dx), (2, 3))
            with torch.no_grad():
                target = teacher(normalize(b))
            out = student(normalize(torch.round(b * levels) / levels))
            loss = F.kl_div(F.log_softmax(out / 4, 1), F.softmax(target / 4, 1), reduction="batchmean") * 16
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return student


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--levels", default="6,8", help="comma list of input levels (T of a count-coded input)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--synthetic", default="runs/bench/cifar10_resnet20/synth.npz",
                   help="the accuracy bench's synthetic set (privsnn synthesize)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="count_input_probe.json")
    args = p.parse_args()
    try:
        levels = [int(v) for v in args.levels.split(",") if v.strip()]
    except ValueError:
        p.error(f"--levels must be a comma list of integers, got {args.levels!r}")
    if not levels or min(levels) < 1 or args.epochs < 1:
        p.error("--levels must be >= 1 and --epochs >= 1")
    if not shared_available():
        raise SystemExit("bench/count_input_probe.py: ../shared/data is absent (real CIFAR-10 test images, ResNet-20)")
    if not Path(args.synthetic).is_file():
        raise SystemExit(f"bench/count_input_probe.py: no synthetic set at {args.synthetic} (run bench/accuracy.py "
                         "or privsnn synthesize first)")
    set_threads(args.threads)
    from privatesnn.api import load_model
    from privatesnn.synthesis import load_synthetic

    model = load_model(f"resnet20:{RESNET20}", **IMAGENET)
    teacher, normalize = model.net.eval(), model.normalize
    for q in teacher.parameters():
        q.requires_grad_(False)
    x = torch.tensor(np.load(SHARED / "cifar10" / "test_x.npy")).permute(0, 3, 1, 2).float() / 255
    y = torch.tensor(np.load(SHARED / "cifar10" / "test_y.npy"))
    synth = load_synthetic(args.synthetic).images
    t0 = time.time()
    rows = [{"levels": None, "ann": accuracy(teacher, normalize, x, y, None)}]
    for L in levels:
        student = distil(teacher, normalize, synth, L, args.epochs, args.seed)
        rows.append({"levels": L, "ann": accuracy(teacher, normalize, x, y, L),
                     "distilled": accuracy(student, normalize, x, y, L)})
    print("\n| image input | ANN | ANN distilled on synthetic images with that input |")
    print("|---|---|---|")
    for r in rows:
        name = "full 8-bit (direct)" if r["levels"] is None else f"{r['levels'] + 1} levels (count-coded, T = {r['levels']})"
        print(f"| {name} | {100 * r['ann']:.2f}% | " + (f"{100 * r['distilled']:.2f}% |" if "distilled" in r else "- |"))
    write_results(args.out, {"command": " ".join(sys.argv), "epochs": args.epochs, "synthetic": args.synthetic,
                             "test_images": len(y), "rows": rows, "seconds": round(time.time() - t0, 1)})


if __name__ == "__main__":
    main()
