"""FLOPs of a concept-training step, counted by torch's FlopCounterMode, and step timing (shared
by the training benches). Attention runs through its math path while counting, so its matmuls
are counted too."""
from __future__ import annotations

import statistics
import time

import torch


def timed(fn, repeats: int) -> float:
    """Median seconds of fn() after two warm-up calls."""
    fn()
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


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


def matmul_peak(dtype=torch.float32, device="cpu") -> float:
    """Measured matmul throughput (TFLOP/s) of this machine's threads or GPU: the best of several
    square products (2048 on a CPU, 8192 on a GPU) after a warm-up."""
    cuda = torch.device(device).type == "cuda"
    n = 8192 if cuda else 2048
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(3):
        a @ b
    sync()
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e12
