"""What SD1.5's diffusion is stated on, shared by both trainers and the heat maps: pixels
in [-1, 1] (the VAE's input) and the epsilon-prediction objective."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def pixels_to_tensor(arrays: np.ndarray) -> torch.Tensor:
    """B x H x W x 3 uint8 -> B x 3 x H x W floats in [-1, 1], the VAE's input."""
    return torch.from_numpy(np.ascontiguousarray(arrays)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def epsilon_loss(pred: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor, noise_schedule,
                 min_snr_gamma: float = 0.0) -> torch.Tensor:
    """SD1.5's objective, shared by the concept trainer and pretraining: the mean over the
    batch of each sample's epsilon MSE (pred and noise B x 4 x h x w, timesteps B), min-SNR-gamma
    weighted when gamma > 0 (`noise_schedule.alphas_cumprod` gives the SNR)."""
    loss = F.mse_loss(pred.float(), noise.float(), reduction="none").mean(dim=(1, 2, 3))
    if min_snr_gamma > 0:
        alphas_cumprod = noise_schedule.alphas_cumprod.to(timesteps.device)[timesteps]
        snr = alphas_cumprod / (1 - alphas_cumprod)
        loss = loss * torch.clamp(snr, max=min_snr_gamma) / snr
    return loss.mean()
