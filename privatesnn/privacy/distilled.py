"""Distil-then-invert: the attacker's answer to an SNN whose own gradients do not lead anywhere.

A defence that shapes input gradients (e.g. :mod:`privatesnn.gradient_alignment`) can make a
gradient-ascent inversion through the SNN stall without hiding what the SNN computes: the classic
obfuscated-gradient failure (Athalye, Carlini, Wagner, ICML 2018), answered there by attacking a
differentiable stand-in. Here the attacker, who can run the SNN, fits a ReLU surrogate to the SNN's
outputs and inverts the surrogate instead (as in black-box model inversion through a substitute
model, e.g. Kahla et al., CVPR 2022; the substitute idea from Papernot et al., AsiaCCS 2017):

* the surrogate starts from the SNN's own weights read as an ANN (the attacker's best reading), so it
  needs few queries, and is fine-tuned to the SNN's logits (mean squared error: logit matching, the
  quantity the inversion climbs);
* the queries are what the attacker holds: its public images (threat model (d)'s, when the audit has
  them), mixtures of pairs of them, and uniform and blurred noise;
* its fidelity is measured on held-out queries (and by the auditor on real test images): how often
  the surrogate's top class is the SNN's.

Written here (not a library): no maintained package does substitute-model inversion on a torch model.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..graph import Graph
from ..layers import module_key
from .inversion import blur, gaussian_kernel
from .weights_as_ann import RebuiltANN


def trainable_reading(graph: Graph, mode: str, timesteps: int, scratch: bool = False,
                      seed: int = 0) -> RebuiltANN:
    """``graph`` read as an ANN (``mode``), with the weights of its trainable layers free to learn
    (``scratch``: re-initialised at random first, keeping only the architecture)."""
    model = RebuiltANN(graph, mode, timesteps)
    free = {module_key(n.name) for n in graph.weighted() if getattr(n, "trainable", True)}
    torch.manual_seed(seed)
    for key, module in model.synapses.items():
        if key in free:
            if scratch:
                module.reset_parameters()
            module.requires_grad_(True)
    return model


def query_images(public: torch.Tensor | None, input_shape: tuple[int, ...], n_noise: int,
                 gen: torch.Generator) -> tuple[torch.Tensor, dict[str, int]]:
    """The attacker's queries: its public images, as many mixtures of two of them, and ``n_noise``
    uniform-noise images of which half are blurred. Returns the images and how many of each kind."""
    parts, counts = [], {}
    if public is not None and len(public):
        i = torch.randint(0, len(public), (len(public),), generator=gen)
        j = torch.randint(0, len(public), (len(public),), generator=gen)
        lam = torch.rand((len(public), 1, 1, 1), generator=gen)
        parts += [public.float(), lam * public[i] + (1 - lam) * public[j]]
        counts.update(public=len(public), mixtures=len(public))
    noise = torch.rand((n_noise, *input_shape), generator=gen)
    half = n_noise // 2
    if half:
        noise[:half] = blur(noise[:half], gaussian_kernel(1.0, input_shape[0])).clamp(0, 1)
    parts.append(noise)
    counts.update(noise=n_noise - half, blurred_noise=half)
    return torch.cat(parts), counts


@torch.no_grad()
def victim_logits(victim: nn.Module, images: torch.Tensor, device: torch.device | str, batch_size: int = 100,
                  desc: str = "querying the SNN", progress: bool = True) -> torch.Tensor:
    """The victim's outputs on ``images`` (on the CPU), batch by batch."""
    out = [victim(images[i:i + batch_size].to(device)).float().cpu()
           for i in tqdm(range(0, len(images), batch_size), desc=desc, leave=False, disable=not progress)]
    return torch.cat(out)


def agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """Share of rows where two logit tensors pick the same class."""
    return float((a.argmax(1) == b.argmax(1)).float().mean()) if len(a) else 0.0


