"""ComfyUI's model folders: where concepts, checkpoints, knowledge files, evaluation
weights and datasets are found, and where trained concepts go."""
from __future__ import annotations

import os
from pathlib import Path

from ...word2scene.errors import InputError
from ...word2scene.files import safe_relative_name
from ...word2scene.imagery import save_png
from ...word2scene.prompts.knowledge import USER_DIR_ENV, user_dirs


LORA_FOLDER = "loras"
KNOWLEDGE_FOLDER = "word2scene_concepts"
EVALUATION_FOLDER = "word2scene_eval"
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def concept_names() -> list[str]:
    """Concept (LoRA) .safetensors files in ComfyUI's loras folders, subfolders included."""
    import folder_paths

    return sorted(n for n in folder_paths.get_filename_list(LORA_FOLDER) if n.lower().endswith(".safetensors"))


def concept_path(name: str, input_name: str = "concept_name") -> str:
    """Full path of a listed concept file; names that leave the loras folders are refused."""
    import folder_paths

    name = safe_relative_name(input_name, name)
    path = folder_paths.get_full_path(LORA_FOLDER, name)
    if path is None:
        raise InputError(input_name, f"{name!r} is not in ComfyUI's loras folders "
                                         f"({', '.join(folder_paths.get_folder_paths(LORA_FOLDER))})")
    return path


def register_knowledge_folder() -> None:
    """models/word2scene_concepts/ holds users' knowledge files (*.yaml); models/word2scene_eval/
    the evaluation networks (classifiers, VGG16 / Inception-v3 weights, CLIP folders)."""

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
    import folder_paths

    names = []
    for root in folder_paths.get_folder_paths(EVALUATION_FOLDER):
        if Path(root).is_dir():
            names += [str(p.parent.relative_to(root)).replace("\\", "/") + "/config.json" for p in Path(root).glob("*/config.json")]
    return sorted(names)


def evaluation_path(input_name: str, name: str) -> str:
    """The full path of a file or CLIP folder in models/word2scene_eval."""
    import folder_paths

    name = safe_relative_name(input_name, name)
    for root in folder_paths.get_folder_paths(EVALUATION_FOLDER):
        path = os.path.join(root, name)
        if os.path.isfile(path):
            return os.path.dirname(path) if name.endswith("/config.json") else path
    raise InputError(input_name, f"{name!r} is not in ComfyUI's models/{EVALUATION_FOLDER} folders")


def knowledge_dirs() -> list:
    """ComfyUI's knowledge folders, plus $W2S_CONCEPTS_DIR when set."""
    import folder_paths

    dirs = [Path(p) for p in folder_paths.get_folder_paths(KNOWLEDGE_FOLDER)] if KNOWLEDGE_FOLDER in folder_paths.folder_names_and_paths else []
    return dirs + (user_dirs() if os.environ.get(USER_DIR_ENV) else [])


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


def dataset_folder(path: str, input_name: str = "dataset"):
    """An absolute folder, or one relative to ComfyUI's input directory."""
    if not isinstance(path, str) or not path.strip():
        raise InputError(input_name, "give a folder of images (absolute, or relative to ComfyUI's input folder)")
    import folder_paths

    folder = Path(path.strip()).expanduser()
    return folder if folder.is_absolute() else Path(folder_paths.get_input_directory()) / folder


def concept_output_folder():
    """The first loras folder, under word2scene/ (so LoraLoader and Concept Loader list it)."""
    import folder_paths

    return Path(folder_paths.get_folder_paths(LORA_FOLDER)[0]) / "word2scene"


def sampler_names() -> list[str]:
    import comfy.samplers

    return list(comfy.samplers.KSampler.SAMPLERS)


def scheduler_names() -> list[str]:
    import comfy.samplers

    return list(comfy.samplers.KSampler.SCHEDULERS)


def temp_images(images, prefix: str) -> list[dict]:
    """Save images in ComfyUI's temp folder, as its PreviewImage does, and return the
    references the frontend's /view reads ({filename, subfolder, type: "temp"})."""
    import secrets

    import folder_paths

    folder = Path(folder_paths.get_temp_directory())
    folder.mkdir(parents=True, exist_ok=True)
    run = secrets.token_hex(4)
    refs = []
    for i, image in enumerate(images):
        name = f"{prefix}_{run}_{i:03d}.png"
        save_png(image, folder / name)
        refs.append({"filename": name, "subfolder": "", "type": "temp"})
    return refs
