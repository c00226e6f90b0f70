"""Run under ComfyUI's Python (see test_comfyui.py): patch one checkpoint three ways and
report the largest weight differences as JSON on the last line of stdout.

1. stock LoraLoader, 2. W2S_ConceptLoader + W2S_ApplyConcept, 3. the standalone core
(diffusers model + word2scene.concepts.patching), mapped to ComfyUI's keys.
Usage: python comfy_compare_patching.py COMFYUI_PATH PACK_PARENT PACK_NAME CHECKPOINT LORA_FILE S_MODEL S_CLIP
"""
import importlib
import json
import sys
from pathlib import Path

comfy_path, pack_parent, pack_name, checkpoint, lora_file, s_model, s_clip = sys.argv[1:8]
s_model, s_clip = float(s_model), float(s_clip)
sys.path.insert(0, comfy_path)
import comfy.cli_args  # noqa: E402

comfy.cli_args.args.cpu = True
import folder_paths  # noqa: E402
import torch  # noqa: E402

import nodes  # noqa: E402  (ComfyUI's nodes module)

sys.path.insert(0, pack_parent)
pack = importlib.import_module(pack_name)
folder_paths.add_model_folder_path("checkpoints", str(Path(checkpoint).parent))
folder_paths.add_model_folder_path("loras", str(Path(lora_file).parent))
lora_name = Path(lora_file).name

model, clip, _vae = nodes.CheckpointLoaderSimple().load_checkpoint(Path(checkpoint).name)[:3]
stock_model, stock_clip = nodes.LoraLoader().load_lora(model, clip, lora_name, s_model, s_clip)
concept = pack.NODE_CLASS_MAPPINGS["W2S_ConceptLoader"]().load(lora_name)["result"][0]
our_model, our_clip = pack.NODE_CLASS_MAPPINGS["W2S_ApplyConcept"]().apply(model, clip, concept, s_model, s_clip)


import comfy.lora  # noqa: E402
import comfy.utils  # noqa: E402


def patched(patcher):
    """Every weight as ComfyUI patches it at load: calculate_weight in fp32 on the original
    (the result before the cast back to the model's storage dtype)."""
    state = {}
    for key, weight in patcher.model.state_dict().items():
        weight = weight.detach().to(torch.float32, copy=True)
        if key in patcher.patches:
            weight = comfy.lora.calculate_weight(patcher.patches[key], weight, key)
        state[key] = weight
    return state


result = {}
for label, a, b in (("unet", stock_model, our_model), ("clip", stock_clip.patcher, our_clip.patcher)):
    sa, sb = patched(a), patched(b)
    result[f"{label}_vs_stock_max_abs"] = max(float((sa[k] - sb[k]).abs().max()) for k in sa)
    base = patched(model if label == "unet" else clip.patcher)
    result[f"{label}_changed_tensors"] = sum(1 for k in sa if not torch.equal(sa[k], base[k]))

# the standalone core on the same file, compared on ComfyUI's keys via its own LoRA key map
core = importlib.import_module(pack_name + ".word2scene.models.sd15")
patching = importlib.import_module(pack_name + ".word2scene.concepts.patching")
sd = core.load_sd15(checkpoint)
patching.apply_concepts(sd, [(concept, s_model, s_clip)])
ours = patching.lora_modules(sd)

unet_map = comfy.lora.model_lora_keys_unet(stock_model.model, {})
clip_map = comfy.lora.model_lora_keys_clip(stock_clip.cond_stage_model, {})
stock_unet, stock_te = patched(stock_model), patched(stock_clip.patcher)
worst = 0.0
checked = 0
for name in concept.lora:
    key = unet_map.get(name) if name.startswith("lora_unet_") else clip_map.get(name)
    state = stock_unet if name.startswith("lora_unet_") else stock_te
    if isinstance(key, tuple):
        key = key[0]
    worst = max(worst, float((state[key] - ours[name].weight.detach().float().reshape(state[key].shape)).abs().max()))
    checked += 1
result["standalone_vs_comfy_max_abs"] = worst
result["standalone_checked_modules"] = checked
print(json.dumps(result))
