"""Text-to-image sampling for the standalone path: DDIM (or DPM-Solver++) with classifier-free guidance."""
from __future__ import annotations

from dataclasses import dataclass, asdict
from typing import Callable

import numpy as np
import torch
from PIL import Image

from ..models.sd15 import SD15
from ..prompts.tokens import BOS, chunk_tokens, EOS
from ..errors import InputError
from ..settings import check_ranges, option


MAX_SIDE = 4096  # pixels: SD1.5 has no use for more, and a bound keeps a typo from running for hours
MAX_SEED = 2**32 - 1  # torch's CPU generator keeps 32 bits of a seed: 2**32 would draw seed 0's noise
# sampler name -> diffusers scheduler class and the options it is built with from SD1.5's config
SAMPLERS = {"ddim": ("DDIMScheduler", {}),
            "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2})}
SAMPLER_NAMES = {"ddim": "DDIM", "dpmpp_2m": "DPM++ 2M"}  # as AUTOMATIC1111's PNG parameters name them


def make_scheduler(sd: SD15, sampler: str, steps: int):
    """The diffusers scheduler of `sampler`, built from the model's own scheduler config and
    set to `steps` steps."""
    import diffusers

    name, options = SAMPLERS[sampler]
    scheduler = getattr(diffusers, name).from_config(sd.configs["scheduler"], **options)
    scheduler.set_timesteps(steps)
    return scheduler


@dataclass
class SamplingSettings:
    """The paper's defaults: DDIM, 30 steps, CFG 7, 512 x 512, empty negative prompt. The
    ranges are stated here once; the nodes' sampling inputs are derived from them."""

    steps: int = option(30, min=1, max=10_000, help="sampling steps (the paper: DDIM, 30)")
    cfg: float = option(7.0, min=0.0, max=100.0, help="classifier-free guidance scale (the paper: 7)")
    seed: int = option(0, min=0, max=MAX_SEED, help="seed of the initial noise")
    width: int = option(512, min=8, max=MAX_SIDE, help="image width in pixels, a multiple of 8")
    height: int = option(512, min=8, max=MAX_SIDE, help="image height in pixels, a multiple of 8")
    negative: str = option("", help="negative prompt (the paper: empty)")
    sampler: str = option("ddim", choices=tuple(SAMPLERS), help="the sampler (the paper: DDIM); dpmpp_2m is "
                                                                "DPM-Solver++(2M), good in fewer steps")

    def check(self, input_names: dict[str, str] | None = None) -> "SamplingSettings":
        for name in ("steps", "seed", "width", "height"):
            if not isinstance(getattr(self, name), int) or isinstance(getattr(self, name), bool):
                raise InputError((input_names or {}).get(name, name), f"{getattr(self, name)!r} is not an integer")
        check_ranges(self, input_names)
        for name in ("width", "height"):
            if getattr(self, name) % 8:
                raise InputError((input_names or {}).get(name, name),
                                 f"{getattr(self, name)} is not accepted; use a positive multiple of 8 (e.g. 512)")
        return self

    def as_dict(self) -> dict:
        return asdict(self)


def encode_columns(sd: SD15, columns: list[int], weights: list[float] | None = None, text_encoder=None) -> torch.Tensor:
    """Encode 77-column chunks separately and join them: 1 x (77 * chunks) x D, the way
    ComfyUI and AUTOMATIC1111 handle prompts past 75 tokens. Weighted tokens move away from
    the empty prompt's encoding as ComfyUI does: z' = (z - z_empty) * w + z_empty.
    Gradients flow when enabled (training a text-encoder LoRA passes its `text_encoder`)."""

    encoder = text_encoder if text_encoder is not None else sd.text_encoder
    device = next(encoder.parameters()).device
    ids = torch.tensor(columns, dtype=torch.long).view(-1, 77).to(device)
    z = encoder(ids)[0]
    if weights is not None and any(w != 1.0 for w in weights):
        empty = torch.tensor([[BOS] + [EOS] * 76], dtype=torch.long, device=device)
        z_empty = encoder(empty)[0]
        w = torch.tensor(weights, dtype=z.dtype, device=z.device).view(-1, 77, 1)
        z = torch.where(w != 1.0, (z - z_empty) * w + z_empty, z)
    return z.reshape(1, -1, z.shape[-1])


def encode_prompt(sd: SD15, text: str, weighted: bool = True, text_encoder=None) -> torch.Tensor:
    """The one text encoding of the project: 1 x (77 * chunks) x D, chunked like ComfyUI.
    `weighted` applies ComfyUI's (word:1.2) weights (prompts); training captions are read
    literally (weighted=False), as kohya does by default."""

    if weighted:
        return encode_columns(sd, *chunk_tokens(sd.tokenizer, text, with_weights=True), text_encoder=text_encoder)
    return encode_columns(sd, chunk_tokens(sd.tokenizer, text), text_encoder=text_encoder)


def join_contexts(contexts: list[torch.Tensor]) -> torch.Tensor:
    """Batch 1 x (77 * k_i) x D encodings: each is repeated to the least common multiple of
    the lengths (ComfyUI's rule). Exact for cross-attention: repeating every key and value
    the same number of times leaves the softmax-weighted average unchanged."""
    import math

    n = math.lcm(*(c.shape[1] for c in contexts))
    return torch.cat([c.repeat(1, n // c.shape[1], 1) for c in contexts])


def initial_noise(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Seeded N(0, 1) latents on the CPU (the same on every device)."""
    return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)


@torch.no_grad()
def decode(sd: SD15, latents: torch.Tensor) -> list[Image.Image]:
    """B x 4 x h x w latents -> B RGB images (8x the latent size)."""
    pixels = sd.vae.decode(latents.to(sd.vae.dtype) / sd.vae_scale).sample.float()
    array = ((pixels.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(np.ascontiguousarray(a)) for a in array]


def predicted_x0(scheduler, latents: torch.Tensor, eps: torch.Tensor, t) -> torch.Tensor:
    """The clean latents the noise prediction `eps` implies at timestep t (every sampler here
    is epsilon-parametrised on SD1.5's schedule): (x_t - sqrt(1 - a_t) eps) / sqrt(a_t)."""
    alpha = scheduler.alphas_cumprod.to(latents.device)[int(t)]
    return (latents - (1 - alpha).sqrt() * eps) / alpha.sqrt()


@torch.no_grad()
def sample(sd: SD15, prompt: str | list[str], settings: SamplingSettings,
           on_step: Callable[[int, int, torch.Tensor, torch.Tensor], None] | None = None, tracer=None,
           seeds: list[int] | None = None) -> torch.Tensor:
    """Sampling (settings.sampler, DDIM by default) with classifier-free guidance. Returns
    latents B x 4 x H/8 x W/8.

    One prompt gives one image from settings.seed. A list of prompts samples them as one batch,
    image k from seeds[k] (default: settings.seed for each): each image starts from the noise it
    would have alone, so a batch draws what one-by-one sampling draws (up to float rounding).
    on_step(step, total, latents, x0_prediction); a heat-map `tracer` captures the
    conditional half of each guidance batch."""
    settings.check()
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    seeds = [settings.seed] * len(prompts) if seeds is None else list(seeds)
    if not prompts or len(seeds) != len(prompts):
        raise InputError("seeds", f"give one seed per prompt ({len(prompts)} prompts, {len(seeds)} seeds)")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= MAX_SEED:
            raise InputError("seed", f"{s!r} is not accepted; use 0 to {MAX_SEED}")
    b = len(prompts)
    scheduler = make_scheduler(sd, settings.sampler, settings.steps)
    negative = encode_prompt(sd, settings.negative)
    context = join_contexts([negative] * b + [encode_prompt(sd, p) for p in prompts]).to(sd.unet.dtype)
    shape = (1, 4, settings.height // 8, settings.width // 8)
    latents = torch.cat([initial_noise(s, shape) for s in seeds]).to(sd.device) * scheduler.init_noise_sigma
    if tracer is not None:
        tracer.cond_rows = torch.arange(b, 2 * b)
    for i, t in enumerate(scheduler.timesteps):
        x = torch.cat([latents, latents]).to(sd.unet.dtype)
        uncond, cond = sd.unet(x, t, encoder_hidden_states=context).sample.float().chunk(2)
        eps = uncond + settings.cfg * (cond - uncond)
        before = latents
        latents = scheduler.step(eps, t, latents).prev_sample
        if on_step is not None:
            on_step(i + 1, len(scheduler.timesteps), latents, predicted_x0(scheduler, before, eps, t))
    return latents


def generate(sd: SD15, prompt: str, settings: SamplingSettings,
             on_step: Callable[[int, int, torch.Tensor], None] | None = None) -> Image.Image:
    """One image for one prompt."""
    return decode(sd, sample(sd, prompt, settings, on_step))[0]
