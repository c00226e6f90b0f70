"""ComfyUI's model folders: where concepts, checkpoints, knowledge files, evaluation
weights and datasets are found, where trained concepts go, and how a path is named to a
user (as the folder they know: `loras/word2scene/x.safetensors`, never a server path)."""
from __future__ import annotations

import functools
import os
from collections import OrderedDict
from pathlib import Path

from word2scene.errors import InputError
from word2scene.evaluation.extractors import SHIPPED_CLASSIFIER, shipped_classifier
from word2scene.files import safe_relative_name
from word2scene.imagery import save_png
from word2scene.models.ldm_configs import checkpoint_configs
from word2scene.models.sd15 import MINI_CHECKPOINT, MINI_CONCEPT, MINI_CONCEPT_11
from word2scene.prompts.knowledge import USER_DIR_ENV, user_dirs


LORA_FOLDER = "loras"
KNOWLEDGE_FOLDER = "word2scene_concepts"
EVALUATION_FOLDER = "word2scene_eval"
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
# shipped with the pack, listed after the user's own files of the same kind
SHIPPED_CONCEPTS = (MINI_CONCEPT, MINI_CONCEPT_11)
SHIPPED_MODELS = (MINI_CHECKPOINT,)
SHIPPED_LABEL = "shipped with Word2Scene"


def _shipped(name: str, files) -> Path | None:
    """The shipped file called `name`, if this copy of the pack has it."""
    return next((p for p in files if p.name == name and p.is_file()), None)


def concept_names() -> list[str]:
    """Concept (LoRA) .safetensors files in ComfyUI's loras folders (subfolders included),
    then the concepts shipped with the pack (Word2Scene-C first)."""
    import folder_paths

    own = sorted(n for n in folder_paths.get_filename_list(LORA_FOLDER) if n.lower().endswith(".safetensors"))
    return own + [p.name for p in SHIPPED_CONCEPTS if p.name not in own]


def concept_path(name: str, input_name: str = "concept_name") -> str:
    """Full path of a listed concept file; names that leave the loras folders are refused."""
    import folder_paths

    name = safe_relative_name(input_name, name)
    path = folder_paths.get_full_path(LORA_FOLDER, name)
    if path is not None:
        return remember(path, f"{LORA_FOLDER}/{name}")
    shipped = _shipped(name, SHIPPED_CONCEPTS)
    if shipped is not None:
        return remember(str(shipped), f"{name} ({SHIPPED_LABEL})")
    raise InputError(input_name, f"{name!r} is not in ComfyUI's models/loras folder (subfolders included) nor "
                                 f"{SHIPPED_LABEL} ({', '.join(p.name for p in SHIPPED_CONCEPTS)}); put the "
                                 "file into models/loras and refresh the page")


def model_names() -> list[str]:
    """Word2Scene's own narrow checkpoints: the shipped Word2Scene-mini, then files in
    ComfyUI's checkpoints folders that record their configs (made by `word2scene pretrain`)."""
    import folder_paths

    shipped = [p.name for p in SHIPPED_MODELS if p.is_file()]
    own = [n for n in folder_paths.get_filename_list("checkpoints") if n not in shipped
           and _has_configs(folder_paths.get_full_path("checkpoints", n))]
    return shipped + sorted(own)


def _has_configs(path) -> bool:
    try:
        st = os.stat(path)
        return _configs_cached(os.path.realpath(path), st.st_mtime_ns, st.st_size) is not None
    except (OSError, InputError, TypeError):
        return False


@functools.lru_cache(maxsize=256)
def _configs_cached(real: str, mtime_ns: int, size: int):
    return checkpoint_configs(real)


