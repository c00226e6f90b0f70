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


def use_fast_attention(unet, precision: str, device: torch.device) -> None:
    """Under bf16 on a CPU (pretraining's autocast, the concept trainer's bf16 weights), the
    UNet's attention as explicit matmuls (diffusers' AttnProcessor: baddbmm, softmax, bmm)
    instead of scaled_dot_product_attention, whose bf16 CPU kernel is slow. Measured on one
    AMX core, mini UNet (bench/bench_pretrain.py --profile, bench/bench_training.py
    --attention): under autocast, bf16 made convolutions 0.55x and matmuls 0.49x as long but
    SDPA 1.97x, so a pretraining step ran at 0.89-0.93x fp32's speed, and with these kernels at
    1.19-1.42x (batches 16-64); a concept-training step (bf16 weights, LoRA rank 8, batch 16)
    took 1.01x fp32's time with SDPA and 0.63x with these kernels. Elsewhere (fp32, GPUs)
    diffusers' default stays."""
    if precision == "bf16" and device.type == "cpu":
        from diffusers.models.attention_processor import AttnProcessor

        unet.set_attn_processor(AttnProcessor())
