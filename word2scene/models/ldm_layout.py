"""SD1.x single-file ("original", LDM) layout <-> diffusers layout.

Reading uses diffusers' own converters; writing (used to produce single-file test
checkpoints, tiny and full size) is the inverse written here, and the tests check that
writing then reading gives back every tensor exactly.
"""
from __future__ import annotations

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model.transformer."


def _unet_prefix_map(n_blocks: int = 4, layers: int = 2) -> list[tuple[str, str]]:
    """(ldm prefix, diffusers prefix) pairs for SD1.x's UNet."""
    pairs = [("time_embed.0.", "time_embedding.linear_1."), ("time_embed.2.", "time_embedding.linear_2."),
             ("input_blocks.0.0.", "conv_in."), ("out.0.", "conv_norm_out."), ("out.2.", "conv_out."),
             ("middle_block.1.", "mid_block.attentions.0.")]
    for i in range(n_blocks):
        for j in range(layers):
            pairs.append((f"input_blocks.{3 * i + j + 1}.0.", f"down_blocks.{i}.resnets.{j}."))
            if i < n_blocks - 1:
                pairs.append((f"input_blocks.{3 * i + j + 1}.1.", f"down_blocks.{i}.attentions.{j}."))
        for j in range(layers + 1):
            pairs.append((f"output_blocks.{3 * i + j}.0.", f"up_blocks.{i}.resnets.{j}."))
            if i > 0:
                pairs.append((f"output_blocks.{3 * i + j}.1.", f"up_blocks.{i}.attentions.{j}."))
        if i < n_blocks - 1:
            pairs.append((f"input_blocks.{3 * (i + 1)}.0.op.", f"down_blocks.{i}.downsamplers.0.conv."))
            pairs.append((f"output_blocks.{3 * i + 2}.{1 if i == 0 else 2}.", f"up_blocks.{i}.upsamplers.0."))
    for j in range(2):
        pairs.append((f"middle_block.{2 * j}.", f"mid_block.resnets.{j}."))
    return pairs


_UNET_RESNET = [("in_layers.0.", "norm1."), ("in_layers.2.", "conv1."), ("out_layers.0.", "norm2."),
                ("out_layers.3.", "conv2."), ("emb_layers.1.", "time_emb_proj."), ("skip_connection.", "conv_shortcut.")]


def _vae_prefix_map(n_blocks: int = 4, layers: int = 2) -> list[tuple[str, str]]:
    pairs = [("encoder.mid.attn_1.", "encoder.mid_block.attentions.0."),
             ("decoder.mid.attn_1.", "decoder.mid_block.attentions.0.")]
    for part in ("encoder", "decoder"):
        pairs += [(f"{part}.norm_out.", f"{part}.conv_norm_out.")]
        for i in range(2):
            pairs.append((f"{part}.mid.block_{i + 1}.", f"{part}.mid_block.resnets.{i}."))
    for i in range(n_blocks):
        for j in range(layers):
            pairs.append((f"encoder.down.{i}.block.{j}.", f"encoder.down_blocks.{i}.resnets.{j}."))
        for j in range(layers + 1):
            pairs.append((f"decoder.up.{n_blocks - 1 - i}.block.{j}.", f"decoder.up_blocks.{i}.resnets.{j}."))
        if i < n_blocks - 1:
            pairs.append((f"encoder.down.{i}.downsample.", f"encoder.down_blocks.{i}.downsamplers.0."))
            pairs.append((f"decoder.up.{n_blocks - 1 - i}.upsample.", f"decoder.up_blocks.{i}.upsamplers.0."))
    return pairs


_VAE_ATTENTION = [("norm.", "group_norm."), ("q.", "to_q."), ("k.", "to_k."), ("v.", "to_v."), ("proj_out.", "to_out.0.")]


def _rename(key: str, prefixes: list[tuple[str, str]], inner: list[tuple[str, str]], inner_marker: str) -> str:
    for ldm, hf in prefixes:
        if key.startswith(hf):
            rest = key[len(hf):]
            if inner_marker in hf:
                for ldm_part, hf_part in inner:
                    if rest.startswith(hf_part):
                        rest = ldm_part + rest[len(hf_part):]
                        break
            return ldm + rest
    return key


def to_single_file(unet: dict, vae: dict, text_encoder: dict, unet_blocks: int = 4, vae_blocks: int = 4) -> dict:
    """Diffusers state dicts of the three SD1.x components -> one original-layout dict."""
    out = {}
    unet_map = _unet_prefix_map(unet_blocks)
    for key, value in unet.items():
        out[UNET_PREFIX + _rename(key, unet_map, _UNET_RESNET, "resnets")] = value
    vae_map = _vae_prefix_map(vae_blocks)
    for key, value in vae.items():
        key = key.replace("conv_shortcut.", "nin_shortcut.")
        new = _rename(key, vae_map, _VAE_ATTENTION, "attentions")
        if ".attn_1." in new and value.ndim == 2:  # LDM's VAE attention uses 1x1 convs
            value = value[:, :, None, None]
        out[VAE_PREFIX + new] = value
    for key, value in text_encoder.items():
        out[TEXT_PREFIX + key] = value
    return out


def from_single_file(state: dict, unet_config: dict, vae_config: dict) -> tuple[dict, dict, dict]:
    """Original-layout dict -> diffusers state dicts (unet, vae, text_encoder)."""
    from diffusers.loaders.single_file_utils import (convert_ldm_clip_checkpoint, convert_ldm_unet_checkpoint,
                                                     convert_ldm_vae_checkpoint)

    unet = convert_ldm_unet_checkpoint(state, dict(unet_config))
    vae = convert_ldm_vae_checkpoint(state, dict(vae_config))
    text = convert_ldm_clip_checkpoint(state)
    text.pop("text_model.embeddings.position_ids", None)
    return unet, vae, text


def to_tensor_dict(state: dict, dtype: torch.dtype | None = None) -> dict:
    """Contiguous copies, optionally cast, ready for safetensors."""
    return {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous() for k, v in state.items()}
