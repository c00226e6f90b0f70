"""The settings an LDM-layout program (ComfyUI) needs to rebuild one of our narrow SD1.x
checkpoints (Word2Scene-mini): what its weights cannot tell it.

Widths, levels and layer counts can be read off the weights; the number of GroupNorm
groups, the UNet's attention heads, the VAE's latent scale and the text encoder's shape
cannot. Our files state them in their metadata (key `word2scene.configs`, diffusers and
transformers configs), and this module turns those configs into the LDM terms: UNet
heads and GroupNorm groups, the VAE's `ddconfig`, the latent scale, and the text
encoder's config in the form CLIPTextModel configs take.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .sd15 import CONFIG_METADATA_KEY

SD15_GROUPS = 32
SD15_VAE_SCALE = 0.18215
# CLIP's end-of-text token: what an LDM text model pools at (our configs keep transformers' default id)
CLIP_EOS = 49407


@dataclass(frozen=True)
class LdmConfigs:
    """An SD1.x-layout model in LDM terms. Latents are B x 4 x H/8 x W/8."""
    unet_heads: int  # attention heads per cross/self-attention layer (SD1.5: 8)
    unet_groups: int  # GroupNorm groups in the UNet (SD1.5: 32)
    vae_ddconfig: dict  # the LDM Encoder/Decoder config (ch, ch_mult, z_channels, ...)
    vae_embed_dim: int  # latent channels (4)
    vae_groups: int  # GroupNorm groups in the VAE (SD1.5: 32)
    vae_scale: float  # latent scale factor (SD1.5: 0.18215)
    text: dict  # CLIPTextConfig-style dict (hidden_size, num_hidden_layers, ...)
    native_size: int  # the image side the model was trained at, in pixels

    @property
    def is_sd15(self) -> bool:
        return self.unet_groups == SD15_GROUPS and self.vae_groups == SD15_GROUPS and self.text["hidden_size"] == 768


def ldm_configs(configs: dict) -> LdmConfigs:
    """LDM terms of diffusers/transformers configs {'unet', 'vae', 'text_encoder'} (as
    models.sd15.mini_configs() or a file's `word2scene.configs` metadata hold them)."""
    unet, vae, text = configs["unet"], configs["vae"], dict(configs["text_encoder"])
    heads = unet.get("num_attention_heads") or unet.get("attention_head_dim", 8)
    if not isinstance(heads, int):  # per-level lists appear in SD2-style configs, never in SD1.x
        raise InputError("checkpoint", f"attention heads {heads!r} per level; an SD1.x model has one count")
    widths = list(vae["block_out_channels"])
    ddconfig = {"double_z": True, "z_channels": vae.get("latent_channels", 4), "resolution": vae.get("sample_size", 256),
                "in_channels": vae.get("in_channels", 3), "out_ch": vae.get("out_channels", 3), "ch": widths[0],
                "ch_mult": [w // widths[0] for w in widths], "num_res_blocks": vae.get("layers_per_block", 2),
                "attn_resolutions": [], "dropout": 0.0}
    text.pop("architectures", None)
    text.setdefault("num_hidden_layers", 12)
    text.setdefault("max_position_embeddings", 77)
    text.setdefault("vocab_size", 49408)
    text.setdefault("hidden_act", "quick_gelu")
    text.setdefault("layer_norm_eps", 1e-5)
    text["eos_token_id"] = CLIP_EOS
    return LdmConfigs(unet_heads=int(heads), unet_groups=int(unet.get("norm_num_groups", SD15_GROUPS)),
                      vae_ddconfig=ddconfig, vae_embed_dim=int(vae.get("latent_channels", 4)),
                      vae_groups=int(vae.get("norm_num_groups", SD15_GROUPS)),
                      vae_scale=float(vae.get("scaling_factor", SD15_VAE_SCALE)), text=text,
                      native_size=int(vae.get("sample_size", 512)))


def checkpoint_configs(path: str | os.PathLike, input_name: str = "model_name") -> dict | None:
    """The configs a single-file checkpoint of ours records in its metadata ({'unet', 'vae',
    'text_encoder'}); None for a file without them (a plain SD1.5 checkpoint). Reads the
    header only."""
    from safetensors import safe_open

    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as exc:  # safetensors raises several types for a bad header
        raise InputError(input_name, f"{path.name} is not a readable safetensors file ({exc})") from None
    if CONFIG_METADATA_KEY not in metadata:
        return None
    try:
        configs = json.loads(metadata[CONFIG_METADATA_KEY])
    except ValueError:
        raise InputError(input_name, f"{path.name}: its {CONFIG_METADATA_KEY} metadata is not JSON") from None
    if not isinstance(configs, dict) or not {"unet", "vae", "text_encoder"} <= set(configs):
        raise InputError(input_name, f"{path.name}: its {CONFIG_METADATA_KEY} metadata lacks unet, vae or text_encoder")
    return configs
