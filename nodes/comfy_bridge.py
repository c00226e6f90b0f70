"""The one place that talks to ComfyUI's internals: model folders and LoRA patching.

Imported only by the node modules. ComfyUI modules are imported inside functions so the
node definitions can be read (and checked in CI) without ComfyUI.
"""
from __future__ import annotations

from ..word2scene.concepts.file import Concept, check_fits
from ..word2scene.errors import InputError
from ..word2scene.files import safe_relative_name

LORA_FOLDER = "loras"


def concept_names() -> list[str]:
    """Concept (LoRA) .safetensors files in ComfyUI's loras folders, subfolders included."""
    import folder_paths

    return sorted(n for n in folder_paths.get_filename_list(LORA_FOLDER) if n.lower().endswith(".safetensors"))


def concept_path(name: str) -> str:
    """Full path of a listed concept file; names that leave the loras folders are refused."""
    import folder_paths

    name = safe_relative_name("concept_name", name)
    path = folder_paths.get_full_path(LORA_FOLDER, name)
    if path is None:
        raise InputError("concept_name", f"{name!r} is not in ComfyUI's loras folders "
                                         f"({', '.join(folder_paths.get_folder_paths(LORA_FOLDER))})")
    return path


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


KNOWLEDGE_FOLDER = "word2scene_concepts"
EVALUATION_FOLDER = "word2scene_eval"
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def register_knowledge_folder() -> None:
    """models/word2scene_concepts/ holds users' knowledge files (*.yaml); models/word2scene_eval/
    the evaluation networks (classifiers, VGG16 / Inception-v3 weights, CLIP folders)."""
    import os

    import folder_paths

    folder_paths.add_model_folder_path(KNOWLEDGE_FOLDER, os.path.join(folder_paths.models_dir, KNOWLEDGE_FOLDER))
    folder_paths.add_model_folder_path(EVALUATION_FOLDER, os.path.join(folder_paths.models_dir, EVALUATION_FOLDER))


def evaluation_weight_names() -> list[str]:
    """Weight files in models/word2scene_eval (CLIP folders' own weight files left out)."""
    import folder_paths

    clip_dirs = {name.rsplit("/", 1)[0] for name in evaluation_clip_names()}
    return sorted(n for n in folder_paths.get_filename_list(EVALUATION_FOLDER)
                  if n.lower().endswith(WEIGHT_SUFFIXES) and n.replace("\\", "/").rsplit("/", 1)[0] not in clip_dirs)


def evaluation_clip_names() -> list[str]:
    """Subfolders of models/word2scene_eval holding a transformers CLIP (config.json)."""
    from pathlib import Path

    import folder_paths

    names = []
    for root in folder_paths.get_folder_paths(EVALUATION_FOLDER):
        if Path(root).is_dir():
            names += [str(p.parent.relative_to(root)).replace("\\", "/") + "/config.json" for p in Path(root).glob("*/config.json")]
    return sorted(names)


def evaluation_path(input_name: str, name: str) -> str:
    """The full path of a file or CLIP folder in models/word2scene_eval."""
    import os

    import folder_paths

    name = safe_relative_name(input_name, name)
    for root in folder_paths.get_folder_paths(EVALUATION_FOLDER):
        path = os.path.join(root, name)
        if os.path.isfile(path):
            return os.path.dirname(path) if name.endswith("/config.json") else path
    raise InputError(input_name, f"{name!r} is not in ComfyUI's models/{EVALUATION_FOLDER} folders")


def knowledge_dirs() -> list:
    """ComfyUI's knowledge folders, plus $W2S_CONCEPTS_DIR when set."""
    import os
    from pathlib import Path

    import folder_paths

    from ..word2scene.prompts.knowledge import USER_DIR_ENV, user_dirs

    dirs = [Path(p) for p in folder_paths.get_folder_paths(KNOWLEDGE_FOLDER)] if KNOWLEDGE_FOLDER in folder_paths.folder_names_and_paths else []
    return dirs + (user_dirs() if os.environ.get(USER_DIR_ENV) else [])


def encode_prompt(clip, text: str):
    """CONDITIONING for a prompt, as CLIPTextEncode makes it."""
    tokens = clip.tokenize(text)
    return clip.encode_from_tokens_scheduled(tokens)


def checkpoint_names() -> list[str]:
    import folder_paths

    return folder_paths.get_filename_list("checkpoints")


