"""How far the distillation gradient reaches into a windowed SNN, per surrogate slope.

Not a test and not part of the pipeline: a probe behind `train --surrogate-alpha` for windowed
neurons (docs/low_latency.md, session 20). A windowed neuron's spike count is the sum of T
triangle surrogates spaced one threshold apart; Norse's triangle has height ``alpha`` and half-width
one, so the count's slope is ``alpha`` per threshold between the staircase's ends: the
straight-through slope of the QCFS staircase the neuron stands for is 1, and at the default 0.3
each windowed layer scales the gradient by about 0.3. This script measures it: the norm of the
gradient of `train`'s distillation loss (``--kd-loss mse --kd-alpha 1``) with respect to each
layer's weights, on one fixed batch of synthetic images (no real data), for each slope.

    python bench/surrogate_gradients.py --snn runs/bench/cifar10_resnet20/snn_qcfs_windowed_l6.pt \\
        --synthetic runs/bench/cifar10_resnet20/synth.npz --timesteps 6 --alphas 0.3,1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import IMAGENET_MEAN, IMAGENET_STD, RESNET20, set_threads, write_results  # noqa: E402


def layer_gradient_norms(graph, teacher: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                         timesteps: int, alpha: float) -> dict[str, float]:
    """Norm of d(distillation loss)/d(weight) per synaptic layer, in graph order, at surrogate slope ``alpha``."""
    from privatesnn.snn import SpikingNetwork
    from privatesnn.training import distillation_loss

    net = SpikingNetwork(graph, timesteps, "triangle", alpha)
    with torch.no_grad():
        target = teacher(images).float()
    logits = net(images, timesteps)
    loss = distillation_loss(logits.float(), target, labels, 1.0, 4.0, 0.0, "mse")
    named = [(name.split(".")[1], p) for name, p in net.named_parameters()
             if name.startswith("synapses.") and name.endswith(".weight") and p.requires_grad]
    grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
    return {name: (float(g.norm()) if g is not None else 0.0) for (name, _), g in zip(named, grads)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--snn", required=True, help="an SNN artifact (windowed neurons: the probe's subject)")
    p.add_argument("--synthetic", required=True, help="a synthetic set of the same model (the first --batch images)")
    p.add_argument("--model", default=f"resnet20:{RESNET20}", help="the ANN teacher (default: the shared ResNet-20)")
    p.add_argument("--timesteps", type=int, default=6)
    p.add_argument("--alphas", default="0.3,1", help="comma list of surrogate slopes")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="surrogate_gradients.json", help="results file under bench/results/")
    args = p.parse_args()
    try:
        alphas = [float(a) for a in args.alphas.split(",") if a.strip()]
    except ValueError:
        raise SystemExit(f"--alphas: expected a comma list of numbers, got {args.alphas!r}") from None
    if not alphas or min(alphas) <= 0:
        raise SystemExit(f"--alphas: expected positive slopes, got {args.alphas!r}")
    set_threads(args.threads)
    from privatesnn.api import load_model
    from privatesnn.artifact import load_snn
    from privatesnn.errors import PrivsnnError
    from privatesnn.synthesis.store import load_synthetic

    torch.manual_seed(0)
    try:  # a missing or malformed file: the library's error names it
        graph = load_snn(args.snn).graph
        synth = load_synthetic(args.synthetic)
        teacher = load_model(args.model, mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD)).module().eval()
    except PrivsnnError as e:
        raise SystemExit(f"bench/surrogate_gradients.py: {e}") from None
    images, labels = synth.images[:args.batch], synth.labels[:args.batch]
    norms = {str(a): layer_gradient_norms(graph, teacher, images, labels, args.timesteps, a) for a in alphas}
    layers = list(next(iter(norms.values())))
    print(f"gradient norm of the distillation loss per layer's weights (T={args.timesteps}, {len(images)} synthetic "
          f"images); in brackets: relative to the last layer")
    print(f"{'layer':<20} " + " ".join(f"{'alpha=' + str(a):>24}" for a in alphas))
    for name in layers:
        print(f"{name:<20} " + " ".join(
            f"{norms[str(a)][name]:>11.3e} ({norms[str(a)][name] / max(norms[str(a)][layers[-1]], 1e-30):8.1e})"
            for a in alphas))

    write_results(args.out, {"snn": args.snn, "synthetic": args.synthetic, "timesteps": args.timesteps,
                             "images": len(images), "loss": "mse distillation, kd_alpha 1", "gradient_norms": norms,
                             "command": "bench/surrogate_gradients.py " + " ".join(sys.argv[1:])})


if __name__ == "__main__":
    main()
