"""Scene Prompt: one word in, the prompt (and conditioning) a concept was trained on out."""
from __future__ import annotations

from word2scene.models.sd15 import load_tokenizer
from word2scene.prompts.expander import DETAIL, STYLES, expand
from word2scene.prompts.knowledge import cached_knowledge, knowledge_signature
from . import comfy_bridge
from .categories import PROMPTS
from .concept_nodes import CONCEPT


class ScenePrompt:
    NODE_ID = "W2S_ScenePrompt"  # saved workflows refer to it: never changes
    DISPLAY_NAME = "Word2Scene Scene Prompt"
    DESCRIPTION = ("Expand a scene word (or a few, comma-separated) into a Word2Scene prompt from the remote-sensing "
                   "knowledge base. Styles: word2scene (trigger words + word, the paper's form), descriptive (with "
                   "elements and relations), plain (no trigger words). The node shows the prompt and what each word "
                   "matched; filename_prefix names saved images after the word.")
    CATEGORY = PROMPTS
    RETURN_TYPES = ("STRING", "STRING", "STRING", "CONDITIONING", "CONDITIONING", "STRING")
    RETURN_NAMES = ("positive", "negative", "report", "positive_cond", "negative_cond", "filename_prefix")
    OUTPUT_TOOLTIPS = ("Positive prompt (fits 77 CLIP tokens).", "Negative prompt.",
                       "What each word matched (exact / alias / fuzzy / unknown) and what was dropped.",
                       "Positive conditioning (needs the clip input).", "Negative conditioning (needs the clip input).",
                       "word2scene/<word>, for Save Image's filename_prefix: files named after the scene.")
    FUNCTION = "expand"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "words": ("STRING", {"default": "airport", "tooltip": "Scene word(s): airport, dense residential, "
                                     "机场, DenseResidential, 'airport, river'."}),
                "style": (list(STYLES), {"default": "word2scene", "tooltip": "word2scene: trigger words + word (the "
                                         "paper's form, what concepts were trained on); descriptive: with elements, "
                                         "relations and colours; plain: descriptive without trigger words."}),
                "detail": ("INT", {"default": 1, "min": 0, "max": max(DETAIL), "tooltip": "How many details (0-3); "
                                   "descriptive and plain styles only."}),
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
        report = comfy_bridge.public_text("\n".join([f"warning: skipped {p}" for p in kb.problems] + [result.report()]))
        positive_cond = negative_cond = None
        if clip is not None:
            positive_cond = comfy_bridge.encode_prompt(clip, result.positive)
            negative_cond = comfy_bridge.encode_prompt(clip, result.negative)
        prefix = f"word2scene/{result.file_stem()}"
        return {"ui": {"text": [report], "positive": [result.positive], "negative": [result.negative]},
                "result": (result.positive, result.negative, report, positive_cond, negative_cond, prefix)}
