"""Heat maps through ComfyUI: the attn2 patch, prompt columns with ComfyUI's tokenizer,
and sampling with ComfyUI's samplers."""
from __future__ import annotations

from word2scene.models.sd15 import load_tokenizer
from word2scene.prompts.tokens import chunk_tokens
from word2scene.scenes.capture import conditional_rows, cross_attention

# SD1.5's 16 cross-attention sites in ComfyUI's block numbering
ATTN2_SITES = [("input", n) for n in (1, 2, 4, 5, 7, 8)] + [("middle", 0)] + [("output", n) for n in range(3, 12)]


def encode_prompt(clip, text: str):
    """CONDITIONING for a prompt, as CLIPTextEncode makes it."""
    tokens = clip.tokenize(text)
    return clip.encode_from_tokens_scheduled(tokens)


def heatmap_patched(model, capture):
    """A clone of MODEL whose 16 SD1.5 attn2 sites compute explicit probabilities and add
    the conditional rows to `capture` (cond and uncond may come together or apart)."""

    def site(layer: str):
        def attn2(q, k, v, extra_options):
            rows = conditional_rows(extra_options.get("cond_or_uncond", [0]), q.shape[0])
            return cross_attention(q, k, v, extra_options["n_heads"], capture, layer, rows)
        return attn2

    patched = model.clone()
    for block, number in ATTN2_SITES:
        patched.set_model_attn2_replace(site(f"{block}_{number}"), block, number, 0)
    return patched


def prompt_columns(text: str, clip=None) -> list[int]:
    """Column token ids of a prompt: CLIP's own tokenization when a CLIP is given, else the
    same layout rule computed by the core."""

    if clip is not None:
        tokens = clip.tokenize(text)
        chunks = tokens.get("l") or next(iter(tokens.values()))
        return [int(t[0]) for chunk in chunks for t in chunk]
    return chunk_tokens(load_tokenizer(), text)


def sample_with_heatmaps(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent, denoise, capture):
    """Stock KSampler sampling (live previews, progress bar, Cancel) on the patched clone."""
    import nodes

    return nodes.common_ksampler(heatmap_patched(model, capture), seed, steps, cfg, sampler_name, scheduler,
                                 positive, negative, latent, denoise=denoise)[0]


def explain_passes(model, clip, vae, image, prompt: str, timesteps: list[int], seed: int, capture):
    """Encode a real image, noise it at each timestep, one conditional UNet pass each."""
    import comfy.sample
    import comfy.samplers
    import torch

    latent = vae.encode(image[:, :, :, :3])
    cond = clip.encode_from_tokens_scheduled(clip.tokenize(prompt))
    patched = heatmap_patched(model, capture)
    sampling = patched.get_model_object("model_sampling")
    for i, t in enumerate(timesteps):
        sigma = sampling.sigma(torch.tensor([float(t)]))
        sigmas = torch.cat([sigma.flatten(), torch.zeros(1)])
        noise = comfy.sample.prepare_noise(latent, seed + i)
        comfy.sample.sample_custom(patched, noise, 1.0, comfy.samplers.sampler_object("euler"), sigmas, cond, cond,
                                   latent, disable_pbar=True, seed=seed + i)
    return latent


def sample_image(model, clip, vae, prompt: str, negative: str, seed: int, steps: int, cfg: float, sampler_name: str,
                 scheduler: str, width: int, height: int):
    """One image through stock KSampler sampling and VAE decoding, as a PIL image."""
    import nodes
    import torch
    from PIL import Image

    latent = {"samples": torch.zeros([1, 4, height // 8, width // 8])}
    out = nodes.common_ksampler(model, seed, steps, cfg, sampler_name, scheduler, encode_prompt(clip, prompt),
                                encode_prompt(clip, negative), latent)[0]
    pixels = vae.decode(out["samples"])
    pixels = pixels.reshape(-1, *pixels.shape[-3:])[0]
    return Image.fromarray((pixels.clamp(0, 1).cpu().numpy() * 255).round().astype("uint8"))
