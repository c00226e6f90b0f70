"""Strength Grid: the paper's epoch x strength figure as one node."""
from __future__ import annotations

from word2scene.concepts.file import load_concept
from word2scene.errors import InputError
from word2scene.scenes.strength_study import PAPER_STRENGTHS, parse_strengths, study_grid, study_title
from word2scene.scenes.sampling import SamplingSettings
from word2scene.settings import node_input
from . import comfy_bridge
from .categories import SAMPLING
from .inputs import check_numbers


class StrengthGrid:
    NODE_ID = "W2S_StrengthGrid"  # saved workflows refer to it: never changes
    DISPLAY_NAME = "Word2Scene Strength Grid"
    DESCRIPTION = ("The same prompt and seed across LoRA strengths (columns) and concept files such as epoch "
                   "checkpoints (rows), assembled into one labelled grid: the paper's epoch x strength study.")
    CATEGORY = SAMPLING
    RETURN_TYPES = ("IMAGE", "IMAGE")
    RETURN_NAMES = ("grid", "cells")
    OUTPUT_TOOLTIPS = ("One labelled sheet: rows = concept files, columns = strengths.",
                       "Every cell as its own image, row by row.")
    FUNCTION = "grid"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The base model the concepts were trained on (unpatched)."}),
            "clip": ("CLIP", {"tooltip": "Its text encoder (unpatched)."}),
            "vae": ("VAE", {"tooltip": "Its VAE, to decode each cell."}),
            "concepts": ("STRING", {"default": "word2scene.safetensors", "tooltip": "Concept files in the loras folders, "
                                    "comma-separated, one row each (e.g. word2scene/church-000005.safetensors, ...)."}),
            "strengths": ("STRING", {"default": PAPER_STRENGTHS, "tooltip": "One column per strength (default: the "
                                     "paper's study, 0 to 1.0 in 0.1 steps)."}),
            "prompt": ("STRING", {"multiline": True, "default": "gs, geographic scene, church",
                                  "tooltip": "The prompt of every cell."}),
            "negative": ("STRING", {"multiline": True, "default": "", "tooltip": "The negative prompt (the paper: empty)."}),
            "seed": node_input(SamplingSettings, "seed", control_after_generate=True),
            "steps": node_input(SamplingSettings, "steps"),
            "cfg": node_input(SamplingSettings, "cfg", step=0.1, round=0.01),
            "sampler_name": (comfy_bridge.sampler_names(), {"default": "ddim", "tooltip": "KSampler's sampler "
                             "(the paper: ddim)."}),
            "scheduler": (comfy_bridge.scheduler_names(), {"default": "ddim_uniform", "tooltip": "KSampler's "
                          "scheduler (the paper: ddim_uniform)."}),
            "width": node_input(SamplingSettings, "width", min=64, step=8),
            "height": node_input(SamplingSettings, "height", min=64, step=8),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, cfg=None):
        return check_numbers(cls, cfg=cfg)

    @classmethod
    def IS_CHANGED(cls, concepts, **kwargs):
        return comfy_bridge.file_fingerprint(lambda: [comfy_bridge.concept_path(n.strip(), "concepts")
                                                      for n in concepts.split(",") if n.strip()])

    def grid(self, model, clip, vae, concepts, strengths, prompt, negative, seed, steps, cfg, sampler_name, scheduler,
             width, height):
        columns = parse_strengths(strengths)
        names = [n.strip() for n in concepts.split(",") if n.strip()]
        if not names:
            raise InputError("concepts", "is empty; give concept files from the loras folders, comma-separated, one "
                                         "row each (e.g. word2scene/church-000005.safetensors)")
        loaded = [load_concept(comfy_bridge.concept_path(n, "concepts"), "concepts") for n in names]

        def draw(concept, strength):
            m, c = comfy_bridge.apply_concept(model, clip, concept, strength, strength)
            return comfy_bridge.sample_image(m, c, vae, prompt, negative, seed, steps, cfg, sampler_name, scheduler, width,
                                             height)
        sheet, cells = study_grid(loaded, columns, draw, study_title(prompt, seed, steps, cfg))
        return (comfy_bridge.images_to_tensor([sheet]), comfy_bridge.images_to_tensor([im for row in cells for im in row]))
