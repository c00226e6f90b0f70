"""Offline SD1.5: shipped configs, the tiny test model, building the three networks and
loading them from single-file checkpoints and diffusers folders (the files themselves are
read by weight_files.py).

Nothing here contacts a model hub: configs and tokenizer files ship in assets/sd15, and
every loader reads only the paths it is given.
"""
from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import InputError
from ..files import atomic_path
from .ldm_layout import from_single_file, to_single_file, to_tensor_dict
from .weight_files import _safetensors_header, file_sha256, MINI_FOLDER, read_state_dict

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "sd15"
COMPONENTS = ("unet", "vae", "text_encoder")
CONFIG_METADATA_KEY = "word2scene.configs"

# The tiny model keeps SD1.5's module names and key layout (4 UNet levels, 2 layers per
# level, 16 cross-attention sites, 12 text-encoder layers) at a width that runs in
# milliseconds, so a LoRA's keys map exactly as on the real model.
TINY_OVERRIDES = {
    "unet": {"block_out_channels": [16, 32, 64, 64], "attention_head_dim": 2, "cross_attention_dim": 32,
             "norm_num_groups": 8, "sample_size": 8},
    "vae": {"block_out_channels": [8, 16, 32, 32], "norm_num_groups": 8, "sample_size": 64},
    "text_encoder": {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "projection_dim": 32},
}


def sd15_configs() -> dict[str, dict]:
    """The shipped SD1.5 configs: {'unet', 'vae', 'text_encoder', 'scheduler'} -> dict."""
    out = {c: json.loads((ASSETS / c / "config.json").read_text()) for c in COMPONENTS}
    out["scheduler"] = json.loads((ASSETS / "scheduler" / "scheduler_config.json").read_text())
    return out


# Word2Scene-mini: SD1.5's layout at a width that trains on a CPU in about an hour and
# fits a 48 MiB fp16 file; 128 px images, 16 x 16 latents (training/base_model.py). At most
# 32 groups of GroupNorm over 32 channels would normalise each channel alone and erase every
# image's colour (what made the tiny VAE's latents alike); 8 groups keep SD1.5's channels per group.
MINI_OVERRIDES = {
    "unet": {"block_out_channels": [64, 128, 128, 128], "attention_head_dim": 8, "cross_attention_dim": 64,
             "norm_num_groups": 8, "sample_size": 16},
    "vae": {"block_out_channels": [32, 64, 128, 128], "norm_num_groups": 8, "sample_size": 128},
    "text_encoder": {"hidden_size": 64, "intermediate_size": 256, "num_attention_heads": 4, "projection_dim": 64},
}


def _overridden(overrides: dict) -> dict[str, dict]:
    configs = sd15_configs()
    for component, values in overrides.items():
        configs[component].update(values)
    return configs


def tiny_configs() -> dict[str, dict]:
    return _overridden(TINY_OVERRIDES)


def mini_configs() -> dict[str, dict]:
    return _overridden(MINI_OVERRIDES)


