"""Our narrow SD1.x checkpoints (Word2Scene-mini) as ComfyUI's own MODEL, CLIP and VAE.

ComfyUI's Load Checkpoint cannot detect them: its SD1.5 entry wants 768-wide cross-attention,
and its UNet and VAE build GroupNorm with 32 groups, while mini normalises over 8. Here the
model is built by ComfyUI's classes (BaseModel under its SD15 config, sd1_clip's CLIP, its
VAE) from the configs the file records, and each GroupNorm then gets the file's group
count (the count changes no weight shape). So KSampler, LoraLoader, Apply Concept and the
heat-map patches see an ordinary SD1.x model.
"""
from __future__ import annotations

import functools

from word2scene.models.ldm_configs import LdmConfigs

UNET_PREFIX = "model.diffusion_model."


def _set_groups(module, groups: int) -> int:
    """Give every GroupNorm in `module` `groups` groups; returns how many were set."""
    import torch

    norms = [m for m in module.modules() if isinstance(m, torch.nn.GroupNorm)]
    for m in norms:
        m.num_groups = groups
    return len(norms)


def _model_config(unet_config: dict, ldm: LdmConfigs):
    import comfy.latent_formats
    import comfy.sd1_clip
    import comfy.supported_models
    import comfy.supported_models_base

    class NarrowSD15(comfy.supported_models.SD15):
        unet_extra_config = {"num_heads": ldm.unet_heads, "num_head_channels": -1}

        def __init__(self, config):
            super().__init__(config)
            self.latent_format = comfy.latent_formats.SD15(scale_factor=ldm.vae_scale)
            self.latent_format.latent_rgb_factors = None  # SD1.5's factors would misdraw live previews

        def clip_target(self, state_dict={}):
            # SD1CheckpointClipModel's settings, with the file's text encoder shape
            text_model = functools.partial(comfy.sd1_clip.SDClipModel, return_projected_pooled=False,
                                           textmodel_json_config=dict(ldm.text))
            clip = functools.partial(comfy.sd1_clip.SD1ClipModel, clip_model=text_model)
            tokenizer = functools.partial(comfy.sd1_clip.SD1Tokenizer, tokenizer=functools.partial(
                comfy.sd1_clip.SDTokenizer, embedding_size=ldm.text["hidden_size"]))
            return comfy.supported_models_base.ClipTarget(tokenizer, clip)

    return NarrowSD15(unet_config)


def load_narrow_checkpoint(path: str, ldm: LdmConfigs, embedding_directory=None):
    """(MODEL, CLIP, VAE) of a single-file SD1.x-layout checkpoint with the given LDM configs,
    through ComfyUI's loading steps (dtype choice, initial device, CLIP and VAE state dicts)."""
    import comfy.model_detection
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.sd
    import comfy.utils

    sd = comfy.utils.load_torch_file(path)
    parameters = comfy.utils.calculate_parameters(sd, UNET_PREFIX)
    weight_dtype = comfy.utils.weight_dtype(sd, UNET_PREFIX)
    load_device = mm.get_torch_device()
    model_config = _model_config(comfy.model_detection.detect_unet_config(sd, UNET_PREFIX), ldm)
    unet_dtype = mm.unet_dtype(model_params=parameters, supported_dtypes=list(model_config.supported_inference_dtypes),
                               weight_dtype=weight_dtype)
    model_config.set_inference_dtype(unet_dtype, mm.unet_manual_cast(unet_dtype, load_device,
                                                                       model_config.supported_inference_dtypes))
    initial_device = mm.unet_inital_load_device(parameters, unet_dtype)
    model = model_config.get_model(sd, UNET_PREFIX, device=initial_device)
    _set_groups(model.diffusion_model, ldm.unet_groups)
    model.load_model_weights(sd, UNET_PREFIX)
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=mm.unet_offload_device())

    vae_sd = comfy.utils.state_dict_prefix_replace(sd, {k: "" for k in model_config.vae_key_prefix}, filter_keys=True)
    vae = comfy.sd.VAE(sd=vae_sd, config={"params": {"ddconfig": dict(ldm.vae_ddconfig), "embed_dim": ldm.vae_embed_dim}})
    _set_groups(vae.first_stage_model, ldm.vae_groups)

    clip_sd = model_config.process_clip_state_dict(sd)
    clip = comfy.sd.CLIP(model_config.clip_target(), embedding_directory=embedding_directory, tokenizer_data=clip_sd,
                         parameters=comfy.utils.calculate_parameters(clip_sd))
    missing, _ = clip.load_sd(clip_sd, full_model=True)
    missing = [k for k in missing if ".logit_scale" not in k and "text_projection" not in k]
    if missing:
        raise RuntimeError(f"{path}: text encoder weights missing: {missing[:3]}")
    return patcher, clip, vae
