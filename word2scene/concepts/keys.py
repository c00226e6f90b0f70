"""The one key mapping between LoRA files and SD1.5 modules.

Canonical names are kohya's: ``lora_unet_`` or ``lora_te_`` plus the diffusers module
path with dots replaced by underscores (``lora_unet_down_blocks_0_attentions_0_
transformer_blocks_0_attn1_to_q``). ComfyUI, AUTOMATIC1111/Forge, kohya and diffusers all
read these. Other layouts (peft ``lora_A``/``lora_B``, old diffusers ``lora.down``/
``lora.up`` and attention-processor keys) are converted to canonical names here and
nowhere else.
"""
from __future__ import annotations

import functools
import re

from ..models.sd15 import sd15_module_shapes

UNET_PREFIX = "lora_unet_"
TEXT_PREFIX = "lora_te_"

# Module sets on the SD1.5 UNet (see docs: 128 attention projections; kohya's 192).
ATTENTION_SUFFIXES = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0",
                      "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0")
KOHYA_EXTRA_SUFFIXES = ("proj_in", "proj_out", "ff.net.0.proj", "ff.net.2")


def kohya_name(component: str, module_path: str) -> str:
    """Canonical LoRA name of a module: component is 'unet' or 'text_encoder'."""
    prefix = UNET_PREFIX if component == "unet" else TEXT_PREFIX
    return prefix + module_path.replace(".", "_")


@functools.lru_cache(maxsize=1)
def sd15_targets() -> dict[str, tuple[str, str]]:
    """Every LoRA-able module of SD1.5: canonical name -> (component, module path).

    Built from the shipped SD1.5 configs on the meta device (no weights, no memory).
    The tiny test model has the same names, so this table serves it too.
    """

    table = {}
    for component, paths in sd15_module_shapes().items():
        for path in paths:
            table[kohya_name(component, path)] = (component, path)
    return table


def module_set_of(names) -> str:
    """'attention' (to_q/k/v/out), 'kohya' (+ proj_in/out and ff) or 'custom'."""
    unet = {sd15_targets()[n][1] for n in names if n in sd15_targets() and n.startswith(UNET_PREFIX)}
    attention = {p for p in unet if p.endswith(ATTENTION_SUFFIXES)}
    extra = {p for p in unet if p.endswith(KOHYA_EXTRA_SUFFIXES)}
    if unet and unet == attention:
        return "attention"
    if unet and unet == attention | extra and extra:
        return "kohya"
    return "custom"


# --- conversion of other layouts to canonical names --------------------------------
_PEFT = re.compile(r"^(?P<path>.+?)\.(?P<part>lora_A|lora_B)(?:\.default)?\.weight$")
_OLD_DIFFUSERS = re.compile(r"^(?P<path>.+?)\.lora\.(?P<part>down|up)\.weight$")
_PROCESSOR = re.compile(r"^(?P<path>.+?)\.processor\.(?P<proj>to_q|to_k|to_v|to_out)_lora\.(?P<part>down|up)\.weight$")
_KOHYA = re.compile(r"^(?P<name>lora_(?:unet|te\d?)_[A-Za-z0-9_]+)\.(?P<part>lora_down\.weight|lora_up\.weight|alpha)$")


def _component_and_path(path: str) -> tuple[str, str]:
    for prefix, component in (("unet.", "unet"), ("text_encoder.", "text_encoder"), ("base_model.model.", "unet")):
        if path.startswith(prefix):
            return component, path[len(prefix):]
    return "unet", path  # attention-processor files carry bare UNet paths


def canonical_key(key: str) -> tuple[str, str] | None:
    """Map one tensor key to (canonical module name, part) with part in
    {'down', 'up', 'alpha'}; None when the key is not a LoRA tensor of a known layout."""
    m = _KOHYA.match(key)
    if m:
        part = {"lora_down.weight": "down", "lora_up.weight": "up", "alpha": "alpha"}[m["part"]]
        return m["name"], part
    m = _PROCESSOR.match(key)
    if m:
        proj = "to_out.0" if m["proj"] == "to_out" else m["proj"]
        return kohya_name("unet", f"{m['path']}.{proj}"), m["part"]
    for pattern, parts in ((_PEFT, {"lora_A": "down", "lora_B": "up"}), (_OLD_DIFFUSERS, {"down": "down", "up": "up"})):
        m = pattern.match(key)
        if m:
            component, path = _component_and_path(m["path"])
            return kohya_name(component, path), parts[m["part"]]
    return None


def foreign_family(names) -> str | None:
    """Name the model family when canonical names show a LoRA that is not for SD1.x."""
    names = list(names)
    if any(n.startswith(("lora_te1_", "lora_te2_")) for n in names):
        return "SDXL (it has two text encoders, lora_te1_/lora_te2_)"
    if any(n.startswith("lora_unet_input_blocks_") and "transformer_blocks_1_" in n for n in names):
        return "SDXL (its UNet has deep transformer stacks)"
    if any(n.startswith(("lora_transformer_", "lora_unet_double_blocks", "lora_unet_single_blocks")) for n in names):
        return "a transformer model such as Flux or SD3"
    return None


def family_from_shapes(name: str, down_shape) -> str | None:
    """Recognise SD2 / SDXL LoRAs by the text width that cross-attention keys read."""
    if name.endswith(("attn2_to_k", "attn2_to_v")) and len(down_shape) == 2:
        return {1024: "SD2.x (cross-attention width 1024)", 2048: "SDXL (cross-attention width 2048)"}.get(int(down_shape[1]))
    return None
