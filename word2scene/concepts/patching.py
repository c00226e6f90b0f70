"""Concept strength on a diffusers SD1.5 model (the standalone path).

Weights become W' = W + s * (alpha / rank) * up @ down, computed in fp32 from the original
W and cast back once, the same arithmetic ComfyUI's ModelPatcher uses, so both paths give
the same patched weights. Originals are kept, so changing strength never drifts.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .file import Concept, check_fits, check_strength
from .keys import kohya_name
from ..models.sd15 import SD15, text_layout_prefix


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
    shapes = {n: tuple(m.weight.shape) for n, m in modules.items()}
    plan: dict[str, list[tuple[float, object]]] = {}
    for concept, strength_model, strength_clip in applied:
        check_fits(concept, shapes, f"this model ({sd.source})")
        strength_model = check_strength("strength_model", strength_model)
        strength_clip = check_strength("strength_clip", strength_clip)
        for name, lora in concept.lora.items():
            strength = strength_model if name.startswith("lora_unet_") else strength_clip
            if strength != 0:
                plan.setdefault(name, []).append((strength * (lora.alpha / lora.rank), lora))
    sd.restore_weights(modules, keep=plan)
    with torch.no_grad():
        for name, terms in plan.items():
            weight = modules[name].weight
            original = sd.original_weight(name, weight)
            # fp32 arithmetic as ComfyUI's patcher: W32 += (s * alpha / r) * (up @ down), cast once
            total = weight if weight.dtype == torch.float32 else torch.empty_like(weight, dtype=torch.float32)
            total.copy_(original)
            for scale, lora in terms:
                total += lora.diff().to(total.device).mul_(scale)
            if total is not weight:
                weight.copy_(total)
