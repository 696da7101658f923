"""Train the independent CIFAR-10 evaluator that scores the privacy attacks (bench only).

The audit needs a classifier of *another architecture* than the victim (the shared ResNet-20) to
judge whether an inverted image shows its class. This trains a small plain CNN (VGG-style: 3 conv
blocks with BatchNorm and max pooling, one hidden FC; no residuals, ~0.29 M parameters) on the
4000 real CIFAR-10 training images in ``../shared/data/cifar10/train4000_*`` (read in place, never
copied), with random crops and flips, on the CPU in a few minutes. It takes raw pixels in [0, 1]
(normalisation is learnt by the first BatchNorm) and is exported to ONNX, so the audit loads it as
``--evaluator PATH.onnx`` without any new architecture in the package registry.

Expect ~55-60% accuracy on ``test_*`` (4000 training images only): weaker than the victim, so the
attack accuracies it gives are a lower bound on what a stronger judge would see; the report
prints the evaluator's own real-data accuracy next to them.

    python bench/train_cifar_evaluator.py                 # -> bench/results/cifar10_evaluator.onnx
    python bench/train_cifar_evaluator.py --epochs 40 --out runs/bench/privacy/cifar10_evaluator.onnx
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import RESULTS, SHARED, set_threads  # noqa: E402

DEFAULT_OUT = RESULTS / "cifar10_evaluator.onnx"
MAX_RESULTS_BYTES = 2_000_000  # larger files go to runs/ (git-ignored)


class EvaluatorCNN(nn.Module):
    """conv(3->32)-conv(32->32)-pool, conv(->64)-pool, conv(->128)-pool, fc(2048->96)-fc(96->10)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()

        def block(ci, co):
            return [nn.Conv2d(ci, co, 3, padding=1, bias=False), nn.BatchNorm2d(co), nn.ReLU()]

        self.features = nn.Sequential(nn.BatchNorm2d(3), *block(3, 32), *block(32, 32), nn.MaxPool2d(2),
                                      *block(32, 64), nn.MaxPool2d(2), *block(64, 128), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(128 * 4 * 4, 96), nn.ReLU(),
                                  nn.Linear(96, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


def load_npy(prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    x = np.load(SHARED / "cifar10" / f"{prefix}_x.npy")
    y = np.load(SHARED / "cifar10" / f"{prefix}_y.npy")
    return torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255), torch.from_numpy(y).long()


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    xp = F.pad(x, (4, 4, 4, 4), mode="reflect")
    dy, dx = torch.randint(0, 9, (2, n), generator=gen)
    idx_h = (dy[:, None] + torch.arange(32)[None]).view(n, 1, 32, 1).expand(n, 3, 32, 40)
    xs = xp.gather(2, idx_h)
    idx_w = (dx[:, None] + torch.arange(32)[None]).view(n, 1, 1, 32).expand(n, 3, 32, 32)
    xs = xs.gather(3, idx_w)
    flip = torch.rand(n, generator=gen) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), xs.flip(3), xs)


def train(epochs: int, seed: int, batch: int = 64, lr: float = 2e-3) -> tuple[nn.Module, list[dict]]:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x, y = load_npy("train4000")
    net = EvaluatorCNN()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=5e-4)
    steps = epochs * ((len(y) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    history = []
    for ep in range(epochs):
        net.train()
        perm = torch.randperm(len(y), generator=gen)
        t0, loss_sum, hits = time.time(), 0.0, 0
        for i in range(0, len(y), batch):
            idx = perm[i:i + batch]
            xb, yb = augment(x[idx], gen), y[idx]
            out = net(xb)
            loss = F.cross_entropy(out, yb, label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss) * len(idx)
            hits += int((out.argmax(1) == yb).sum())
        rec = {"epoch": ep + 1, "loss": loss_sum / len(y), "train_accuracy": hits / len(y),
               "seconds": round(time.time() - t0, 1)}
        history.append(rec)
        print(f"epoch {ep + 1}/{epochs}: loss {rec['loss']:.3f}, train acc {rec['train_accuracy']:.3f} "
              f"({rec['seconds']:.0f}s)", flush=True)
    return net.eval(), history


@torch.no_grad()
def test_accuracy(net: nn.Module) -> float:
    x, y = load_npy("test")
    preds = torch.cat([net(x[i:i + 500]).argmax(1) for i in range(0, len(y), 500)])
    return float((preds == y).float().mean())


def export_onnx(net: nn.Module, out: Path) -> Path:
    from privatesnn.exporters.onnx_export import torch_onnx_export
    from privatesnn.io_utils import atomic_path

    with warnings.catch_warnings(), atomic_path(out) as tmp:
        warnings.simplefilter("ignore")
        torch_onnx_export(net, (torch.zeros(1, 3, 32, 32),), tmp, opset_version=13, input_names=["pixels"],
                          output_names=["logits"], dynamic_axes={"pixels": {0: "N"}, "logits": {0: "N"}})
    return out


def ensure_evaluator(out: Path = DEFAULT_OUT, epochs: int = 30, seed: int = 0) -> Path:
    """Train and export the evaluator unless ``out`` (or its runs/ fallback) exists; returns the path."""
    from common import ROOT

    fallback = ROOT / "runs" / "bench" / "privacy" / out.name
    for p in (out, fallback):
        if p.exists():
            return p
    t0 = time.time()
    net, history = train(epochs, seed)
    acc = test_accuracy(net)
    path = export_onnx(net, out)
    if path.stat().st_size > MAX_RESULTS_BYTES and RESULTS in path.parents:
        fallback.parent.mkdir(parents=True, exist_ok=True)
        path = Path(path.replace(fallback))
    from privatesnn.io_utils import write_json
    from privatesnn.models import load_model

    onnx_acc = test_accuracy(load_model(str(path)).module())  # the file as the audit will load it
    write_json(path.with_suffix(".json"), {
        "architecture": "EvaluatorCNN (bench/train_cifar_evaluator.py): plain VGG-style CNN, 3 conv blocks + "
                        "BN + max-pool, FC 2048-96-10; input pixels in [0,1]",
        "trained_on": "../shared/data/cifar10/train4000_* (4000 real CIFAR-10 training images)",
        "epochs": epochs, "seed": seed, "test_accuracy": acc, "onnx_test_accuracy": onnx_acc,
        "test_images": "../shared/data/cifar10/test_* (1900)", "seconds": round(time.time() - t0, 1),
        "history": history})
    print(f"evaluator: test accuracy {acc:.4f} (ONNX {onnx_acc:.4f}) -> {path}")
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--force", action="store_true", help="retrain even if the file exists")
    args = p.parse_args()
    set_threads(args.threads)
    if args.force and args.out.exists():
        args.out.unlink()
    print(ensure_evaluator(args.out, args.epochs, args.seed))


if __name__ == "__main__":
    main()