def model_path(name: str, input_name: str = "model_name") -> str:
    """Full path of a listed Word2Scene checkpoint (shipped, or in the checkpoints folders)."""
    import folder_paths

    name = safe_relative_name(input_name, name)
    shipped = _shipped(name, SHIPPED_MODELS)
    if shipped is not None:
        return remember(str(shipped), f"{name} ({SHIPPED_LABEL})")
    path = folder_paths.get_full_path("checkpoints", name)
    if path is None:
        raise InputError(input_name, f"{name!r} is neither {SHIPPED_LABEL} nor in ComfyUI's models/checkpoints folder")
    return remember(path, f"checkpoints/{name}")


def register_knowledge_folder() -> None:
    """models/word2scene_concepts/ holds users' knowledge files (*.yaml); models/word2scene_eval/
    the evaluation networks (classifiers, VGG16 / Inception-v3 weights, CLIP folders)."""

    import folder_paths

    folder_paths.add_model_folder_path(KNOWLEDGE_FOLDER, os.path.join(folder_paths.models_dir, KNOWLEDGE_FOLDER))
    folder_paths.add_model_folder_path(EVALUATION_FOLDER, os.path.join(folder_paths.models_dir, EVALUATION_FOLDER))


def evaluation_weight_names() -> list[str]:
    """The scene classifier shipped with the pack (when this copy has it), then the weight
    files in models/word2scene_eval (CLIP folders' own weight files left out)."""
    import folder_paths

    clip_dirs = {name.rsplit("/", 1)[0] for name in evaluation_clip_names()}
    own = sorted(n for n in folder_paths.get_filename_list(EVALUATION_FOLDER)
                 if n.lower().endswith(WEIGHT_SUFFIXES) and n.replace("\\", "/").rsplit("/", 1)[0] not in clip_dirs)
    shipped = shipped_classifier()
    return ([shipped.name] if shipped is not None and shipped.name not in own else []) + own


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
            found = os.path.dirname(path) if name.endswith("/config.json") else path
            return remember(found, f"{EVALUATION_FOLDER}/{name.removesuffix('/config.json')}")
    shipped = shipped_classifier()
    if shipped is not None and name == shipped.name:
        return remember(str(shipped), f"{name} ({SHIPPED_LABEL})")
    raise InputError(input_name, f"{name!r} is not in ComfyUI's models/{EVALUATION_FOLDER} folders")


def knowledge_dirs() -> list:
    """ComfyUI's knowledge folders, plus $W2S_CONCEPTS_DIR when set."""
    import folder_paths

    dirs = [Path(p) for p in folder_paths.get_folder_paths(KNOWLEDGE_FOLDER)] if KNOWLEDGE_FOLDER in folder_paths.folder_names_and_paths else []
    return dirs + (user_dirs() if os.environ.get(USER_DIR_ENV) else [])


def checkpoint_names() -> list[str]:
    """ComfyUI's checkpoints, then Word2Scene-mini (shipped): the model a CPU trains on in minutes."""
    import folder_paths

    own = list(folder_paths.get_filename_list("checkpoints"))
    return own + [p.name for p in SHIPPED_MODELS if p.name not in own and p.is_file()]


def checkpoint_path(name: str) -> str:
    import folder_paths

    name = safe_relative_name("ckpt_name", name)
    path = folder_paths.get_full_path("checkpoints", name)
    if path is None:
        shipped = _shipped(name, SHIPPED_MODELS)
        if shipped is not None:
            return remember(str(shipped), f"{name} ({SHIPPED_LABEL})")
        raise InputError("ckpt_name", f"{name!r} is not in ComfyUI's models/checkpoints folder")
    return remember(path, f"checkpoints/{name}")


def dataset_folder(path: str, input_name: str = "dataset"):
    """An absolute folder, or one relative to ComfyUI's input directory."""
    if not isinstance(path, str) or not path.strip():
        raise InputError(input_name, "give a folder of images (absolute, or relative to ComfyUI's input folder)")
    import folder_paths

    folder = Path(path.strip()).expanduser()
    if folder.is_absolute():
        return folder
    return Path(remember(str(Path(folder_paths.get_input_directory()) / folder), f"input/{folder.as_posix()}"))