def checkpoint_path(name: str) -> str:
    import folder_paths

    name = safe_relative_name("ckpt_name", name)
    path = folder_paths.get_full_path("checkpoints", name)
    if path is None:
        raise InputError("ckpt_name", f"{name!r} is not in ComfyUI's checkpoints folders")
    return path


def dataset_folder(path: str):
    """An absolute folder, or one relative to ComfyUI's input directory."""
    from pathlib import Path

    import folder_paths

    if not isinstance(path, str) or not path.strip():
        raise InputError("dataset", "give a folder of training images (absolute, or relative to ComfyUI's input folder)")
    folder = Path(path.strip()).expanduser()
    return folder if folder.is_absolute() else Path(folder_paths.get_input_directory()) / folder


def concept_output_folder():
    """The first loras folder, under word2scene/ (so LoraLoader and Concept Loader list it)."""
    from pathlib import Path

    import folder_paths

    return Path(folder_paths.get_folder_paths(LORA_FOLDER)[0]) / "word2scene"


def tensor_to_images(image) -> list:
    """ComfyUI IMAGE (B x H x W x 3, 0-1) -> PIL RGB images."""
    import numpy as np
    from PIL import Image

    return [Image.fromarray((im.cpu().numpy().clip(0, 1) * 255).round().astype(np.uint8)) for im in image]


def images_to_tensor(images) -> "torch.Tensor":
    """PIL images (same size) -> ComfyUI IMAGE, B x H x W x 3 floats in 0-1."""
    import numpy as np
    import torch

    return torch.from_numpy(np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0 for im in images]))


def free_device_memory() -> str:
    """Unload ComfyUI's models from the device before training; returns the device to train on."""
    import comfy.model_management as mm

    mm.unload_all_models()
    mm.soft_empty_cache()
    device = mm.get_torch_device()
    return "cpu" if device.type == "cpu" else str(device)


class TrainingReporter:
    """Progress bar, live messages for the frontend (loss, ETA, previews) and Cancel."""

    EVENT = "word2scene.training"

    def __init__(self, node_id: str, total: int):
        import comfy.utils

        self.node_id = node_id
        self.bar = comfy.utils.ProgressBar(total)

    def _send(self, payload: dict) -> None:
        try:
            from server import PromptServer

            PromptServer.instance.send_sync(self.EVENT, {"node": self.node_id, **payload})
        except Exception:  # no server (in-process use): progress bar only
            pass

    def progress(self, p) -> None:
        if not self.should_stop():  # ComfyUI's progress hook raises on Cancel; let training save its state first
            self.bar.update_absolute(p.step, p.total)
        self._send({"step": p.step, "total": p.total, "loss": p.loss, "lr": p.lr, "eta": p.eta,
                    "elapsed": p.elapsed, "images_per_second": p.images_per_second})

    def preview(self, step: int, images) -> None:
        import base64
        import io

        encoded = []
        for image in images[:4]:
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            encoded.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
        self._send({"step": step, "previews": encoded})

    def done(self, summary: dict) -> None:
        self._send({"summary": summary})

    @staticmethod
    def should_stop() -> bool:
        import comfy.model_management as mm

        return bool(mm.processing_interrupted())

    @staticmethod
    def raise_interrupt() -> None:
        import comfy.model_management as mm

        mm.throw_exception_if_processing_interrupted()


# --- heat maps: the ComfyUI attn2 back end ------------------------------------------------
ATTN2_SITES = [("input", n) for n in (1, 2, 4, 5, 7, 8)] + [("middle", 0)] + [("output", n) for n in range(3, 12)]


def heatmap_patched(model, capture):
    """A clone of MODEL whose 16 SD1.5 attn2 sites compute explicit probabilities and add
    the conditional rows to `capture` (cond and uncond may come together or apart)."""
    from ..word2scene.scenes.heatmaps import conditional_rows, cross_attention

    def site(layer: str):
        def attn2(q, k, v, extra_options):
            rows = conditional_rows(extra_options.get("cond_or_uncond", [0]), q.shape[0])
            return cross_attention(q, k, v, extra_options["n_heads"], capture, layer, rows)
        return attn2

    patched = model.clone()
    for block, number in ATTN2_SITES:
        patched.set_model_attn2_replace(site(f"{block}_{number}"), block, number, 0)
    return patched


