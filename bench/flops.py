"""FLOPs of a concept-training step, counted by torch's FlopCounterMode (shared by the training
benches). Attention runs through its math path while counting, so its matmuls are counted too."""
from __future__ import annotations

import torch


def counted_tflop(fn) -> float:
    """TFLOP that fn() performs."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):
        fn()
    return counter.get_total_flops() / 1e12


def unet_step_tflop(unet, resolution: int, batch: int = 1) -> float:
    """Model FLOPs of one UNet forward + backward with LoRA (what every trainer does per step;
    gradient-checkpointing recomputation not included, as MFU counts it)."""
    device, dtype = unet.device, unet.dtype
    config = unet.config
    latents = torch.randn(batch, config.in_channels, resolution // 8, resolution // 8, device=device, dtype=dtype)
    context = torch.randn(batch, 77, config.cross_attention_dim, device=device, dtype=dtype)
    t = torch.full((batch,), 500, device=device)

    def step():
        unet.train()(latents, t, encoder_hidden_states=context).sample.float().square().mean().backward()
        unet.zero_grad(set_to_none=True)

    return counted_tflop(step)
