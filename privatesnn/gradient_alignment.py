"""A model-inversion defence: keep the SNN's input gradients from pointing where the ANN's do.

Model inversion climbs a class logit along the input gradient. An SNN distilled from an ANN inherits
the ANN's gradients, so the image it climbs to shows what the ANN (and any classifier trained on the
same kind of data, e.g. the audit's evaluator) sees in the class. Penalising the cosine between the
two gradients during fine-tuning (as TRS, Yang et al. NeurIPS 2021, does between ensemble members to
stop adversarial examples transferring) keeps the function (distillation matches the outputs) while
the climb leads elsewhere. Written here because no library offers it; it is a few lines of double
backpropagation.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def _low_pass(g: torch.Tensor) -> torch.Tensor:
    """Two 3x3 box blurs: the part of an input gradient an inversion's blur and jitter keep."""
    return F.avg_pool2d(F.avg_pool2d(g, 3, 1, 1, count_include_pad=False), 3, 1, 1, count_include_pad=False)


Model = Callable[[torch.Tensor], torch.Tensor]


def gradient_alignment(net: Model, teacher: Model, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Mean positive cosine between ``net``'s and ``teacher``'s input gradients of the logit of
    ``classes`` at ``x``, raw and low-passed (images only); differentiable in ``net``'s parameters."""
    xs = x.detach().requires_grad_(True)
    (g_s,) = torch.autograd.grad(net(xs).gather(1, classes[:, None]).sum(), xs, create_graph=True)
    xt = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (g_t,) = torch.autograd.grad(teacher(xt).gather(1, classes[:, None]).sum(), xt)
    terms = []
    for a, b in ((g_s, g_t), (_low_pass(g_s), _low_pass(g_t))) if x.dim() == 4 else ((g_s, g_t),):
        terms.append(F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1, eps=1e-12).clamp_min(0).mean())
    return torch.stack(terms).mean()


def misalignment_probe(x: torch.Tensor, size: int, num_classes: int,
                       gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the penalty is measured: the first half of ``size`` from the batch ``x`` (on its device),
    the rest uniform noise (where an inversion starts), each with a random target class."""
    half = min(size // 2, len(x))
    noise = torch.rand((size - half, *x.shape[1:]), generator=gen).to(x.device)
    target = torch.randint(num_classes, (size,), generator=gen).to(x.device)
    return torch.cat([x[:half], noise]), target
