"""Evaluate: GSHPS, FID, KID (and CLIP score) of a generated batch against real images."""
from __future__ import annotations

from word2scene.errors import InputError
from word2scene.evaluation.image_sets import image_set
from word2scene.evaluation.scoring import EvaluationSettings, evaluate_batch
from . import comfy_bridge
from .categories import EVALUATION

SAME = "(same as features)"
NONE = "none"


class Evaluate:
    NODE_ID = "W2S_Evaluate"  # saved workflows refer to it: never changes
    DISPLAY_NAME = "Word2Scene Evaluate"
    DESCRIPTION = ("Compare a batch of generated images with real ones: the paper's GSHPS, FID and KID, each computed "
                   "with the feature network named in the report, and CLIP score when a CLIP folder is chosen. The "
                   "scene classifier shipped with the pack (aid-scene-cnn.safetensors, trained on AID) is the default "
                   "network; others go in models/word2scene_eval (nothing is downloaded). The report checks the "
                   "network on the real images and flags figures from too few images.")
    CATEGORY = EVALUATION
    RETURN_TYPES = ("STRING", "FLOAT", "FLOAT", "FLOAT")
    RETURN_NAMES = ("report", "gshps", "fid", "kid")
    OUTPUT_TOOLTIPS = ("The report as a markdown table, with its warnings and the feature network check.",
                       "GSHPS overall (1 = the same mean features as the real images; higher is better).",
                       "FID overall (lower is better; NaN with fewer than 2 images).",
                       "KID overall (lower is better; NaN with fewer than 2 images).")
    FUNCTION = "evaluate"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        weights = comfy_bridge.evaluation_weight_names()
        return {"required": {
            "images": ("IMAGE", {"tooltip": "The generated images (all of one concept)."}),
            "reference_folder": ("STRING", {"default": "", "tooltip": "Real images: class folders or captions.jsonl "
                                            "(absolute, or relative to ComfyUI's input folder)."}),
            "concept": ("STRING", {"default": "", "tooltip": "The reference class the batch shows (e.g. airport); "
                                   "empty: every reference image."}),
            "features": (weights or [NONE], {"tooltip": "Feature network for GSHPS (and FID/KID unless set below): "
                                             "the shipped aid-scene-cnn.safetensors, or weights in "
                                             "models/word2scene_eval."}),
            "fid_features": ([SAME] + weights, {"tooltip": "Feature network for FID/KID, e.g. pytorch-fid's Inception."}),
        }, "optional": {
            "reference_split": ("STRING", {"default": "all", "tooltip": "captions.jsonl split of the reference, or all."}),
            "clip": ([NONE] + comfy_bridge.evaluation_clip_names(), {"tooltip": "A transformers CLIP folder: adds CLIP score."}),
            "prompt": ("STRING", {"default": "", "multiline": True, "tooltip": "The prompt the batch was made from (CLIP "
                                  "score); empty: the concept word."}),
        }}

    @classmethod
    def IS_CHANGED(cls, reference_folder="", features=NONE, fid_features=SAME, clip=NONE, **kwargs):
        # the real images and the networks are read by name: a change to any re-runs the node
        return comfy_bridge.file_fingerprint(lambda: [
            comfy_bridge.dataset_folder(reference_folder, "reference_folder"),
            *[comfy_bridge.evaluation_path(n, v) for n, v in (("features", features), ("fid_features", fid_features),
                                                               ("clip", clip)) if v not in (NONE, SAME)]])

    def evaluate(self, images, reference_folder, concept, features, fid_features, reference_split="all", clip=NONE,
                 prompt=""):
        if features == NONE:
            raise InputError("features", f"no networks in ComfyUI's models/{comfy_bridge.EVALUATION_FOLDER} folder and "
                                         "none shipped with this copy of the pack; put a classifier trained with "
                                         "`python -m word2scene classifier train` or VGG16 / Inception-v3 weights there")
        split = None if reference_split.strip() in ("", "all") else reference_split.strip()
        reference = image_set(comfy_bridge.dataset_folder(reference_folder, "reference_folder"), "reference_folder", split,
                              split_input="reference_split")
        settings = EvaluationSettings(
            features=comfy_bridge.evaluation_path("features", features),
            fid_features=None if fid_features == SAME else comfy_bridge.evaluation_path("fid_features", fid_features),
            clip=None if clip == NONE else comfy_bridge.evaluation_path("clip", clip))
        report = evaluate_batch(comfy_bridge.tensor_to_images(images), reference, concept, settings, prompt)
        text = report.to_markdown()
        return {"ui": {"text": [text], "warnings": list(report.warnings)},
                "result": (text, report.overall("GSHPS"), report.overall("FID"), report.overall("KID"))}
