"""The randomness of training, as pure functions: every draw of step k comes from
(seed, k), the data order of epoch e from (seed, e), so a resumed run draws exactly what an
uninterrupted one would, on any device and with any number of processes (draws are per sample, keyed by its
place in the global batch)."""
from __future__ import annotations

from dataclasses import dataclass

import torch


def seeded_generator(seed: int, *keys: int) -> torch.Generator:
    """A CPU generator seeded from (seed, *keys); never the global one."""
    value = seed
    for k in keys:
        value = (value * 1_000_003 + k + 1) % (2**63)
    return torch.Generator().manual_seed(value)


@dataclass
class StepDraws:
    """Every random draw of one micro-batch: B = batch size, latents B x 4 x h x w."""
    variant: torch.Tensor  # B: which augmentation variant of each image
    latent_eps: torch.Tensor  # B x 4 x h x w: the sample from each image's latent distribution
    noise: torch.Tensor  # B x 4 x h x w: the diffusion noise (offset included)
    timesteps: torch.Tensor  # B
    drop_caption: list[bool]  # B


def caption_choice(seed: int, epoch: int, sample: int, count: int) -> int:
    """Which of a sample's `count` captions it trains with in `epoch`: a function of (seed,
    epoch, sample) only, so a resumed run draws what an uninterrupted one draws."""
    if count <= 1:
        return 0
    return int(torch.randint(0, count, (1,), generator=seeded_generator(seed, 3, epoch, sample)))


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The data order of one epoch: a permutation of n, a function of (seed, epoch) only."""
    return torch.randperm(n, generator=seeded_generator(seed, 1, epoch))


def step_draws(seed: int, global_batch: int, first: int, batch: int, variants: int, latent_shape: tuple[int, ...],
               num_timesteps: int, noise_offset: float = 0.0, caption_dropout: float = 0.0) -> StepDraws:
    """All randomness of the samples first .. first + batch - 1 of micro-batch `global_batch`
    (their places in the global batch), a pure function of its arguments. Each sample's draws
    come from (seed, global_batch, place), so a process's share is the same slice whether one
    process takes the whole global batch or several split it, and a resumed run draws as an
    uninterrupted one, on any device."""
    variant, latent_eps, noise, timesteps, drop = [], [], [], [], []
    for place in range(first, first + batch):
        g = seeded_generator(seed, 2, global_batch, place)
        variant.append(torch.randint(0, variants, (1,), generator=g))
        latent_eps.append(torch.randn((1, *latent_shape), generator=g))
        eps = torch.randn((1, *latent_shape), generator=g)
        if noise_offset:
            eps = eps + noise_offset * torch.randn((1, latent_shape[0], 1, 1), generator=g)
        noise.append(eps)
        timesteps.append(torch.randint(0, num_timesteps, (1,), generator=g))
        drop.append(bool(torch.rand(1, generator=g) < caption_dropout))
    return StepDraws(torch.cat(variant), torch.cat(latent_eps), torch.cat(noise), torch.cat(timesteps), drop)
