"""Cross-attention heat maps (DAAM, Tang et al., ACL 2023) of standalone runs on the
diffusers back end: sample with capture (`generate_with_heatmaps`), or explain a real image
(`explain_image`). Each run captures (capture.py) and returns HeatMaps (aggregation.py),
whose `words(...)` are the word maps the CLI renders (render.py). The ComfyUI nodes capture
through their own back end into the same AttentionCapture and HeatMaps.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..errors import InputError
from ..models.diffusion import pixels_to_tensor
from ..prompts.tokens import chunk_tokens, PromptLayout
from .aggregation import HeatMaps
from .capture import DiffusersTracer
from .sampling import decode, encode_columns, initial_noise, sample


def parse_timesteps(text: str, input_name: str = "timesteps") -> list[int]:
    """"100, 300, 500" -> [100, 300, 500]: DDPM timesteps, each 0 to 999."""
    try:
        steps = [int(t) for t in str(text).replace(" ", "").split(",") if t]
    except ValueError:
        raise InputError(input_name, f"{text!r}; give integers 0-999 like 100, 300, 500") from None
    if not steps or any(not 0 <= t < 1000 for t in steps):
        raise InputError(input_name, f"{text!r} outside the schedule; use integers 0 to 999")
    return steps


def _layout(sd, prompt: str, columns: list[int]) -> PromptLayout:
    return PromptLayout(prompt, columns, sd.tokenizer)


@torch.no_grad()
def generate_with_heatmaps(sd, prompt: str, settings, every: int = 0, words: list[str] | None = None):
    """Sample with capture. Returns (image, HeatMaps, frames): frames are (x0 image,
    normalised word maps) every `every` steps (for the process animation), else empty."""

    settings.check()
    if not prompt.strip():
        raise InputError("prompt", "is empty; give the prompt whose words to map")
    layout = _layout(sd, prompt, chunk_tokens(sd.tokenizer, prompt))
    frames = []
    with DiffusersTracer(sd.unet, (settings.height // 8, settings.width // 8)) as tracer:
        heat = HeatMaps(tracer.capture, layout, (settings.height, settings.width))

        def on_step(step, total, latents, x0):
            heat.passes = step
            if every and (step % every == 0 or step == total):
                shown = heat.words(words)
                frames.append((decode(sd, x0)[0], shown.labels, shown.normalized()[0]))
        latents = sample(sd, prompt, settings, on_step=on_step, tracer=tracer)
    return decode(sd, latents)[0], heat, frames


MIN_EXPLAINED_SIDE = 8  # pixels: one latent cell


def check_explainable(width: int, height: int, input_name: str = "image") -> None:
    """A real image to explain is at least MIN_EXPLAINED_SIDE px a side (the CLI, the library
    and the Explain Image node alike)."""
    if min(width, height) < MIN_EXPLAINED_SIDE:
        raise InputError(input_name, f"{width} x {height} px is too small to explain; "
                                     f"accepted: at least {MIN_EXPLAINED_SIDE} px per side")


def explainable_image(image: Image.Image, input_name: str = "image") -> tuple[Image.Image, str | None]:
    """A real image as it is explained (the library, the CLI and the Explain Image node alike):
    RGB, at least MIN_EXPLAINED_SIDE px a side, and resized (bicubic) down to multiples of 8
    px a side when it is not (one latent cell is 8 x 8 px). Returns (the image, a note saying
    how it was resized, or None)."""
    check_explainable(*image.size, input_name)
    image = image.convert("RGB")
    width, height = image.size
    if not (width % 8 or height % 8):
        return image, None
    width, height = max(8, width // 8 * 8), max(8, height // 8 * 8)
    return image.resize((width, height), Image.BICUBIC), f"resized to {width} x {height} (a multiple of 8)"


@torch.no_grad()
def explain_image(sd, image, prompt: str, timesteps: list[int], seed: int = 0) -> tuple:
    """DAAM on a real image: encode it, noise it at each timestep (fixed seed), run one
    conditional UNet pass each, capture. Returns (the image as used, HeatMaps)."""
    from diffusers import DDPMScheduler

    if not prompt.strip():
        raise InputError("prompt", "is empty; give the prompt whose words to map")
    n_train = int(sd.configs["scheduler"].get("num_train_timesteps", 1000))
    bad = [t for t in timesteps if not 0 <= int(t) < n_train]
    if bad or not timesteps:
        raise InputError("timesteps", f"{bad or timesteps} outside the schedule; use integers 0 to {n_train - 1}")
    image, note = explainable_image(image)
    width, height = image.size
    pixels = pixels_to_tensor(np.array(image)[None])
    latents = sd.vae.encode(pixels.to(sd.device, sd.vae.dtype)).latent_dist.mean.float() * sd.vae_scale
    schedule = DDPMScheduler.from_config(sd.configs["scheduler"])
    columns, weights = chunk_tokens(sd.tokenizer, prompt, with_weights=True)
    context = encode_columns(sd, columns, weights).to(sd.unet.dtype)
    layout = _layout(sd, prompt, columns)
    with DiffusersTracer(sd.unet, tuple(latents.shape[-2:])) as tracer:
        tracer.cond_rows = torch.tensor([0])
        for i, t in enumerate(timesteps):
            noise = initial_noise(seed + i, tuple(latents.shape)).to(sd.device)
            t_ = torch.tensor([int(t)])
            noisy = schedule.add_noise(latents.cpu(), noise.cpu(), t_).to(sd.device, sd.unet.dtype)
            sd.unet(noisy, t_.to(sd.device), encoder_hidden_states=context)
        heat = HeatMaps(tracer.capture, layout, (height, width), passes=len(timesteps), note=note)
    return image, heat
