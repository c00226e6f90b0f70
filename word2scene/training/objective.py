"""The concept trainer's objective on its cache: the loss of one micro-batch with the draws
of its step, and the same loss with fixed draws over a whole dataset (a measure comparable
before and after training). Both are SD1.5's epsilon objective (models/diffusion.py)."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from ..datasets import load_images, scan_dataset
from ..models.diffusion import epsilon_loss
from ..models.sd15 import SD15
from ..scenes.sampling import encode_prompt, join_contexts
from .config import TrainConfig
from .data import build_cache, LatentCache
from .draws import caption_choice, seeded_generator, StepDraws


def micro_batch_loss(sd: SD15, unet, text_encoder, cache: LatentCache, draws: StepDraws, index: torch.Tensor,
                     cfg: TrainConfig, noise_schedule, accelerator, epoch: int) -> torch.Tensor:
    """The (min-SNR weighted) epsilon-prediction loss of one micro-batch (`index`: B samples
    of the cache); each image trains with the caption drawn for it this epoch."""
    device = accelerator.device
    mean, std = cache.mean[index, draws.variant], cache.std[index, draws.variant]
    latents = ((mean + std * draws.latent_eps) * sd.vae_scale).to(device)
    noise, timesteps = draws.noise.to(device), draws.timesteps.to(device)
    texts = ["" if d else cache.captions[i][caption_choice(cfg.seed, epoch, i, len(cache.captions[i]))]
             for d, i in zip(draws.drop_caption, index.tolist())]
    noisy = noise_schedule.add_noise(latents, noise, timesteps)
    if cfg.text_encoder:
        context = join_contexts([encode_prompt(sd, t, False, text_encoder) for t in texts])
    else:
        context = join_contexts([cache.embeddings[t] for t in texts]).to(device)
    with accelerator.autocast():
        pred = unet(noisy.to(sd.unet.dtype), timesteps, encoder_hidden_states=context.to(sd.unet.dtype)).sample
    return epsilon_loss(pred, noise, timesteps, noise_schedule, cfg.min_snr_gamma)


@torch.no_grad()
def denoising_loss(sd: SD15, dataset: str | Path, cfg: TrainConfig, kb=None, split: str | None = "train",
                   concepts: list[str] | None = None, noise_draws: int = 4, seed: int = 1234) -> float:
    """Mean epsilon-prediction MSE over a dataset with fixed noise and timesteps (the same
    for every call with the same seed): a learning signal comparable before and after
    training, and across classes."""
    from diffusers import DDPMScheduler

    samples = scan_dataset(dataset, concepts, split, kb)
    samples, arrays, _ = load_images(samples, cfg.resolution, cfg.bands, cfg.max_bad_fraction)
    cache = build_cache(sd, samples, arrays, TrainConfig(**{**asdict(cfg), "augment": "none", "text_encoder": False}), sd.device)
    schedule = DDPMScheduler.from_config(sd.configs["scheduler"])
    total, n = 0.0, 0
    for i in range(len(samples)):
        g = seeded_generator(seed, i)
        latents = cache.mean[i:i + 1, 0] * sd.vae_scale
        context = cache.embeddings[cache.captions[i][0]].to(sd.device, sd.unet.dtype)
        for _ in range(noise_draws):
            noise = torch.randn(latents.shape, generator=g)
            t = torch.randint(50, 950, (1,), generator=g)
            noisy = schedule.add_noise(latents, noise, t)
            pred = sd.unet(noisy.to(sd.device, sd.unet.dtype), t.to(sd.device), encoder_hidden_states=context).sample
            total += float(epsilon_loss(pred.float().cpu(), noise, t, schedule))
            n += 1
    return total / n