def concept_output_folder():
    """The first loras folder, under word2scene/ (so LoraLoader and Concept Loader list it)."""
    import folder_paths

    return Path(remember(str(Path(folder_paths.get_folder_paths(LORA_FOLDER)[0]) / "word2scene"), f"{LORA_FOLDER}/word2scene"))


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


# --- paths as users know them ------------------------------------------------------------
_KNOWN: "OrderedDict[str, str]" = OrderedDict()  # absolute path (as given and resolved) -> the user's name


def remember(path: str, name: str) -> str:
    """Note that `path` (and whatever it resolves to through links) is `name` to the user;
    returns `path`."""
    for key in {str(path), os.path.realpath(path)}:
        _KNOWN[key] = name
        _KNOWN.move_to_end(key)
    while len(_KNOWN) > 512:
        _KNOWN.popitem(last=False)
    return path


def _roots() -> list[tuple[str, str]]:
    """(absolute folder, the user's name for it): model folders by their ComfyUI name, the
    input/output/temp folders, the pack's shipped files; both as given and resolved."""
    try:
        import folder_paths
    except ImportError:  # the nodes used without ComfyUI: only remembered files are named
        return []

    roots = [(str(p.parent), SHIPPED_LABEL) for p in SHIPPED_CONCEPTS + SHIPPED_MODELS + (SHIPPED_CLASSIFIER,)]
    for key in (LORA_FOLDER, "checkpoints", KNOWLEDGE_FOLDER, EVALUATION_FOLDER):
        if key in folder_paths.folder_names_and_paths:
            roots += [(p, key) for p in folder_paths.get_folder_paths(key)]
    roots += [(folder_paths.get_input_directory(), "input"), (folder_paths.get_output_directory(), "output"),
              (folder_paths.get_temp_directory(), "temp"), (folder_paths.models_dir, "models"),
              (folder_paths.base_path, "ComfyUI")]
    return [(variant, label) for root, label in roots for variant in {str(Path(root)), os.path.realpath(root)}]


def user_path(path) -> str:
    """A server path as the user knows it: `loras/word2scene/x.safetensors`."""
    return public_text(str(path))


def public_text(text: str) -> str:
    """`text` with every server path named as the user knows it (remembered files first,
    then the deepest folder): a page or dialog never learns where the server keeps files."""
    pairs = sorted(_KNOWN.items(), key=lambda kv: -len(kv[0]))
    for path, name in pairs:
        text = text.replace(path, name)
    for root, label in sorted(_roots(), key=lambda r: -len(r[0])):
        if root and root != "/":
            text = text.replace(root + os.sep, label + "/").replace(root, label)
    return text


def user_error(exc: InputError, renames: dict[str, str] | None = None) -> InputError:
    """The error as a user of the node should read it: the node's input name for the core's
    (`out` -> `save_name`) and paths as the user knows them."""
    name = (renames or {}).get(exc.input_name, exc.input_name)
    return InputError(name, public_text(exc.message))


def fingerprint(*paths) -> str | float:
    """What changes when any of these files or folders (walked) changes: names, sizes and
    modification times, hashed. ComfyUI re-runs a node whose IS_CHANGED value changes, so a
    file replaced under the same name is never served from the cache. NaN (never equal to
    itself: always re-run) when a path cannot be read; the node then names the problem."""
    import hashlib

    h = hashlib.sha256()
    try:
        for path in paths:
            path = Path(path)
            files = [path] if not path.is_dir() else sorted(p for p in path.rglob("*") if p.is_file())
            for f in files:
                st = f.stat()
                h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    except (OSError, InputError, TypeError, ValueError):
        return float("nan")
    return h.hexdigest()


def file_fingerprint(resolve) -> str | float:
    """fingerprint() of what `resolve()` names (a path or a list of paths); NaN when it raises."""
    try:
        found = resolve()
    except (InputError, OSError, TypeError, ValueError):
        return float("nan")
    return fingerprint(*(found if isinstance(found, (list, tuple)) else [found]))
