"""Concept Loader and Apply Concept: a concept file in, patched MODEL and CLIP out."""
from __future__ import annotations

import os

from ..word2scene.concepts.file import STRENGTH_RANGE, check_strength, load_concept
from . import comfy_bridge

CATEGORY = "Word2Scene"
CONCEPT = "W2S_CONCEPT"


class ConceptLoader:
    """Reads a concept (LoRA + metadata) from ComfyUI's loras folders."""

    DESCRIPTION = "Load a Word2Scene concept: a LoRA file with its trigger words, concepts and training facts."
    CATEGORY = CATEGORY
    RETURN_TYPES = (CONCEPT, "STRING")
    RETURN_NAMES = ("concept", "metadata")
    OUTPUT_TOOLTIPS = ("The concept, for Word2Scene Apply Concept.", "The file's metadata as text.")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"concept_name": (comfy_bridge.concept_names(), {
            "tooltip": "A .safetensors LoRA in models/loras (subfolders included): a Word2Scene concept, "
                       "a kohya LoRA or a diffusers/peft LoRA for SD1.5."})}}

    @classmethod
    def IS_CHANGED(cls, concept_name):
        try:
            st = os.stat(comfy_bridge.concept_path(concept_name))
            return f"{st.st_mtime_ns}:{st.st_size}"
        except Exception:  # let load() report the error with its message
            return float("nan")

    def load(self, concept_name):
        concept = load_concept(comfy_bridge.concept_path(concept_name), "concept_name")
        text = concept.describe()
        return {"ui": {"text": [text]}, "result": (concept, text)}


class ApplyConcept:
    """Patches MODEL and CLIP with a concept at the given strengths (like LoraLoader)."""

    DESCRIPTION = ("Apply a Word2Scene concept to MODEL and CLIP: W' = W + strength * (alpha / rank) * up @ down. "
                   "Strength 0 leaves the model unchanged; chain nodes to stack concepts.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MODEL", "CLIP")
    OUTPUT_TOOLTIPS = ("The patched diffusion model.", "The patched text encoder.")
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        low, high = STRENGTH_RANGE
        strength = {"default": 1.0, "min": low, "max": high, "step": 0.01}
        return {"required": {
            "model": ("MODEL", {"tooltip": "The SD1.5 diffusion model."}),
            "clip": ("CLIP", {"tooltip": "The SD1.5 text encoder."}),
            "concept": (CONCEPT, {"tooltip": "From Word2Scene Concept Loader."}),
            "strength_model": ("FLOAT", {**strength, "tooltip": "LoRA strength on the UNet (paper: 1.0)."}),
            "strength_clip": ("FLOAT", {**strength, "tooltip": "LoRA strength on the text encoder."}),
        }}

    def apply(self, model, clip, concept, strength_model, strength_clip):
        strength_model = check_strength("strength_model", strength_model)
        strength_clip = check_strength("strength_clip", strength_clip)
        return comfy_bridge.apply_concept(model, clip, concept, strength_model, strength_clip)
