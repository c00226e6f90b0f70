"""Heat-map nodes: sample with capture, explain a real image, render overlays and masks."""
from __future__ import annotations

import dataclasses

from ..word2scene.errors import InputError
from ..word2scene.scenes.heatmaps import AttentionCapture, HeatMaps, masks, normalize, word_scores
from ..word2scene.models.sd15 import load_tokenizer
from ..word2scene.prompts.tokens import PromptLayout
from . import comfy_bridge
from .concept_nodes import CATEGORY

HEATMAPS = "W2S_HEATMAPS"


def _layout(prompt: str, clip) -> PromptLayout:
    if not prompt or not prompt.strip():
        raise InputError("prompt", "is empty; give the prompt text whose words to map")
    try:
        return PromptLayout(prompt, comfy_bridge.prompt_columns(prompt, clip), load_tokenizer())
    except ValueError as exc:
        raise InputError("prompt", f"{exc}; the prompt text must be the positive prompt's text") from None


class KSamplerHeatmaps:
    DESCRIPTION = ("KSampler that also records cross-attention heat maps (DAAM) for the prompt's words. The maps come "
                   "out of the node that samples, so they always belong to this image.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT", HEATMAPS)
    RETURN_NAMES = ("LATENT", "heatmaps")
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        import comfy.samplers

        return {
            "required": {
                "model": ("MODEL",),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True}),
                "steps": ("INT", {"default": 30, "min": 1, "max": 10000}),
                "cfg": ("FLOAT", {"default": 7.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}),
                "sampler_name": (comfy.samplers.KSampler.SAMPLERS, {"default": "ddim"}),
                "scheduler": (comfy.samplers.KSampler.SCHEDULERS, {"default": "ddim_uniform"}),
                "positive": ("CONDITIONING",),
                "negative": ("CONDITIONING",),
                "latent_image": ("LATENT",),
                "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
                "prompt": ("STRING", {"multiline": True, "default": "gs, geographic scene, church",
                                      "tooltip": "The positive prompt's text, to find each word's tokens."}),
            },
            "optional": {"clip": ("CLIP", {"tooltip": "Connect to tokenize exactly as the positive conditioning was."})},
        }

    def sample(self, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise,
               prompt, clip=None):
        layout = _layout(prompt, clip)
        samples = latent_image["samples"]
        capture = AttentionCapture(tuple(samples.shape[-2:]))
        out = comfy_bridge.sample_with_heatmaps(model, seed, steps, cfg, sampler_name, scheduler, positive, negative,
                                                latent_image, denoise, capture)
        heat = HeatMaps(capture, layout, (samples.shape[-2] * 8, samples.shape[-1] * 8), passes=steps)
        return (out, heat)


class ExplainImage:
    DESCRIPTION = ("Heat maps for a REAL image: encode it, add noise at the chosen timesteps, one UNet pass each, "
                   "capture cross-attention. Shows what a concept learned (the paper's interpretability figure).")
    CATEGORY = CATEGORY
    RETURN_TYPES = (HEATMAPS,)
    RETURN_NAMES = ("heatmaps",)
    FUNCTION = "explain"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE",), "model": ("MODEL",), "clip": ("CLIP",), "vae": ("VAE",),
            "prompt": ("STRING", {"multiline": True, "default": "gs, geographic scene, church, blue roof"}),
            "timesteps": ("STRING", {"default": "100, 300, 500", "tooltip": "DDPM timesteps 0-999, comma-separated."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True}),
        }}

    def explain(self, image, model, clip, vae, prompt, timesteps, seed):
        layout = _layout(prompt, clip)
        try:
            steps = [int(t) for t in str(timesteps).replace(" ", "").split(",") if t]
        except ValueError:
            raise InputError("timesteps", f"{timesteps!r}; give integers 0-999 like 100, 300, 500") from None
        if not steps or any(not 0 <= t < 1000 for t in steps):
            raise InputError("timesteps", f"{timesteps!r} outside the schedule; use integers 0 to 999")
        h, w = image.shape[1] // 8 * 8, image.shape[2] // 8 * 8
        if (h, w) != tuple(image.shape[1:3]):
            image = image[:, :h, :w]
        capture = AttentionCapture((h // 8, w // 8))
        comfy_bridge.explain_passes(model, clip, vae, image, prompt, steps, seed, capture)
        return (HeatMaps(capture, layout, (h, w), passes=len(steps)),)


class Heatmap:
    DESCRIPTION = "Render heat maps over images: overlays, masks (threshold) and per-word scores."
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "MASK", "STRING")
    RETURN_NAMES = ("overlays", "masks", "scores")
    OUTPUT_NODE = True
    FUNCTION = "render"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "heatmaps": (HEATMAPS,), "image": ("IMAGE",),
            "words": ("STRING", {"default": "", "tooltip": "Comma-separated words or phrases; empty: every content word."}),
            "threshold": ("FLOAT", {"default": 0.4, "min": 0.0, "max": 1.0, "step": 0.05}),
        }}

    def render(self, heatmaps, image, words, threshold):
        from ..word2scene.scenes.render import overlay

        b, h, w = image.shape[:3]
        note = ""
        if (h, w) != heatmaps.image_size:
            note = f"note: maps were made for {heatmaps.image_size[1]} x {heatmaps.image_size[0]}; resized to {w} x {h}"
        heat = dataclasses.replace(heatmaps, image_size=(h, w))
        labels, maps = heat.word_maps([x for x in words.split(",")])
        if maps.shape[0] not in (1, b):
            raise InputError("image", f"{b} images for heat maps of a batch of {maps.shape[0]}")
        shown, m = normalize(maps), masks(maps, threshold)
        overlays, mask_list = [], []
        for i, pil in enumerate(comfy_bridge.tensor_to_images(image)):
            j = i if maps.shape[0] == b else 0
            for k, label in enumerate(labels):
                overlays.append(overlay(pil, shown[j, k], label))
                mask_list.append(m[j, k])
        import torch

        scores = word_scores(labels, maps, threshold)
        text = "\n".join([note] * bool(note) + [f"image {s['image']} {s['word']}: mean {s['mean']:.5f}, peak {s['peak']:.5f}, "
                                                 f"area {s['area']:.1%}" for s in scores])
        return {"ui": {"text": [text], "words": labels},
                "result": (comfy_bridge.images_to_tensor(overlays), torch.stack(mask_list), text)}
