"""Scene Prompt: one word in, the prompt (and conditioning) a concept was trained on out."""
from __future__ import annotations

from ..word2scene.prompts.knowledge import cached_knowledge, knowledge_signature
from ..word2scene.models.sd15 import load_tokenizer
from ..word2scene.prompts.expander import DETAIL, STYLES, expand
from . import comfy_bridge
from .concept_nodes import CATEGORY, CONCEPT


class ScenePrompt:
    DESCRIPTION = ("Expand a scene word (or a few, comma-separated) into a Word2Scene prompt from the remote-sensing "
                   "knowledge base. Styles: word2scene (trigger words + word, the paper's form), descriptive (with "
                   "elements and relations), plain (no trigger words).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING", "STRING", "STRING", "CONDITIONING", "CONDITIONING")
    RETURN_NAMES = ("positive", "negative", "report", "positive_cond", "negative_cond")
    OUTPUT_TOOLTIPS = ("Positive prompt (fits 77 CLIP tokens).", "Negative prompt.",
                       "What each word matched (exact / alias / fuzzy / unknown) and what was dropped.",
                       "Positive conditioning (needs the clip input).", "Negative conditioning (needs the clip input).")
    FUNCTION = "expand"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "words": ("STRING", {"default": "airport", "tooltip": "Scene word(s): airport, dense residential, "
                                     "机场, DenseResidential, 'airport, river'."}),
                "style": (list(STYLES), {"default": "word2scene"}),
                "detail": ("INT", {"default": 1, "min": 0, "max": max(DETAIL), "tooltip": "How many details (0-3)."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True,
                                 "tooltip": "Chooses which details; the same seed gives the same prompt."}),
            },
            "optional": {
                "concept": (CONCEPT, {"tooltip": "Take the trigger words from this concept."}),
                "clip": ("CLIP", {"tooltip": "Connect to also get CONDITIONING for KSampler."}),
            },
        }

    @classmethod
    def IS_CHANGED(cls, **kwargs):
        return str(knowledge_signature(comfy_bridge.knowledge_dirs()))

    def expand(self, words, style, detail, seed, concept=None, clip=None):
        kb = cached_knowledge(comfy_bridge.knowledge_dirs())
        triggers = concept.info.trigger_words if concept is not None else None
        result = expand(words, style, detail, seed, triggers, kb, load_tokenizer())
        report = "\n".join([f"warning: skipped {p}" for p in kb.problems] + [result.report()])
        positive_cond = negative_cond = None
        if clip is not None:
            positive_cond = comfy_bridge.encode_prompt(clip, result.positive)
            negative_cond = comfy_bridge.encode_prompt(clip, result.negative)
        return {"ui": {"text": [report]},
                "result": (result.positive, result.negative, report, positive_cond, negative_cond)}
