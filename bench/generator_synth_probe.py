"""#11 probe: synthetic images from a generator trained against the frozen ANN (no real data).

Pixel-space BN-statistics inversion (`privsnn synthesize`) optimises every image on its own; the
data-free distillation literature gets its best students from a *generator* trained against the
teacher instead (DAFL, Chen et al. ICCV 2019; CMI, Fang et al. IJCAI 2021; Fast-DFKD, Fang et al.
AAAI 2022): a convolutional generator's own structure is an image prior, and a bank of images taken
from it at many points of its training is more varied than images optimised one by one. Here a small
class-conditional generator G(z, y) is trained with the same loss as the pixel inversion (CE to y +
BN-statistics distance + TV, the teacher's input jittered and flipped), and every ``--bank-every``
steps after ``--warmup`` its batch goes into the bank written as a synthetic set (npz, the format
`privsnn synthesize` writes, so `bench/data_bound_probe.py` and `bench/synthetic_realism.py` read it).

    python bench/generator_synth_probe.py --steps 2400 --num 2048 --out gen.npz
"""
import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from common import IMAGENET_MEAN, IMAGENET_STD, RESNET20, set_threads  # noqa: E402
from privatesnn.io_utils import write_json  # noqa: E402
from privatesnn.models import load_model  # noqa: E402
from privatesnn.synthesis.bn_inversion import BNInversionLoss  # noqa: E402
from privatesnn.synthesis.driver import target_agreement  # noqa: E402
from privatesnn.synthesis.store import save_preview, save_synthetic  # noqa: E402


class ConditionalGenerator(nn.Module):
    """DAFL's CIFAR generator (linear -> 2 x (upsample, conv, BN, LeakyReLU) -> conv), conditioned by
    multiplying the noise with a learnt class embedding; sigmoid output = pixels in [0, 1]."""

    def __init__(self, num_classes: int, nz: int = 128, ngf: int = 32, size: int = 32, channels: int = 3):
        super().__init__()
        self.start = size // 4
        self.embed = nn.Embedding(num_classes, nz)
        self.project = nn.Linear(nz, 2 * ngf * self.start ** 2)
        self.body = nn.Sequential(
            nn.BatchNorm2d(2 * ngf),
            nn.Upsample(scale_factor=2), nn.Conv2d(2 * ngf, 2 * ngf, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * ngf), nn.LeakyReLU(0.2),
            nn.Upsample(scale_factor=2), nn.Conv2d(2 * ngf, ngf, 3, padding=1, bias=False),
            nn.BatchNorm2d(ngf), nn.LeakyReLU(0.2),
            nn.Conv2d(ngf, channels, 3, padding=1), nn.Sigmoid())

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.project(z * self.embed(y))
        return self.body(h.view(z.shape[0], -1, self.start, self.start))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=2400)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--bn", type=float, default=0.5, help="BN-statistics weight (as synthesize's)")
    p.add_argument("--tv", type=float, default=30.0, help="TV weight (as synthesize's)")
    p.add_argument("--ngf", type=int, default=32)
    p.add_argument("--nz", type=int, default=128)
    p.add_argument("--warmup", type=int, default=400, help="steps before images enter the bank")
    p.add_argument("--num", type=int, default=2048, help="bank size (images written)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    set_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    loaded = load_model(f"resnet20:{RESNET20}", mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))
    teacher = loaded.module().eval()
    for q in teacher.parameters():
        q.requires_grad_(False)
    k = loaded.num_classes
    c, h, w = loaded.input_shape
    g = ConditionalGenerator(k, args.nz, args.ngf, h, c)
    opt = torch.optim.Adam(g.parameters(), lr=args.lr, betas=(0.5, 0.999))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.steps)
    bank_batches = -(-args.num // args.batch_size)
    every = max(1, (args.steps - args.warmup) // bank_batches)
    bank_x, bank_y, log = [], [], []
    y = torch.zeros(args.batch_size, dtype=torch.long)
    loss_fn = BNInversionLoss(teacher, loaded.net, y, args.bn, args.tv, 0.0)
    t0 = time.time()
    with loss_fn, tqdm(range(args.steps), desc="generator", dynamic_ncols=True, mininterval=5) as bar:
        for step in bar:
            y = torch.arange(args.batch_size) % k
            y = y[torch.randperm(args.batch_size, generator=gen)]
            loss_fn.labels = y
            x = g(torch.randn(args.batch_size, args.nz, generator=gen), y)
            dx, dy = torch.randint(-2, 3, (2,), generator=gen).tolist()
            xin = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
            if torch.rand((), generator=gen).item() < 0.5:
                xin = torch.flip(xin, dims=(3,))
            loss, logits = loss_fn(xin)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if step >= args.warmup and (step - args.warmup) % every == 0 and len(bank_x) < bank_batches:
                bank_x.append(x.detach())
                bank_y.append(y)
            if step % 50 == 0 or step == args.steps - 1:
                acc = float((logits.argmax(1) == y).float().mean())
                log.append({"step": step, "loss": round(float(loss), 4), "batch_target_acc": acc})
                bar.set_postfix_str(f"loss {float(loss):.3f} acc {acc:.2f} bank {len(bank_x)}", refresh=False)
    g.eval()
    with torch.no_grad():  # top up from the final generator if the bank is short
        while len(bank_x) < bank_batches:
            y = torch.arange(args.batch_size) % k
            bank_x.append(g(torch.randn(args.batch_size, args.nz, generator=gen), y))
            bank_y.append(y)
    images, labels = torch.cat(bank_x)[:args.num], torch.cat(bank_y)[:args.num]
    agree, conf = target_agreement(teacher, images, labels, torch.device("cpu"))
    settings = {k2: v for k2, v in vars(args).items() if k2 not in ("out", "threads")}
    results = {"target_agreement": agree, "mean_target_confidence": conf, "seconds": round(time.time() - t0, 1),
               "bank_every": every}
    meta = {"method": "generator-probe", "model": loaded.describe(), "num_classes": k, "input_shape": [c, h, w],
            "settings": settings, "results": results, "real_data_read": False}
    save_synthetic(args.out, images, labels, meta)
    save_preview(Path(args.out).with_suffix(".png"), images, labels, k)
    write_json(Path(args.out).with_suffix(".log.json"), {**meta, "log": log})  # per-50-step loss and target accuracy
    print(json.dumps(results))


if __name__ == "__main__":
    main()
