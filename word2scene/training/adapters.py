"""The concept's adapters: LoRA attached to the UNet (and text encoder) through peft as
TrainConfig says, and taken out again as a Concept in kohya names."""
from __future__ import annotations

import torch

from ..concepts import keys as lora_keys
from ..concepts.file import Concept, ConceptInfo, LoraWeights
from ..models.sd15 import SD15, text_layout_prefix
from .config import TEXT_TARGETS, TrainConfig, UNET_TARGETS


def add_lora(sd: SD15, cfg: TrainConfig) -> None:
    """Attach trainable LoRA adapters (peft) to the UNet (and text encoder); every other
    weight is frozen. The adapters' initial weights come from cfg.seed alone."""
    from peft import LoraConfig

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        sd.unet.add_adapter(LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, use_rslora=cfg.rslora,
                                       init_lora_weights="gaussian", target_modules=UNET_TARGETS[cfg.module_set]))
        if cfg.text_encoder:
            from peft import inject_adapter_in_model
            inject_adapter_in_model(LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, use_rslora=cfg.rslora,
                                               init_lora_weights="gaussian", target_modules=TEXT_TARGETS), sd.text_encoder)
    for model in (sd.unet, sd.text_encoder):
        for name, p in model.named_parameters():
            p.requires_grad_("lora_" in name)


def lora_parameters(sd: SD15) -> list[tuple[str, torch.nn.Parameter]]:
    """The trainable adapter weights, named "unet.<peft name>" / "text_encoder.<peft name>"."""
    out = []
    for prefix, model in (("unet.", sd.unet), ("text_encoder.", sd.text_encoder)):
        out += [(prefix + n, p) for n, p in model.named_parameters() if p.requires_grad]
    return out


def extract_concept(sd: SD15, cfg: TrainConfig, info: ConceptInfo) -> Concept:
    """The trained adapters as a Concept in kohya names (alpha as the file states it)."""
    parts: dict[str, dict[str, torch.Tensor]] = {}
    text_prefix = text_layout_prefix(sd.text_encoder)
    for name, p in lora_parameters(sd):
        component, rest = name.split(".", 1)
        module_path, _, tail = rest.partition(".lora_")
        part = "down" if tail.startswith("A") else "up"
        if component == "text_encoder":
            module_path = text_prefix + module_path
        parts.setdefault(lora_keys.kohya_name(component, module_path), {})[part] = p.detach().float().cpu().clone()
    lora = {n: LoraWeights(v["down"], v["up"], cfg.file_alpha) for n, v in parts.items()}
    return Concept(info, lora)
