"""Mini Loader: Word2Scene's own small SD1.x-layout checkpoints as MODEL, CLIP and VAE."""
from __future__ import annotations

from word2scene.errors import InputError
from word2scene.models.ldm_configs import checkpoint_configs, ldm_configs
from word2scene.models.weight_files import check_shipped
from . import comfy_bridge
from .categories import SAMPLING


class MiniLoader:
    NODE_ID = "W2S_MiniLoader"  # saved workflows refer to it: never changes
    DISPLAY_NAME = "Word2Scene Mini Loader"
    DESCRIPTION = ("Load Word2Scene-mini, the small SD1.5-shaped model shipped with the pack (128 px scenes in "
                   "seconds on a CPU), or another checkpoint made by `python -m word2scene pretrain`, as ComfyUI's "
                   "own MODEL, CLIP and VAE. KSampler, LoraLoader, Apply Concept and the heat-map nodes work on them "
                   "as on SD1.5. Use its concepts (word2scene-mini-c.safetensors, shipped) and 128 x 128 latents; "
                   "SD1.5 concepts do not fit it. Load Checkpoint cannot read these files.")
    CATEGORY = SAMPLING
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    OUTPUT_TOOLTIPS = ("The diffusion model (SD1.5 layout, narrower), for KSampler or Apply Concept.",
                       "Its text encoder, for Scene Prompt, CLIP Text Encode or Apply Concept.",
                       "Its VAE, for VAE Decode / Encode (latents 4 x H/8 x W/8).")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model_name": (comfy_bridge.model_names(), {
            "tooltip": "word2scene-mini.safetensors is shipped with the pack; checkpoints made by `python -m "
                       "word2scene pretrain` in models/checkpoints are listed too."})}}

    @classmethod
    def IS_CHANGED(cls, model_name):
        return comfy_bridge.file_fingerprint(lambda: comfy_bridge.model_path(model_name))

    def load(self, model_name):
        path = comfy_bridge.model_path(model_name)
        check_shipped(path, "model_name")  # ComfyUI's reader below would load a damaged shipped copy as it is
        configs = checkpoint_configs(path, "model_name")
        if configs is None:
            raise InputError("model_name", f"{model_name} records no Word2Scene configs: it is a full-size "
                                           "checkpoint; load it with Load Checkpoint")
        return comfy_bridge.load_narrow_checkpoint(path, ldm_configs(configs))
