"""Run under ComfyUI's Python (see test_comfyui.py): explain one real image with the
ComfyUI back end (W2S_ExplainImage) and with the diffusers back end (the core) on the same
checkpoint, prompt, noise and timesteps; print the word maps' largest difference as JSON.
Usage: python comfy_compare_heatmaps.py COMFYUI_PATH PACK_PARENT PACK_NAME CHECKPOINT IMAGE
"""
import importlib
import json
import sys
from pathlib import Path

comfy_path, pack_parent, pack_name, checkpoint, image_path = sys.argv[1:6]
sys.path.insert(0, comfy_path)
import comfy.cli_args  # noqa: E402

comfy.cli_args.args.cpu = True
# compare the back ends at one precision: fp32 everywhere (ComfyUI keeps CLIP in fp16 on CPU by default)
comfy.cli_args.args.fp32_text_enc = comfy.cli_args.args.fp32_unet = comfy.cli_args.args.fp32_vae = True
import folder_paths  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import nodes  # noqa: E402

sys.path.insert(0, pack_parent)
pack = importlib.import_module(pack_name)
folder_paths.add_model_folder_path("checkpoints", str(Path(checkpoint).parent))
model, clip, vae = nodes.CheckpointLoaderSimple().load_checkpoint(Path(checkpoint).name)[:3]
prompt = "gs, geographic scene, a church with a (blue roof:1.2), church"
pil = Image.open(image_path).convert("RGB").resize((64, 64))
image = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255.0)[None]
with torch.inference_mode():
    (comfy_heat,) = pack.NODE_CLASS_MAPPINGS["W2S_ExplainImage"]().explain(image, model, clip, vae, prompt, "150, 600", 3)
core = importlib.import_module("word2scene.models.sd15")  # the pack imports its core under this name
heatmaps = importlib.import_module("word2scene.scenes.heatmaps")
sd = core.load_sd15(checkpoint)
_, ours_heat = heatmaps.explain_image(sd, pil, prompt, [150, 600], seed=3)
comfy_words, our_words = comfy_heat.words([]), ours_heat.words([])
labels, a = comfy_words.labels, comfy_words.maps
labels_b, b = our_words.labels, our_words.maps
print(json.dumps({"labels": labels, "same_labels": labels == labels_b, "max_abs": float((a - b).abs().max()),
                  "max_value": float(a.abs().max()), "layers": len(comfy_heat.capture.sums),
                  "normalized_max_abs": float((comfy_words.normalized() - our_words.normalized()).abs().max())}))
