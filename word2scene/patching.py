"""Concept strength on a diffusers SD1.5 model (the standalone path).

Weights become W' = W + s * (alpha / rank) * up @ down, computed in fp32 from the original
W and cast back once, the same arithmetic ComfyUI's ModelPatcher uses, so both paths give
the same patched weights. Originals are kept, so changing strength never drifts.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .concept import Concept, check_fits, check_strength
from .lora_keys import kohya_name
from .models import SD15, text_layout_prefix


def lora_modules(sd: SD15) -> dict[str, torch.nn.Module]:
    """Canonical LoRA name -> Linear/Conv2d module of the UNet and text encoder."""
    table = {}
    for component, model, prefix in (("unet", sd.unet, ""), ("text_encoder", sd.text_encoder, text_layout_prefix(sd.text_encoder))):
        for path, module in model.named_modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                table[kohya_name(component, prefix + path)] = module
    return table


def apply_concepts(sd: SD15, applied: Sequence[tuple[Concept, float, float]]) -> None:
    """Make `sd`'s weights exactly the originals plus these concepts at these strengths
    (concept, strength_model, strength_clip); an empty list restores the original model."""
    modules = lora_modules(sd)
    checked = []
    for concept, strength_model, strength_clip in applied:
        check_fits(concept, {n: tuple(m.weight.shape) for n, m in modules.items()}, f"this model ({sd.source})")
        checked.append((concept, check_strength("strength_model", strength_model),
                        check_strength("strength_clip", strength_clip)))
    with torch.no_grad():
        for name, original in sd._originals.items():
            modules[name].weight.copy_(original)
        sums: dict[str, torch.Tensor] = {}
        for concept, strength_model, strength_clip in checked:
            for name, lora in concept.lora.items():
                strength = strength_model if name.startswith("lora_unet_") else strength_clip
                if strength == 0:
                    continue
                weight = modules[name].weight
                if name not in sd._originals:
                    sd._originals[name] = weight.detach().clone()
                if name not in sums:
                    sums[name] = sd._originals[name].float().clone()
                sums[name] += (strength * (lora.alpha / lora.rank)) * lora.diff().to(weight.device)
        for name, total in sums.items():
            modules[name].weight.copy_(total.to(modules[name].weight.dtype))