@dataclass
class SD15:
    """The parts of an SD1.x model. Latents are B x 4 x H/8 x W/8."""
    unet: "UNet2DConditionModel"
    vae: "AutoencoderKL"
    text_encoder: "CLIPTextModel"
    tokenizer: "CLIPTokenizer"
    configs: dict
    source: str
    dtype: torch.dtype = torch.float32
    _originals: dict = field(default_factory=dict, repr=False)
    file: Path | None = None  # the checkpoint file the weights came from (None: built in memory)

    def identity(self) -> tuple[str, str]:
        """(file name, sha256 of the file) of the base checkpoint, as concept files record it;
        ("<source>", "") for a model built in memory."""
        if self.file is None:
            return self.source, ""
        return self.file.name, file_sha256(self.file)

    def original_weight(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        """The weight of the module `name` as loaded: a copy of `weight` is kept the first time
        a concept patches it (concepts/patching.py), so that changing strength never drifts."""
        return self._originals.setdefault(name, weight.detach().clone())

    def restore_weights(self, modules: dict[str, torch.nn.Module], keep=()) -> None:
        """Put each patched module of `modules` (name -> Linear/Conv2d) back to its weight as
        loaded and forget the copy, except the modules named in `keep`."""
        with torch.no_grad():
            for name in [n for n in self._originals if n not in keep]:
                modules[name].weight.copy_(self._originals.pop(name))

    @property
    def vae_scale(self) -> float:
        return float(self.configs["vae"].get("scaling_factor", 0.18215))

    def to(self, device) -> "SD15":
        for m in (self.unet, self.vae, self.text_encoder):
            m.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device


TEXT_ROOT = "text_model."


def text_layout_prefix(text_encoder) -> str:
    """What to prepend to the text encoder's own module/key names to get the canonical
    ones (``text_model.encoder.layers.0...``, as in every SD1.5 file): '' on transformers 4,
    'text_model.' on transformers 5, whose CLIPTextModel no longer nests a text_model."""
    return "" if hasattr(text_encoder, "text_model") else TEXT_ROOT


def canonical_text_state(text_encoder) -> dict:
    prefix = text_layout_prefix(text_encoder)
    return {prefix + k: v for k, v in text_encoder.state_dict().items()}


def _model_text_state(text_encoder, state: dict) -> dict:
    """Canonical text-encoder keys -> the keys this transformers version uses."""
    if text_layout_prefix(text_encoder):
        return {k[len(TEXT_ROOT):] if k.startswith(TEXT_ROOT) else k: v for k, v in state.items()}
    return state


def load_tokenizer(folder: Path | None = None):
    """SD1.5's CLIP tokenizer: the folder's own files if it has them, else the shipped ones."""
    if folder is not None and (folder / "vocab.json").exists():
        return _tokenizer(str(folder))
    return _tokenizer(str(ASSETS / "tokenizer"))


@functools.lru_cache(maxsize=4)
def _tokenizer(folder: str):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(folder, local_files_only=True)


def _build(configs: dict, source: str, dtype=torch.float32, states: dict | None = None,
           input_name: str = "checkpoint") -> SD15:
    """Instantiate the three networks from configs, then load `states` if given (errors name
    `input_name`)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from contextlib import nullcontext

    from accelerate import init_empty_weights

    # with weights to load, build on the meta device (no random init, no second copy)
    with init_empty_weights() if states is not None else nullcontext():
        unet = UNet2DConditionModel.from_config(configs["unet"])
        vae = AutoencoderKL.from_config(configs["vae"])
        text = CLIPTextModel(CLIPTextConfig(**{k: v for k, v in configs["text_encoder"].items() if k != "architectures"}))
    models = {"unet": unet, "vae": vae, "text_encoder": text}
    if states is not None:
        states = {**states, "text_encoder": _model_text_state(text, states["text_encoder"])}
        for name, model in models.items():
            _load_strict(model, states.pop(name), name, source, dtype, input_name)
    for model in models.values():
        if dtype != torch.float32:
            model.to(dtype)
        model.eval().requires_grad_(False)
    return SD15(unet, vae, text, load_tokenizer(), configs, source, dtype)


def _load_strict(model, state: dict, component: str, source: str, dtype=torch.float32,
                 input_name: str = "checkpoint") -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("position_ids")]
    wrong = [f"{k} {tuple(state[k].shape)} (SD1.5 expects {tuple(own[k].shape)})"
             for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or wrong:
        detail = "; ".join((wrong[:3] + [f"missing {k}" for k in missing[:3]]))
        raise InputError(input_name, f"{source}: the {component} does not match SD1.5 ({len(missing)} missing, "
                                     f"{len(wrong)} with other shapes): {detail}")
    # convert tensor by tensor and let go of each file tensor at once: one copy of the weights in memory
    weights = {}
    for k in [k for k in own if k in state]:
        t = state.pop(k)
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise InputError(input_name, f"{source}: the {component}'s tensor {k} holds NaN or infinite values (a "
                                         "damaged or badly converted checkpoint: its images would be black); use "
                                         "another copy of it")
        weights[k] = t.to(dtype) if t.is_floating_point() else t
    model.load_state_dict(weights, strict=False, assign=True)


def build_random(configs: dict, seed: int = 0, dtype=torch.float32, name: str = "random") -> SD15:
    """A model with seeded random weights (deterministic for a seed)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _build(configs, f"{name}:{seed}", dtype)


def build_tiny(seed: int = 0, dtype=torch.float32) -> SD15:
    """The built-in tiny SD1.5-shaped model: seeded random weights, deterministic."""
    return build_random(tiny_configs(), seed, dtype, "tiny")


@functools.lru_cache(maxsize=1)
def sd15_module_shapes() -> dict[str, dict[str, tuple[int, ...]]]:
    """{'unet'|'text_encoder': {module path: weight shape}} for every Linear/Conv2d of
    full-size SD1.5 (built on the meta device: no weights, no memory)."""
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    configs = sd15_configs()
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(configs["unet"])
        text = CLIPTextModel(CLIPTextConfig(**{k: v for k, v in configs["text_encoder"].items() if k != "architectures"}))
    kinds = (torch.nn.Linear, torch.nn.Conv2d)
    prefixes = {"unet": "", "text_encoder": text_layout_prefix(text)}
    return {name: {prefixes[name] + path: tuple(m.weight.shape) for path, m in model.named_modules() if isinstance(m, kinds)}
            for name, model in (("unet", unet), ("text_encoder", text))}


def checkpoint_family(state: dict) -> str:
    """'sd1' for an SD1.x text-to-image checkpoint, otherwise a description of what it is."""
    keys = state.keys()
    if any(k.startswith(("lora_", "lycoris_")) or ".lora_down." in k or ".lora_A." in k for k in keys):
        return "a LoRA (pass it as a concept, not as a checkpoint)"
    if any(k.startswith("conditioner.embedders.") for k in keys):
        return "SDXL"
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        return "SD2.x (OpenCLIP text encoder; v-prediction in its 768 px versions)"
    if not any(k.startswith("model.diffusion_model.") for k in keys):
        return "not a Stable Diffusion checkpoint (no model.diffusion_model.* keys)"
    conv_in = state.get("model.diffusion_model.input_blocks.0.0.weight")
    if conv_in is not None and conv_in.shape[1] != 4:
        return f"an SD1.x variant with {conv_in.shape[1]} input channels (inpainting or instruct), not text-to-image"
    to_k = state.get("model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight")
    token = state.get("cond_stage_model.transformer.text_model.embeddings.token_embedding.weight")
    if to_k is None or token is None:
        return "incomplete (no cross-attention or no CLIP text encoder in the file)"
    if to_k.shape[1] != token.shape[1]:
        return f"mismatched (cross-attention reads width {to_k.shape[1]}, text encoder gives {token.shape[1]})"
    return "sd1"


def load_single_file(path: str | os.PathLike, dtype=torch.float32, input_name: str = "checkpoint") -> SD15:
    """An SD1.x single-file checkpoint in the original layout."""
    state, metadata = read_state_dict(path, input_name, dtype=dtype)
    family = checkpoint_family(state)
    if family != "sd1":
        raise InputError(input_name, f"{path} is {family}; Word2Scene needs an SD1.x text-to-image checkpoint")
    configs = sd15_configs()
    if CONFIG_METADATA_KEY in metadata:  # our own small checkpoints say their widths
        configs.update(json.loads(metadata[CONFIG_METADATA_KEY]))
    unet, vae, text = from_single_file(state, configs["unet"], configs["vae"])
    del state  # the converted dicts now hold the only references to the file's tensors
    sd = _build(configs, str(path), dtype, {"unet": unet, "vae": vae, "text_encoder": text}, input_name)
    sd.file = Path(path)
    return sd


def load_diffusers_folder(folder: str | os.PathLike, dtype=torch.float32) -> SD15:
    """A diffusers folder (model_index.json, unet/, vae/, text_encoder/ [tokenizer/])."""
    folder = Path(folder)
    configs = sd15_configs()
    states = {}
    for component in COMPONENTS:
        config_file = folder / component / "config.json"
        if not config_file.is_file():
            raise InputError("checkpoint", f"{config_file} is missing; a diffusers folder needs {', '.join(COMPONENTS)}")
        configs[component] = {**configs[component], **json.loads(config_file.read_text())}
        weights = [folder / component / n for n in ("diffusion_pytorch_model.safetensors", "model.safetensors",
                                                    "diffusion_pytorch_model.bin", "pytorch_model.bin")]
        found = next((w for w in weights if w.is_file()), None)
        if found is None:
            raise InputError("checkpoint", f"{folder / component} has no weights file (looked for {weights[0].name} "
                                           f"or {weights[1].name})")
        states[component] = read_state_dict(found, dtype=dtype)[0]
    sched = folder / "scheduler" / "scheduler_config.json"
    if sched.is_file():
        configs["scheduler"].update({k: v for k, v in json.loads(sched.read_text()).items()
                                     if k in ("beta_start", "beta_end", "beta_schedule", "num_train_timesteps", "prediction_type")})
    unet_cfg, text_cfg = configs["unet"], configs["text_encoder"]
    if unet_cfg.get("addition_embed_type") == "text_time":
        raise InputError("checkpoint", f"{folder} is SDXL; Word2Scene needs an SD1.x checkpoint")
    if unet_cfg.get("cross_attention_dim") != text_cfg.get("hidden_size") or configs["scheduler"].get("prediction_type", "epsilon") != "epsilon":
        raise InputError("checkpoint", f"{folder} is not SD1.x (cross-attention {unet_cfg.get('cross_attention_dim')}, "
                                       f"prediction {configs['scheduler'].get('prediction_type')}); SD1.x has 768 and epsilon")
    sd = _build(configs, str(folder), dtype, states)
    sd.tokenizer = load_tokenizer(folder / "tokenizer")
    return sd


# Word2Scene-mini as shipped: the base model trained here (training/base_model.py) and two
# Word2Scene concepts trained on it with `train`; README > Word2Scene-mini has the commands.
# The default concept is Word2Scene-C (all 30 AID classes); the paper's 11-concept LoRA is kept
# for the 11 + 19 experiment, where its 19 unseen words stayed short of the real look.
MINI_CHECKPOINT = MINI_FOLDER / "word2scene-mini.safetensors"
MINI_CONCEPT = MINI_FOLDER / "word2scene-mini-c.safetensors"
MINI_CONCEPT_11 = MINI_FOLDER / "word2scene-mini-concept.safetensors"
# Mini's sampling defaults, chosen by measurement (docs/mini_model.md#sampling-defaults); other models
# keep the paper's (SamplingSettings: DDIM, 30 steps, CFG 7).
MINI_SAMPLING = {"sampler": "ddim", "steps": 10, "cfg": 10.0}
BUILT_IN_MODELS = ("mini", "tiny")
NATIVE_RESOLUTION = {"mini": 128, "tiny": 64, "checkpoint": 512}  # pixels each model was made for


PRETRAIN_METADATA_KEY = "word2scene.pretrain"  # a `pretrain` output's facts (JSON) in its safetensors metadata


def native_resolution(checkpoint=None, model: str = "tiny") -> int:
    """The image side a model draws best at: 128 for mini, 64 for tiny, the resolution a
    checkpoint made by `pretrain` was trained at (its metadata says), and 512 for other SD1.x
    checkpoints."""
    if not checkpoint:
        return NATIVE_RESOLUTION[model]
    try:
        facts = json.loads(_safetensors_header(Path(checkpoint))["__metadata__"][PRETRAIN_METADATA_KEY])
        return int(facts["resolution"])
    except Exception:  # a folder, a .ckpt, no or other metadata: loading the checkpoint says what is wrong
        return NATIVE_RESOLUTION["checkpoint"]


def load_sd15(checkpoint: str | os.PathLike | None = None, model: str = "tiny", dtype=torch.float32) -> SD15:
    """One entry point: a checkpoint path (file or diffusers folder), else the named built-in
    model: 'mini' (the shipped Word2Scene-mini file) or 'tiny' (seeded random, for tests)."""
    if checkpoint:
        path = Path(checkpoint)
        if path.is_dir():
            if not (path / "model_index.json").is_file() and not (path / "unet").is_dir():
                raise InputError("checkpoint", f"{path} is a folder but not a diffusers model (no model_index.json)")
            return load_diffusers_folder(path, dtype)
        return load_single_file(path, dtype)
    if model == "mini":
        return load_single_file(MINI_CHECKPOINT, dtype, input_name="model")
    if model != "tiny":
        raise InputError("model", f"{model!r} is not a built-in model; accepted: {', '.join(BUILT_IN_MODELS)} "
                                  "(or pass a checkpoint)")
    return build_tiny(dtype=dtype)


def single_file_state(sd: SD15) -> dict:
    """The model as one original-layout state dict (what a .safetensors checkpoint holds)."""
    return to_single_file(sd.unet.state_dict(), sd.vae.state_dict(), canonical_text_state(sd.text_encoder),
                          len(sd.configs["unet"]["block_out_channels"]), len(sd.configs["vae"]["block_out_channels"]))


def save_single_file(sd: SD15, path: str | os.PathLike, dtype: torch.dtype | None = None, overwrite: bool = False,
                     metadata: dict[str, str] | None = None) -> Path:
    """Write `sd` as an SD1.x single-file checkpoint; widths that differ from SD1.5 are
    recorded in the metadata so that load_single_file can rebuild the model. `metadata`
    adds string entries (e.g. how the weights were trained)."""
    from safetensors.torch import save_file


    metadata = dict(metadata or {})
    if sd.configs["unet"]["block_out_channels"] != sd15_configs()["unet"]["block_out_channels"]:
        metadata[CONFIG_METADATA_KEY] = json.dumps({c: sd.configs[c] for c in COMPONENTS})
    with atomic_path(path, overwrite=overwrite) as tmp:
        save_file(to_tensor_dict(single_file_state(sd), dtype), str(tmp), metadata=metadata)
    return Path(path)

