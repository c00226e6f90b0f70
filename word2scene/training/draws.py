"""The randomness of training, as pure functions: every draw of step k comes from
(seed, k), the data order of epoch e from (seed, e), so a resumed run draws exactly what an
uninterrupted one would, on any device and with any number of processes."""
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


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The data order of one epoch: a permutation of n, a function of (seed, epoch) only."""
    return torch.randperm(n, generator=seeded_generator(seed, 1, epoch))


def step_draws(seed: int, global_batch: int, process: int, batch: int, variants: int, latent_shape: tuple[int, ...],
               num_timesteps: int, noise_offset: float = 0.0, caption_dropout: float = 0.0) -> StepDraws:
    """All randomness of micro-batch `global_batch` on process `process`, a pure function of
    its arguments: the same draws whether a run is resumed or not, on any device."""
    g = seeded_generator(seed, 2, global_batch, process)
    shape = (batch, *latent_shape)
    variant = torch.randint(0, variants, (batch,), generator=g)
    latent_eps = torch.randn(shape, generator=g)
    noise = torch.randn(shape, generator=g)
    if noise_offset:
        noise = noise + noise_offset * torch.randn(shape[:2] + (1, 1), generator=g)
    timesteps = torch.randint(0, num_timesteps, (batch,), generator=g)
    drop = (torch.rand(batch, generator=g) < caption_dropout).tolist()
    return StepDraws(variant, latent_eps, noise, timesteps, drop)
