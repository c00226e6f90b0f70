"""Heat-map nodes: sample with capture, explain a real image, render overlays and masks."""
from __future__ import annotations

import dataclasses

from ..word2scene.errors import InputError
from ..word2scene.scenes.heatmaps import AttentionCapture, check_explainable, HeatMaps, parse_timesteps
from ..word2scene.models.sd15 import load_tokenizer
from ..word2scene.prompts.tokens import PromptLayout, check_prompt_text
from ..word2scene.scenes.sampling import SamplingSettings
from ..word2scene.settings import node_input
from . import comfy_bridge
from .concept_nodes import CATEGORY

HEATMAPS = "W2S_HEATMAPS"


def _layout(prompt: str, clip) -> PromptLayout:
    if not prompt or not prompt.strip():
        raise InputError("prompt", "is empty; give the prompt text whose words to map")
    check_prompt_text(prompt)  # before ComfyUI's tokenizer, which reads \x00 and \x01 as escapes
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
        return {
            "required": {
                "model": ("MODEL",),
                "seed": node_input(SamplingSettings, "seed", control_after_generate=True),
                "steps": node_input(SamplingSettings, "steps"),
                "cfg": node_input(SamplingSettings, "cfg", step=0.1, round=0.01),
                "sampler_name": (comfy_bridge.sampler_names(), {"default": "ddim"}),
                "scheduler": (comfy_bridge.scheduler_names(), {"default": "ddim_uniform"}),
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
            "seed": node_input(SamplingSettings, "seed", control_after_generate=True),
        }}

    def explain(self, image, model, clip, vae, prompt, timesteps, seed):
        check_explainable(image.shape[2], image.shape[1])
        layout = _layout(prompt, clip)
        steps = parse_timesteps(timesteps)
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
        b, h, w = image.shape[:3]
        note = ""
        if (h, w) != heatmaps.image_size:
            note = f"note: maps were made for {heatmaps.image_size[1]} x {heatmaps.image_size[0]}; resized to {w} x {h}"
        heat = dataclasses.replace(heatmaps, image_size=(h, w))
        word_maps = heat.words([x for x in words.split(",")], threshold)
        labels = word_maps.labels
        overlays = word_maps.overlays(comfy_bridge.tensor_to_images(image))
        m = word_maps.masks()
        mask_list = [m[i if m.shape[0] == b else 0, k] for i in range(b) for k in range(len(labels))]
        import torch

        text = "\n".join([note] * bool(note) + word_maps.score_lines())
        # the overlays again for the node itself: its word chips show one word's overlay at a time
        return {"ui": {"text": [text], "words": labels, "overlays": comfy_bridge.temp_images(overlays, "w2s_heatmap")},
                "result": (comfy_bridge.images_to_tensor(overlays), torch.stack(mask_list), text)}
