"""Heat-map nodes: sample with capture, explain a real image, render overlays and masks."""
from __future__ import annotations

import dataclasses

from word2scene.errors import InputError
from word2scene.scenes.aggregation import HeatMaps
from word2scene.scenes.capture import AttentionCapture
from word2scene.scenes.heatmaps import explainable_image, parse_timesteps
from word2scene.models.sd15 import load_tokenizer
from word2scene.prompts.tokens import PromptLayout, check_prompt_text
from word2scene.scenes.sampling import SamplingSettings
from word2scene.settings import node_input
from . import comfy_bridge
from .categories import INTERPRETABILITY
from .inputs import check_numbers

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
    NODE_ID = "W2S_KSamplerHeatmaps"  # saved workflows refer to it: never changes
    DISPLAY_NAME = "Word2Scene KSampler (Heat Maps)"
    DESCRIPTION = ("KSampler that also records cross-attention heat maps (DAAM) for the prompt's words. The maps come "
                   "out of the node that samples, so they always belong to this image.")
    CATEGORY = INTERPRETABILITY
    RETURN_TYPES = ("LATENT", HEATMAPS)
    RETURN_NAMES = ("LATENT", "heatmaps")
    OUTPUT_TOOLTIPS = ("The sampled latent, for VAE Decode (as KSampler's).",
                       "Cross-attention heat maps of the prompt's words, for Word2Scene Heat Map.")
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The model to sample with (SD1.5 layout: 16 cross-attention "
                                               "sites, e.g. SD1.5 or Word2Scene-mini)."}),
                "seed": node_input(SamplingSettings, "seed", control_after_generate=True),
                "steps": node_input(SamplingSettings, "steps"),
                "cfg": node_input(SamplingSettings, "cfg", step=0.1, round=0.01),
                "sampler_name": (comfy_bridge.sampler_names(), {"default": "ddim", "tooltip": "KSampler's "
                                 "sampler (the paper: ddim)."}),
                "scheduler": (comfy_bridge.scheduler_names(), {"default": "ddim_uniform", "tooltip": "KSampler's "
                              "scheduler (the paper: ddim_uniform)."}),
                "positive": ("CONDITIONING", {"tooltip": "The positive conditioning: its words get maps."}),
                "negative": ("CONDITIONING", {"tooltip": "The negative conditioning."}),
                "latent_image": ("LATENT", {"tooltip": "The latent to denoise (Empty Latent Image: 128 x 128 for "
                                            "Word2Scene-mini, 512 x 512 for SD1.5)."}),
                "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                      "tooltip": "How much of the latent to replace (1: all, as from noise)."}),
                "prompt": ("STRING", {"multiline": True, "default": "gs, geographic scene, church",
                                      "tooltip": "The positive prompt's text, to find each word's tokens."}),
            },
            "optional": {"clip": ("CLIP", {"tooltip": "Connect to tokenize exactly as the positive conditioning was."})},
        }

    @classmethod
    def VALIDATE_INPUTS(cls, cfg=None, denoise=None):
        return check_numbers(cls, cfg=cfg, denoise=denoise)

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
    NODE_ID = "W2S_ExplainImage"  # saved workflows refer to it: never changes
    DISPLAY_NAME = "Word2Scene Explain Image"
    DESCRIPTION = ("Heat maps for a REAL image: encode it, add noise at the chosen timesteps, one UNet pass each, "
                   "capture cross-attention. Shows what a concept learned (the paper's interpretability figure).")
    CATEGORY = INTERPRETABILITY
    RETURN_TYPES = (HEATMAPS,)
    RETURN_NAMES = ("heatmaps",)
    OUTPUT_TOOLTIPS = ("Cross-attention heat maps of the prompt's words over the image, for Word2Scene Heat Map.",)
    FUNCTION = "explain"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {"tooltip": "A real image to explain (resized to a multiple of 8 px a side if it is "
                                           "not, as the CLI does; the Heat Map node says so)."}),
            "model": ("MODEL", {"tooltip": "The model (with its concept applied) whose attention to read."}),
            "clip": ("CLIP", {"tooltip": "That model's text encoder, to encode and tokenize the prompt."}),
            "vae": ("VAE", {"tooltip": "That model's VAE, to encode the image."}),
            "prompt": ("STRING", {"multiline": True, "default": "gs, geographic scene, church, blue roof",
                                  "tooltip": "The words to look for in the image."}),
            "timesteps": ("STRING", {"default": "100, 300, 500", "tooltip": "DDPM timesteps 0-999, comma-separated."}),
            "seed": node_input(SamplingSettings, "seed", control_after_generate=True),
        }}

    def explain(self, image, model, clip, vae, prompt, timesteps, seed):
        prepared = [explainable_image(im) for im in comfy_bridge.tensor_to_images(image)]
        layout = _layout(prompt, clip)
        steps = parse_timesteps(timesteps)
        w, h = prepared[0][0].size
        capture = AttentionCapture((h // 8, w // 8))
        pixels = comfy_bridge.images_to_tensor([im for im, _ in prepared]) if prepared[0][1] else image
        comfy_bridge.explain_passes(model, clip, vae, pixels, prompt, steps, seed, capture)
        return (HeatMaps(capture, layout, (h, w), passes=len(steps), note=prepared[0][1]),)


class Heatmap:
    NODE_ID = "W2S_Heatmap"  # saved workflows refer to it: never changes
    DISPLAY_NAME = "Word2Scene Heat Map"
    DESCRIPTION = "Render heat maps over images: overlays, masks (threshold) and per-word scores."
    CATEGORY = INTERPRETABILITY
    RETURN_TYPES = ("IMAGE", "MASK", "STRING")
    RETURN_NAMES = ("overlays", "masks", "scores")
    OUTPUT_TOOLTIPS = ("One overlay per image and word (the node shows one word at a time: click its chip).",
                       "One mask per image and word: the map above the threshold.",
                       "Per word: the share of the image above the threshold and the map's peak.")
    OUTPUT_NODE = True
    FUNCTION = "render"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "heatmaps": (HEATMAPS, {"tooltip": "From KSampler (Heat Maps) or Explain Image."}),
            "image": ("IMAGE", {"tooltip": "The images to draw the maps over (the decoded sample, or the explained "
                                           "image)."}),
            "words": ("STRING", {"default": "", "tooltip": "Comma-separated words or phrases; empty: every content word."}),
            "threshold": ("FLOAT", {"default": 0.4, "min": 0.0, "max": 1.0, "step": 0.05,
                                    "tooltip": "Mask cut-off on the map normalised to 0-1."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, threshold=None):
        return check_numbers(cls, threshold=threshold)

    def render(self, heatmaps, image, words, threshold):
        b, h, w = image.shape[:3]
        notes = [f"note: the explained image was {heatmaps.note}"] if heatmaps.note else []
        if (h, w) != heatmaps.image_size:
            notes.append(f"note: maps were made for {heatmaps.image_size[1]} x {heatmaps.image_size[0]}; resized to "
                         f"{w} x {h}")
        heat = dataclasses.replace(heatmaps, image_size=(h, w))
        word_maps = heat.words([x for x in words.split(",")], threshold)
        labels = word_maps.labels
        overlays = word_maps.overlays(comfy_bridge.tensor_to_images(image))
        m = word_maps.masks()
        mask_list = [m[i if m.shape[0] == b else 0, k] for i in range(b) for k in range(len(labels))]
        import torch

        text = "\n".join(notes + word_maps.score_lines())
        # the overlays again for the node itself: its word chips show one word's overlay at a time
        return {"ui": {"text": [text], "words": labels, "overlays": comfy_bridge.temp_images(overlays, "w2s_heatmap")},
                "result": (comfy_bridge.images_to_tensor(overlays), torch.stack(mask_list), text)}
