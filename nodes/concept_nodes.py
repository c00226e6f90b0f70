"""Concept Loader and Apply Concept: a concept file in, patched MODEL and CLIP out."""
from __future__ import annotations

from word2scene.concepts.file import STRENGTH_RANGE, check_strength, load_concept
from . import comfy_bridge
from .categories import CONCEPTS
from .inputs import check_numbers

CONCEPT = "W2S_CONCEPT"


class ConceptLoader:
    """Reads a concept (LoRA + metadata) from ComfyUI's loras folders, or one shipped with the pack."""

    NODE_ID = "W2S_ConceptLoader"  # saved workflows refer to it: never changes
    DISPLAY_NAME = "Word2Scene Concept Loader"
    DESCRIPTION = ("Load a Word2Scene concept: a LoRA file with its trigger words, concepts and training facts. "
                   "Lists models/loras (subfolders included), then the concepts shipped for Word2Scene-mini "
                   "(word2scene-mini-c.safetensors: all 30 AID classes).")
    CATEGORY = CONCEPTS
    RETURN_TYPES = (CONCEPT, "STRING")
    RETURN_NAMES = ("concept", "metadata")
    OUTPUT_TOOLTIPS = ("The concept, for Word2Scene Apply Concept (and its trigger words for Scene Prompt).",
                       "The file's metadata as text.")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"concept_name": (comfy_bridge.concept_names(), {
            "tooltip": "A .safetensors LoRA in models/loras (subfolders included): a Word2Scene concept, a kohya "
                       "LoRA or a diffusers/peft LoRA for SD1.5; or a concept shipped for Word2Scene-mini."})}}

    @classmethod
    def IS_CHANGED(cls, concept_name):
        return comfy_bridge.file_fingerprint(lambda: comfy_bridge.concept_path(concept_name))

    def load(self, concept_name):
        concept = load_concept(comfy_bridge.concept_path(concept_name), "concept_name")
        text = concept.describe()
        return {"ui": {"text": [text]}, "result": (concept, text)}


class ApplyConcept:
    """Patches MODEL and CLIP with a concept at the given strengths (like LoraLoader)."""

    NODE_ID = "W2S_ApplyConcept"  # saved workflows refer to it: never changes
    DISPLAY_NAME = "Word2Scene Apply Concept"
    DESCRIPTION = ("Apply a Word2Scene concept to MODEL and CLIP: W' = W + strength * (alpha / rank) * up @ down. "
                   "Strength 0 leaves the model unchanged; chain nodes to stack concepts.")
    CATEGORY = CONCEPTS
    RETURN_TYPES = ("MODEL", "CLIP")
    OUTPUT_TOOLTIPS = ("The patched diffusion model.", "The patched text encoder.")
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        low, high = STRENGTH_RANGE
        strength = {"default": 1.0, "min": low, "max": high, "step": 0.01}
        return {"required": {
            "model": ("MODEL", {"tooltip": "The diffusion model the concept was trained on (SD1.5, or Word2Scene-mini "
                                           "for the mini concepts)."}),
            "clip": ("CLIP", {"tooltip": "That model's text encoder."}),
            "concept": (CONCEPT, {"tooltip": "From Word2Scene Concept Loader."}),
            "strength_model": ("FLOAT", {**strength, "tooltip": "LoRA strength on the UNet (paper: 1.0)."}),
            "strength_clip": ("FLOAT", {**strength, "tooltip": "LoRA strength on the text encoder."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, strength_model=None, strength_clip=None):
        return check_numbers(cls, strength_model=strength_model, strength_clip=strength_clip)

    def apply(self, model, clip, concept, strength_model, strength_clip):
        strength_model = check_strength("strength_model", strength_model)
        strength_clip = check_strength("strength_clip", strength_clip)
        return comfy_bridge.apply_concept(model, clip, concept, strength_model, strength_clip)
