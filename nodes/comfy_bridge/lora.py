"""Concepts onto ComfyUI's MODEL and CLIP through its own LoRA mechanism (as LoraLoader)."""
from __future__ import annotations

from word2scene.concepts.file import Concept, check_fits


def _weight_shapes(concept: Concept, model, clip) -> dict[str, tuple]:
    """Canonical LoRA name -> weight shape in ComfyUI's model/CLIP, via ComfyUI's own key map."""
    import comfy.lora

    shapes = {}
    parts = []
    if model is not None:
        parts.append((comfy.lora.model_lora_keys_unet(model.model, {}), model.model.state_dict()))
    if clip is not None:
        parts.append((comfy.lora.model_lora_keys_clip(clip.cond_stage_model, {}), clip.cond_stage_model.state_dict()))
    for key_map, state in parts:
        for lora_name, target in key_map.items():
            key = target[0] if isinstance(target, tuple) else target
            if lora_name in concept.lora and key in state:
                shapes[lora_name] = tuple(state[key].shape)
    return shapes


def apply_concept(model, clip, concept: Concept, strength_model: float, strength_clip: float):
    """Patch clones of MODEL and CLIP through ComfyUI's LoRA mechanism (as LoraLoader does)."""
    import comfy.sd

    if strength_model == 0 and strength_clip == 0:
        return model, clip
    wanted = {n: w for n, w in concept.lora.items()
              if (n.startswith("lora_unet_") and strength_model != 0) or (n.startswith("lora_te_") and strength_clip != 0)}
    partial = Concept(concept.info, wanted, concept.path)
    check_fits(partial, _weight_shapes(partial, model, clip), "this ComfyUI model (SD1.x expected)")
    return comfy.sd.load_lora_for_models(model, clip, concept.state_dict(), strength_model, strength_clip)