def prompt_columns(text: str, clip=None) -> list[int]:
    """Column token ids of a prompt: CLIP's own tokenization when a CLIP is given, else the
    same layout rule computed by the core."""
    from ..word2scene.models.sd15 import load_tokenizer
    from ..word2scene.prompts.tokens import chunk_tokens

    if clip is not None:
        tokens = clip.tokenize(text)
        chunks = tokens.get("l") or next(iter(tokens.values()))
        return [int(t[0]) for chunk in chunks for t in chunk]
    return chunk_tokens(load_tokenizer(), text)


def sample_with_heatmaps(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent, denoise, capture):
    """Stock KSampler sampling (live previews, progress bar, Cancel) on the patched clone."""
    import nodes

    return nodes.common_ksampler(heatmap_patched(model, capture), seed, steps, cfg, sampler_name, scheduler,
                                 positive, negative, latent, denoise=denoise)[0]


def explain_passes(model, clip, vae, image, prompt: str, timesteps: list[int], seed: int, capture):
    """Encode a real image, noise it at each timestep, one conditional UNet pass each."""
    import comfy.sample
    import comfy.samplers
    import torch

    latent = vae.encode(image[:, :, :, :3])
    cond = clip.encode_from_tokens_scheduled(clip.tokenize(prompt))
    patched = heatmap_patched(model, capture)
    sampling = patched.get_model_object("model_sampling")
    for i, t in enumerate(timesteps):
        sigma = sampling.sigma(torch.tensor([float(t)]))
        sigmas = torch.cat([sigma.flatten(), torch.zeros(1)])
        noise = comfy.sample.prepare_noise(latent, seed + i)
        comfy.sample.sample_custom(patched, noise, 1.0, comfy.samplers.sampler_object("euler"), sigmas, cond, cond,
                                   latent, disable_pbar=True, seed=seed + i)
    return latent


def sample_image(model, clip, vae, prompt: str, negative: str, seed: int, steps: int, cfg: float, sampler_name: str,
                 scheduler: str, width: int, height: int):
    """One image through stock KSampler sampling and VAE decoding, as a PIL image."""
    import nodes
    import torch
    from PIL import Image

    latent = {"samples": torch.zeros([1, 4, height // 8, width // 8])}
    out = nodes.common_ksampler(model, seed, steps, cfg, sampler_name, scheduler, encode_prompt(clip, prompt),
                                encode_prompt(clip, negative), latent)[0]
    pixels = vae.decode(out["samples"])
    pixels = pixels.reshape(-1, *pixels.shape[-3:])[0]
    return Image.fromarray((pixels.clamp(0, 1).cpu().numpy() * 255).round().astype("uint8"))


# --- HTTP routes for the frontend (concept metadata and preview thumbnail) ------------------
PREVIEW_SUFFIXES = (".preview.png", ".preview.jpg", ".png", ".jpg", ".jpeg", ".webp")


def concept_preview(path) -> "Path | None":
    """An image beside a concept file (name.preview.png, name.png, ...), as training writes one."""
    from pathlib import Path

    path = Path(path)
    stem = path.with_suffix("")
    return next((Path(str(stem) + s) for s in PREVIEW_SUFFIXES if Path(str(stem) + s).is_file()), None)


def register_routes() -> None:
    """GET /word2scene/concept?name=NAME (metadata as JSON) and /word2scene/concept_preview?name=NAME."""
    from dataclasses import asdict

    from aiohttp import web
    from server import PromptServer

    from ..word2scene.concepts.file import load_concept

    routes = PromptServer.instance.routes

    @routes.get("/word2scene/concept")
    async def concept_info(request):
        try:
            path = concept_path(request.query.get("name", ""))
            concept = load_concept(path, "concept_name")
        except InputError as exc:  # shown on the node as text; not an HTTP failure in the console
            return web.json_response({"error": str(exc)})
        info = asdict(concept.info)
        return web.json_response({**info, "modules": len(concept.lora), "text": concept.describe(),
                                  "has_preview": concept_preview(path) is not None})

    @routes.get("/word2scene/concept_preview")
    async def concept_preview_image(request):
        try:
            preview = concept_preview(concept_path(request.query.get("name", "")))
        except InputError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        if preview is None:
            return web.json_response({"error": "no preview image beside this concept"}, status=404)
        return web.FileResponse(preview)
