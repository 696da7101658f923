"""Threat model (d): model inversion with an image prior learned from auxiliary public data.

The attacker owns real images of *other* classes (or another dataset) and learns a generative
prior from them, here a small variational autoencoder (Kingma & Welling 2014). The inversion then
searches the prior's latent space instead of pixel space: ``x = decoder(z)``, maximising the
victim's score for the target class with a Gaussian penalty on ``z`` (the GMI recipe of Zhang et
al., CVPR 2020, "The Secret Revealer", with a VAE in place of the GAN: trainable in a minute on a
CPU, and the same idea: images stay on the manifold of natural images, which usually makes
inversions far more recognisable than pixel-space ascent).

Written here rather than taken from a library: no maintained PyPI package offers model-inversion
attacks with a learnt prior for arbitrary torch models at this size.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .inversion import InversionSettings, _batch_seed


class ImagePrior(nn.Module):
    """A VAE over images of ``input_shape`` (pixels in [0, 1]): an MLP for small images (<= 16x16),
    a 3-layer conv net (stride 2) for larger ones."""

    def __init__(self, input_shape: tuple[int, int, int], latent: int | None = None):
        super().__init__()
        c, h, w = input_shape
        self.input_shape = (c, h, w)
        self.small = h * w <= 256 or h % 8 or w % 8
        self.latent = latent or (16 if self.small else 64)
        if self.small:
            d = c * h * w
            self.enc = nn.Sequential(nn.Flatten(), nn.Linear(d, 256), nn.ReLU(), nn.Linear(256, 2 * self.latent))
            self.dec = nn.Sequential(nn.Linear(self.latent, 256), nn.ReLU(), nn.Linear(256, d))
        else:
            self.enc = nn.Sequential(nn.Conv2d(c, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
                                     nn.Conv2d(64, 128, 4, 2, 1), nn.ReLU(), nn.Flatten(),
                                     nn.Linear(128 * (h // 8) * (w // 8), 2 * self.latent))
            self.dec = nn.Sequential(nn.Linear(self.latent, 128 * (h // 8) * (w // 8)), nn.ReLU(),
                                     nn.Unflatten(1, (128, h // 8, w // 8)),
                                     nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.ReLU(),
                                     nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
                                     nn.ConvTranspose2d(32, c, 4, 2, 1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.dec(z)).view(-1, *self.input_shape)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.enc(x).chunk(2, dim=1)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decode(z), mu, logvar


def train_prior(images: torch.Tensor, epochs: int = 60, batch_size: int = 64, lr: float = 2e-3, seed: int = 0,
                progress: bool = True) -> ImagePrior:
    """Fit an :class:`ImagePrior` to ``images`` (N, C, H, W) in [0, 1] (random flips for RGB)."""
    torch.manual_seed(seed)
    prior = ImagePrior(tuple(images.shape[1:]))
    opt = torch.optim.Adam(prior.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    gen = torch.Generator().manual_seed(seed)
    n = len(images)
    for _ in tqdm(range(epochs), desc="learning the attacker's image prior", leave=False, disable=not progress):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            x = images[perm[i:i + batch_size]]
            if x.shape[1] == 3:
                flip = torch.rand(len(x), generator=gen) < 0.5
                x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
            recon, mu, logvar = prior(x)
            rec = F.binary_cross_entropy(recon, x, reduction="sum") / len(x)
            kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / len(x)
            loss = rec + kl
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    return prior.eval()


def invert_with_prior(model, prior: ImagePrior, classes: list[int], settings: InversionSettings,
                      device: torch.device | str = "cpu", z_weight: float = 0.5, desc: str = "prior inversion",
                      progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Like :func:`~.inversion.invert`, but over the prior's latent codes: maximise the target
    logit of ``model(decoder(z))`` (random shifts, flips for RGB) + ``z_weight`` x the Gaussian
    log-prior of ``z``. Returns ``(images, labels)`` on the CPU."""
    settings.validate()
    prior = prior.to(device).eval()
    for p in prior.parameters():
        p.requires_grad_(False)
    labels = torch.tensor([c for c in classes for _ in range(settings.per_class)], dtype=torch.long)
    c_in, h, w = prior.input_shape
    jitter = settings.jitter if settings.jitter is not None else (1 if max(h, w) <= 16 else 2)
    flip = settings.flip if settings.flip is not None else c_in == 3
    out = []
    n_batches = math.ceil(len(labels) / settings.batch_size)
    bar = tqdm(total=n_batches * settings.iterations, desc=desc, unit="step", leave=False, disable=not progress)
    try:
        for b in range(n_batches):
            y = labels[b * settings.batch_size:(b + 1) * settings.batch_size].to(device)
            gen = torch.Generator().manual_seed(_batch_seed(settings.seed, b) + 17)
            torch.manual_seed(_batch_seed(settings.seed, b))
            z = torch.randn((len(y), prior.latent), generator=gen).to(device).requires_grad_(True)
            opt = torch.optim.Adam([z], lr=settings.lr)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=settings.iterations)
            for _ in range(settings.iterations):
                x = prior.decode(z)
                if jitter:
                    dy, dx = torch.randint(-jitter, jitter + 1, (2,), generator=gen).tolist()
                    x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
                if flip and torch.rand((), generator=gen).item() < 0.5:
                    x = torch.flip(x, dims=(3,))
                logits = model(x)
                score = (-F.cross_entropy(logits, y) if settings.objective == "ce"
                         else logits.gather(1, y[:, None]).mean())
                loss = -score + z_weight * 0.5 * z.pow(2).sum(1).mean() / prior.latent
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.update(1)
            with torch.no_grad():
                out.append(prior.decode(z).cpu())
    finally:
        bar.close()
    return torch.cat(out), labels.cpu()
