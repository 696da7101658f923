"""Train the embedded digits models (deterministic, seeded) and write them as package data.

    python scripts/train_digits.py          # writes privatesnn/data/digits_{cnn,mlp}.pt + .json

The only code in the project that reads the digits *training* split. ``digits_cnn`` is the victim
ANN of the demo; ``digits_mlp`` (another architecture, trained with another seed) is the
independent evaluator that scores privacy attacks.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from privatesnn.data import digits_split  # noqa: E402
from privatesnn.io_utils import torch_save, write_json  # noqa: E402
from privatesnn.models import create_model, model_cfg  # noqa: E402
from privatesnn.models.loading import Normalize  # noqa: E402

OUT = ROOT / "privatesnn" / "data"


def shift_augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random +-1 pixel shifts (zero fill): cheap augmentation for 8x8 digits."""
    out = torch.zeros_like(x)
    dx, dy = torch.randint(-1, 2, (2,), generator=gen).tolist()
    src = x[..., max(0, -dy):8 - max(0, dy), max(0, -dx):8 - max(0, dx)]
    out[..., max(0, dy):max(0, dy) + src.shape[-2], max(0, dx):max(0, dx) + src.shape[-1]] = src
    return out


def train(arch: str, seed: int, epochs: int) -> tuple[dict, float]:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    xtr, ytr, xte, yte = (torch.from_numpy(a) for a in digits_split())
    cfg = model_cfg(arch)
    net = create_model(arch)
    norm = Normalize(cfg.mean, cfg.std)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(len(xtr), generator=gen)
        for i in range(0, len(xtr), 64):
            idx = perm[i:i + 64]
            xb = shift_augment(xtr[idx], gen)
            loss = F.cross_entropy(net(norm(xb)), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    net.eval()
    with torch.no_grad():
        acc = float((net(norm(xte)).argmax(1) == yte).float().mean())
    return net.state_dict(), acc


def main() -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    report = {}
    for arch, seed, epochs, fname in (("digits_cnn", 0, 40, "digits_cnn.pt"), ("digits_mlp", 1, 60, "digits_mlp.pt")):
        sd, acc = train(arch, seed, epochs)
        torch_save(OUT / fname, sd)
        report[arch] = {"file": fname, "seed": seed, "epochs": epochs, "test_accuracy": acc}
        print(f"{arch}: held-out accuracy {acc:.4f} -> {OUT / fname}")
    write_json(OUT / "digits_models.json", report)


if __name__ == "__main__":
    main()
