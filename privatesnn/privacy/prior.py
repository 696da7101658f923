"""Threat model (d): model inversion with an image prior learned from auxiliary public data.

The attacker owns real images of *other* classes (or another dataset) and learns a generative
prior from them, here a small variational autoencoder (Kingma & Welling 2014), trainable in a minute
on a CPU. The audit (:func:`~.audit._attacker_prior`) starts pixel-space inversions from the public
images and adds the prior's negative ELBO as a penalty, which keeps images near natural ones.
Searching only the prior's latent space (the GMI recipe of Zhang et al., CVPR 2020, with a VAE for
the GAN) was weaker here: a prior of five digit classes cannot draw the other five.

Written here rather than taken from a library: no maintained PyPI package offers model-inversion
attacks with a learnt prior for arbitrary torch models at this size.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm



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
