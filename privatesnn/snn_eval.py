"""Real-data accuracy of SNN artifacts over several T, and the accuracy-vs-T plot."""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm.auto import tqdm

from .artifact import SNNArtifact
from .data import ImageSet
from .distributed import current
from .errors import PrivsnnError
from .evaluation import check_classes, gather_batches
from .snn import SpikingNetwork


def parse_timesteps(text: str | None, default: int) -> list[int]:
    if text is None:
        return [default]
    try:
        ts = sorted({int(t) for t in str(text).split(",") if t.strip()})
    except ValueError:
        raise PrivsnnError(f"--timesteps: expected comma-separated integers, got {text!r}") from None
    if not ts or ts[0] <= 0 or ts[-1] > 100_000:
        raise PrivsnnError(f"--timesteps must be integers in 1..100000, got {text!r}")
    return ts


@torch.no_grad()
def snn_accuracy_over_time(artifact: SNNArtifact, data: ImageSet, timesteps: list[int], batch_size: int = 100,
                           device: torch.device | str = "cpu", seed: int = 0, desc: str = "SNN"
                           ) -> tuple[dict[int, float], dict[int, torch.Tensor]]:
    """Accuracy (and predictions) at each T, from one simulation of max(T) steps per batch.

    Rate-coded inputs are drawn from a generator seeded by ``(seed, batch index)``, so results do
    not depend on how the batches are shared out under torchrun."""
    check_classes(data, int(artifact.graph.meta.get("num_classes", 0)) or data.num_classes, "the SNN")
    ctx = current()
    net = SpikingNetwork(artifact.graph).to(device).eval()
    n_batches = (len(data) + batch_size - 1) // batch_size
    local: dict[int, torch.Tensor] = {}  # batch index -> (len(timesteps), n) predictions
    for k in tqdm(ctx.mine(n_batches), desc=f"{desc} T<={max(timesteps)}", leave=False, disable=not ctx.is_main):
        torch.manual_seed(seed * 1_000_003 + k)  # rate coding draws random spikes
        xb = data.x[k * batch_size:(k + 1) * batch_size]
        over_t = net.logits_over_time(xb.to(device), timesteps)
        local[k] = torch.stack([over_t[t].argmax(1).cpu() for t in timesteps], 1)
    stacked = gather_batches(local, ctx).reshape(-1, len(timesteps))
    out_preds = {t: stacked[:, j] for j, t in enumerate(timesteps)}
    accs = {t: float((p == data.y).float().mean()) for t, p in out_preds.items()}
    return accs, out_preds


def plot_accuracy_vs_t(curves: dict[str, dict[int, float]], path: str | Path, ann_accuracy: float | None = None,
                       title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io_utils import atomic_path

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, curve in curves.items():
        ts = sorted(curve)
        ax.plot(ts, [100 * curve[t] for t in ts], marker="o", label=label)
    if ann_accuracy is not None:
        ax.axhline(100 * ann_accuracy, color="k", ls="--", lw=1, label="ANN")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("timesteps T")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return Path(path)
