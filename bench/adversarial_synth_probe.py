"""#11 probe: synthetic images where the SNN student disagrees with its ANN teacher (not a test).

Adaptive DeepInversion (Yin et al., CVPR 2020, "competition" term; the data-free adversarial
distillation of Fang et al. 2019 in the same spirit): BN-statistics inversion of the teacher (as
`privsnn synthesize`) plus ``--compete`` x (1 - JS(teacher || student)), so the images stay
teacher-typical while the student is pushed to answer differently. The student is a private SNN
artifact, seen either through its L-step staircase (`--proxy staircase`, `SpikingNetwork.rate_limit(x,
levels=T)`: one static pass, straight-through gradients; after BPTT with learnt neurons it scores as
the spiking network does) or through its spiking dynamics at T steps (`--proxy snn`, surrogate
gradients, about T times dearer). `--init` warm-starts from an existing synthetic set (each image is
moved towards a disagreement from where it is), or starts from smooth noise as `synthesize` does.

Reads no real data. Writes a synthetic set (`privsnn train --synthetic` reads it) and prints the
student's agreement with the teacher on the new images before and after.

    python bench/adversarial_synth_probe.py --student private_t8.pt --init synth.npz --iterations 40 --out adv.npz
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from common import IMAGENET_MEAN, IMAGENET_STD, RESNET20, set_threads  # noqa: E402
from privatesnn.artifact import load_snn  # noqa: E402
from privatesnn.models import load_model  # noqa: E402
from privatesnn.snn import SpikingNetwork  # noqa: E402
from privatesnn.synthesis.bn_inversion import BNInversionLoss  # noqa: E402
from privatesnn.synthesis.driver import balanced_labels, init_images, make_config  # noqa: E402
from privatesnn.synthesis.store import load_synthetic, save_synthetic  # noqa: E402

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--student", required=True, help="private SNN artifact")
p.add_argument("--proxy", choices=["staircase", "snn"], default="staircase")
p.add_argument("--timesteps", type=int, default=8)
p.add_argument("--init", default=None, help="synthetic set to start from (default: smooth noise)")
p.add_argument("--num", type=int, default=2048)
p.add_argument("--iterations", type=int, default=40)
p.add_argument("--lr", type=float, default=0.02)
p.add_argument("--compete", type=float, default=10.0, help="weight of the competition term 1 - JS(teacher, student)")
p.add_argument("--batch-size", type=int, default=256)
p.add_argument("--seed", type=int, default=5)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--out", required=True)
args = p.parse_args()
set_threads(args.threads)
torch.manual_seed(args.seed)
loaded = load_model(f"resnet20:{RESNET20}", mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))
teacher = loaded.module().eval()
for q in teacher.parameters():
    q.requires_grad_(False)
net = SpikingNetwork(load_snn(args.student).graph, args.timesteps)
for q in net.parameters():
    q.requires_grad_(False)
cfg = make_config(loaded, args.num, iterations=args.iterations, seed=args.seed)
gen = torch.Generator().manual_seed(args.seed)
if args.init:
    start = load_synthetic(args.init)
    pick = torch.randperm(len(start), generator=gen)[:args.num]
    images, labels = start.images[pick].clone(), start.labels[pick].clone()
else:
    labels = balanced_labels(args.num, loaded.num_classes, args.seed)
    images = init_images(cfg, (args.num, *loaded.input_shape), gen)


def student_logits(x: torch.Tensor) -> torch.Tensor:
    if args.proxy == "staircase":
        return net.rate_limit(x, levels=args.timesteps)
    net.train()  # the surrogate-gradient path
    return net(x, args.timesteps)


def js_divergence(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    pa, pb = F.softmax(a, 1), F.softmax(b, 1)
    m = (0.5 * (pa + pb)).clamp_min(1e-8).log()
    return 0.5 * (F.kl_div(m, pa, reduction="batchmean") + F.kl_div(m, pb, reduction="batchmean"))


@torch.no_grad()
def agreement(x: torch.Tensor) -> float:
    net.eval()
    hits = 0
    for i in range(0, len(x), 256):
        hits += int((net(x[i:i + 256], args.timesteps).argmax(1) == teacher(x[i:i + 256]).argmax(1)).sum())
    return hits / len(x)


before = agreement(images)
out = []
t0 = time.time()
bar = tqdm(total=cfg.num_batches * args.iterations, desc="adversarial synthesis")
for b in range(cfg.num_batches):
    sl = slice(b * args.batch_size, (b + 1) * args.batch_size)
    y = labels[sl]
    x = images[sl].clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.iterations)
    with BNInversionLoss(teacher, loaded.net, y, cfg.r_feature, cfg.tv, cfg.l2) as inv:
        for it in range(args.iterations):
            dx, dy = torch.randint(-cfg.jitter, cfg.jitter + 1, (2,), generator=gen).tolist()
            xin = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
            if torch.rand((), generator=gen).item() < 0.5:
                xin = torch.flip(xin, dims=(3,))
            loss, t_logits = inv(xin)
            js = js_divergence(t_logits, student_logits(xin))
            total = loss + args.compete * (1.0 - js)
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                x.clamp_(0.0, 1.0)
            bar.update(1)
            bar.set_postfix_str(f"batch {b + 1} inv {loss.item():.3f} js {js.item():.3f}", refresh=False)
    out.append(x.detach())
bar.close()
images = torch.cat(out)
after = agreement(images)
with torch.no_grad():
    t_hit = float((torch.cat([teacher(images[i:i + 256]).argmax(1) for i in range(0, len(images), 256)]) == labels)
                  .float().mean())
meta = {"method": "bn-inversion+competition", "student": Path(args.student).name, "proxy": args.proxy,
        "timesteps": args.timesteps, "compete": args.compete, "iterations": args.iterations, "lr": args.lr,
        "init": Path(args.init).name if args.init else "smooth noise", "seed": args.seed,
        "input_shape": list(loaded.input_shape), "num_classes": loaded.num_classes, "real_data_read": False,
        "model": {k: v for k, v in loaded.describe().items() if k != "spec"},
        "student_agreement_before": before, "student_agreement_after": after, "teacher_target_agreement": t_hit,
        "seconds": round(time.time() - t0)}
save_synthetic(args.out, images, labels, meta)
print({k: meta[k] for k in ("student_agreement_before", "student_agreement_after", "teacher_target_agreement",
                            "seconds")}, flush=True)