def _fit(surrogate: nn.Module, queries: torch.Tensor, targets: torch.Tensor, idx: torch.Tensor, epochs: int,
         lr: float, batch_size: int, device, gen: torch.Generator, desc: str = "fitting the surrogate",
         progress: bool = True) -> list[float]:
    """Fine-tune ``surrogate`` on ``queries[idx]`` to ``targets[idx]`` (mean squared error on the logits)."""
    params = [p for p in surrogate.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    surrogate.train()
    losses = []
    bar = tqdm(range(epochs), desc=desc, unit="epoch", leave=False, disable=not progress)
    for _ in bar:
        perm = idx[torch.randperm(len(idx), generator=gen)]
        total = 0.0
        for k in range(0, len(perm), batch_size):
            b = perm[k:k + batch_size]
            loss = F.mse_loss(surrogate(queries[b].to(device)), targets[b].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss) * len(b)
        sched.step()
        losses.append(total / max(len(idx), 1))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    surrogate.eval()
    return losses


def distil_surrogate(victim: nn.Module, graph: Graph, mode: str, timesteps: int, public: torch.Tensor | None,
                     device: torch.device | str = "cpu", steps: int = 900, lr: float = 1e-3, batch_size: int = 64,
                     seed: int = 0, progress: bool = True, scratch: bool = False, rounds: int = 1,
                     explore: Callable[[nn.Module], torch.Tensor] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Fit a ReLU surrogate of ``victim`` (see the module docstring): start from ``graph`` read as
    ``mode`` (``scratch``: its architecture only) and fit it to the victim's logits on the attacker's
    queries for about ``steps`` optimiser steps (whole epochs: a step budget, so a larger query set
    does not multiply the cost). With ``rounds`` > 1 and ``explore`` (surrogate -> images, e.g. its
    own inversions), each further round queries the victim on the explored images too and fits
    again: the surrogate learns the victim where the attack goes (substitute training with
    augmentation, Papernot et al. 2017). Returns the frozen surrogate (eval mode) and its record:
    query counts, fidelity on held-out queries before and after, and per round the share of explored
    images on which the victim and the surrogate pick the same class."""
    gen = torch.Generator().manual_seed(seed)
    input_shape = tuple(graph.input.shape)
    n_noise = max(len(public) if public is not None else 0, 1000)
    queries, counts = query_images(public, input_shape, n_noise, gen)
    torch.manual_seed(seed)  # a rate-coded SNN draws its input spikes from the global generator
    targets = victim_logits(victim, queries, device, progress=progress)
    order = torch.randperm(len(queries), generator=gen)
    held = order[: max(1, len(order) // 5)]
    fit = order[len(held):]
    epochs = max(1, round(steps / math.ceil(len(fit) / batch_size)))
    surrogate = trainable_reading(graph, mode, timesteps, scratch, seed).to(device)
    with torch.no_grad():
        before = agreement(victim_logits(surrogate, queries[held], device, progress=False), targets[held])
    total = rounds if explore is not None else 1
    losses = _fit(surrogate, queries, targets, fit, epochs, lr, batch_size, device, gen,
                  f"fitting the surrogate (round 1/{total})", progress)
    explored = []
    free = [p for p in surrogate.parameters() if p.requires_grad]
    for r in range(2, total + 1):
        for p in free:  # the attack on the surrogate needs input gradients only
            p.requires_grad_(False)
        images = explore(surrogate).detach().cpu()
        for p in free:
            p.requires_grad_(True)
        answers = victim_logits(victim, images, device, progress=False)
        mine = victim_logits(surrogate, images, device, progress=False)
        explored.append(agreement(mine, answers))
        fit = torch.cat([fit, torch.arange(len(queries), len(queries) + len(images))])
        queries, targets = torch.cat([queries, images]), torch.cat([targets, answers])
        losses += _fit(surrogate, queries, targets, fit, max(1, epochs // 2), lr, batch_size, device, gen,
                       f"fitting the surrogate (round {r}/{total})", progress)
    for p in surrogate.parameters():
        p.requires_grad_(False)
    after = agreement(victim_logits(surrogate, queries[held], device, progress=False), targets[held])
    counts["explored"] = len(queries) - sum(counts.values())
    record = {"start": "scratch" if scratch else mode, "reading": mode, "queries": counts, "n_queries": len(queries),
              "held_out": len(held), "steps": steps, "epochs": epochs, "rounds": rounds, "lr": lr,
              "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
              "fidelity_before": before, "fidelity": after, "explored_agreement": explored}
    return surrogate, record
