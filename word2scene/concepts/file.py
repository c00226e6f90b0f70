"""Concept files: a LoRA .safetensors in kohya key format plus Word2Scene metadata.

One reader (`read_concept`), one writer (`save_concept`). The reader also accepts plain
kohya LoRAs (treated as a concept with the paper's trigger words) and diffusers/peft
LoRAs (converted to kohya names on load, through `lora_keys.canonical_key`).
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping

import torch

from ..models.weight_files import read_state_dict
from ..errors import InputError
from ..files import atomic_path, check_safetensors
from . import keys as lora_keys

SCHEMA_VERSION = 1
# the three metadata namespaces a concept file carries: ours, kohya's (read by the model
# browsers of ComfyUI Manager, A1111 and Civitai) and Stability's modelspec
META = "word2scene."
KOHYA = "ss_"
MODELSPEC = "modelspec."
DEFAULT_TRIGGER_WORDS = ("gs", "geographic scene")
STRENGTH_RANGE = (-3.0, 3.0)
ARCHITECTURE = "stable-diffusion-v1/lora"


@dataclass(frozen=True)
class LoraWeights:
    """One adapted module: down is r x in (x kh x kw), up is out x r (x 1 x 1)."""
    down: torch.Tensor
    up: torch.Tensor
    alpha: float

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (int(self.up.shape[0]),) + tuple(int(s) for s in self.down.shape[1:])

    def diff(self) -> torch.Tensor:
        """up @ down in fp32, shaped like the module's weight (no alpha, no strength)."""
        return torch.mm(self.up.float().flatten(1), self.down.float().flatten(1)).reshape(self.weight_shape)


@dataclass
class TrainingFacts:
    """How the concept was trained, where known: what kohya's ss_* keys carry (a trainer fills
    them from its config; a kohya file's keys are read back into them)."""
    steps: int | None = None
    epochs: int | None = None
    resolution: int | None = None  # pixels a side
    dataset_size: int | None = None  # images
    dataset_hash: str | None = None
    learning_rate: float | None = None
    seed: int | None = None
    optimizer: str | None = None  # the optimizer's class, e.g. torch.optim.adamw.AdamW
    lr_scheduler: str | None = None  # diffusers' schedule name, e.g. constant
    warmup_steps: int | None = None
    batch_size: int | None = None  # images per step and process
    gradient_accumulation: int | None = None  # micro-batches per optimizer step
    mixed_precision: str | None = None  # no | fp16 | bf16
    noise_offset: float | None = None
    min_snr_gamma: float | None = None  # 0: unweighted
    max_grad_norm: float | None = None  # 0: no clipping
    caption_dropout: float | None = None  # fraction of captions replaced by the empty prompt

    def known(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class ConceptInfo:
    """What a concept file says about itself (its metadata)."""
    name: str
    concepts: list[str] = field(default_factory=list)
    trigger_words: list[str] = field(default_factory=lambda: list(DEFAULT_TRIGGER_WORDS))
    base_model: str = "sd15"
    base_model_name: str = ""  # the checkpoint's file name
    base_model_hash: str = ""  # sha256 of the checkpoint file (kohya's ss_new_sd_model_hash)
    rank: int = 0
    alpha: float = 0.0
    module_set: str = ""
    recommended_strength: float = 1.0
    training: TrainingFacts = field(default_factory=TrainingFacts)
    training_config: dict = field(default_factory=dict)  # every training option, as the trainer saw it
    # per image folder of the dataset: tag (a comma-separated part of a training caption) ->
    # images whose captions have it; kohya's ss_tag_frequency
    tag_frequency: dict[str, dict[str, int]] = field(default_factory=dict)
    source_format: str = "word2scene"

    @property
    def trigger_prompt(self) -> str:
        return ", ".join(self.trigger_words)


@dataclass
class Concept:
    """A concept adapter: metadata plus LoRA weights keyed by canonical (kohya) module name."""
    info: ConceptInfo
    lora: dict[str, LoraWeights]
    path: Path | None = None

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Kohya tensors: <name>.lora_down.weight, <name>.lora_up.weight, <name>.alpha."""
        out = {}
        for name, w in sorted(self.lora.items()):
            out[f"{name}.lora_down.weight"] = w.down.contiguous()
            out[f"{name}.lora_up.weight"] = w.up.contiguous()
            out[f"{name}.alpha"] = torch.tensor(float(w.alpha), dtype=w.down.dtype if w.down.is_floating_point() else torch.float32)
        return out

    @property
    def has_text_encoder(self) -> bool:
        return any(n.startswith(lora_keys.TEXT_PREFIX) for n in self.lora)

    def describe(self) -> str:
        """Multi-line plain text for people (the node's metadata output, the CLI's `info`)."""
        i = self.info
        lines = [f"concept file: {self.path.name if self.path else i.name}",
                 f"format: {i.source_format}",
                 f"concepts: {', '.join(i.concepts) if i.concepts else '(not recorded)'}",
                 f"trigger words: {i.trigger_prompt}",
                 f"base model: {i.base_model}" + (f" {i.base_model_name}" if i.base_model_name else "")
                 + (f" (sha256 {i.base_model_hash[:12]})" if i.base_model_hash else ""),
                 f"rank {i.rank}, alpha {i.alpha:g}, modules: {len(self.lora)} ({i.module_set})"
                 + (", text encoder adapted" if self.has_text_encoder else ""),
                 f"recommended strength: {i.recommended_strength:g}"]
        facts = i.training.known()
        if facts:
            lines.append("training: " + ", ".join(f"{k} {v}" for k, v in facts.items()))
        return "\n".join(lines)


def check_strength(input_name: str, value) -> float:
    """A LoRA strength as float inside STRENGTH_RANGE (0 = the unpatched model)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InputError(input_name, f"{value!r} is not a number; accepted: {STRENGTH_RANGE[0]} to {STRENGTH_RANGE[1]}") from None
    if not math.isfinite(value) or not STRENGTH_RANGE[0] <= value <= STRENGTH_RANGE[1]:
        raise InputError(input_name, f"{value} is outside the accepted range {STRENGTH_RANGE[0]} to {STRENGTH_RANGE[1]}")
    return value


# --- reading ---------------------------------------------------------------------------

def _json(metadata: Mapping[str, str], key: str, default):
    try:
        return json.loads(metadata[key]) if key in metadata else default
    except json.JSONDecodeError:
        return default


MAX_ALPHA_PER_RANK = 1000  # alpha / rank scales the update: far above this, any image is black or noise


def _peft_alphas(metadata: Mapping[str, str]) -> dict[str, float]:
    """Per-component alpha/rank scale a diffusers/peft file records (else alpha = rank)."""
    meta = _json(metadata, "lora_adapter_metadata", {})
    scales = {}
    for component in ("unet", "text_encoder"):
        r, alpha = meta.get(f"{component}.r"), meta.get(f"{component}.lora_alpha")
        if r and alpha:
            scales[component] = float(alpha) / (math.sqrt(r) if meta.get(f"{component}.use_rslora") else float(r))
    return scales


def concept_from_tensors(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str], name: str,
                         input_name: str = "concept") -> Concept:
    """Validate LoRA tensors of any accepted layout and build a Concept (kohya names)."""
    if not tensors:
        raise InputError(input_name, f"{name} holds no tensors")
    if any(k.startswith(("model.diffusion_model.", "first_stage_model.", "cond_stage_model.")) for k in tensors):
        raise InputError(input_name, f"{name} is a full model checkpoint, not a LoRA; pass it as the checkpoint")
    parts: dict[str, dict[str, torch.Tensor]] = {}
    foreign = []
    kohya_layout = True
    for key, tensor in tensors.items():
        mapped = lora_keys.canonical_key(key)
        if mapped is None:
            foreign.append(key)
            continue
        kohya_layout &= key.startswith("lora_")
        module, part = mapped
        parts.setdefault(module, {})[part] = tensor
    if foreign and not parts:
        raise InputError(input_name, f"{name} has no LoRA tensors (first keys: {', '.join(sorted(foreign)[:3])}); accepted: "
                                     "kohya lora_unet_*/lora_te_* .lora_down/.lora_up/.alpha, diffusers/peft lora_A/lora_B")
    family = lora_keys.foreign_family(parts)
    for module, p in parts.items():
        family = family or (lora_keys.family_from_shapes(module, p["down"].shape) if "down" in p else None)
    if family:
        raise InputError(input_name, f"{name} is a LoRA for {family}; Word2Scene concepts are for SD1.x")
    if foreign:
        raise InputError(input_name, f"{name} has {len(foreign)} tensors that are not LoRA down/up/alpha "
                                     f"(e.g. {sorted(foreign)[0]}); LoHa, LoKr and DoRA files are not supported")
    targets = lora_keys.sd15_targets()
    unmapped = sorted(m for m in parts if m not in targets)
    if unmapped:
        raise InputError(input_name, f"{name}: {len(unmapped)} of {len(parts)} LoRA modules map to no SD1.5 module "
                                     f"(e.g. {unmapped[0]}); accepted: modules of the SD1.5 UNet and CLIP text encoder")
    scales = {} if kohya_layout else _peft_alphas(metadata)
    lora = {}
    for module, p in sorted(parts.items()):
        if "down" not in p or "up" not in p:
            raise InputError(input_name, f"{name}: module {module} lacks its {'down' if 'down' not in p else 'up'} tensor")
        down, up = p["down"], p["up"]
        if down.shape[0] != up.shape[1] or up.ndim != down.ndim:
            raise InputError(input_name, f"{name}: module {module} has down {tuple(down.shape)} and up {tuple(up.shape)}, "
                                         "whose ranks disagree")
        for part_name, t in p.items():
            if t.is_floating_point() and not torch.isfinite(t).all():
                raise InputError(input_name, f"{name}: tensor {module}.{part_name} contains NaN or inf values")
        rank = int(down.shape[0])
        if rank < 1:
            raise InputError(input_name, f"{name}: module {module} has rank 0 (no LoRA to apply); accepted: rank 1 or more")
        if "alpha" in p:
            alpha = float(p["alpha"])
        else:
            alpha = scales.get(targets[module][0], 1.0) * rank
        if not 0 <= alpha <= MAX_ALPHA_PER_RANK * rank:
            raise InputError(input_name, f"{name}: module {module} has alpha {alpha:g} at rank {rank}; accepted: 0 to "
                                         f"{MAX_ALPHA_PER_RANK} x rank (LoRAs use about 1 x rank)")
        lora[module] = LoraWeights(down, up, alpha)
    return Concept(_info_from_metadata(metadata, name, lora, "word2scene" if META + "schema" in metadata
                                       else "kohya" if kohya_layout else "diffusers"), lora)


# TrainingFacts field -> (its kohya keys, read from the first; the value's type); resolution is
# written apart, as kohya's "(512, 512)"
_KOHYA_FACTS = {"steps": (("max_train_steps", "steps"), int), "epochs": (("epoch", "num_epochs"), int),
                "dataset_size": (("num_train_images",), int), "learning_rate": (("learning_rate",), float),
                "seed": (("seed",), int), "optimizer": (("optimizer",), str), "lr_scheduler": (("lr_scheduler",), str),
                "warmup_steps": (("lr_warmup_steps",), int), "batch_size": (("batch_size_per_device",), int),
                "gradient_accumulation": (("gradient_accumulation_steps",), int),
                "mixed_precision": (("mixed_precision",), str), "noise_offset": (("noise_offset",), float),
                "min_snr_gamma": (("min_snr_gamma",), float), "max_grad_norm": (("max_grad_norm",), float),
                "caption_dropout": (("caption_dropout_rate",), float)}


def _kohya_fact(metadata: Mapping[str, str], keys: tuple[str, ...], kind):
    """A TrainingFacts value from a kohya key; None when absent, "None" or unreadable."""
    text = metadata.get(KOHYA + keys[0])
    if text is None or text == "None":
        return None
    try:
        return text if kind is str else kind(float(text))
    except ValueError:
        return None


def _tag_frequency(metadata: Mapping[str, str]) -> dict[str, dict[str, int]]:
    """ss_tag_frequency as {folder: {tag: count}}; {} when absent or of another shape."""
    value = _json(metadata, KOHYA + "tag_frequency", {})
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        return {}
    return {str(folder): {str(t): int(c) for t, c in tags.items() if isinstance(c, (int, float))}
            for folder, tags in value.items()}


def _info_from_metadata(metadata: Mapping[str, str], name: str, lora: dict[str, LoraWeights], source_format: str) -> ConceptInfo:
    ranks = sorted(w.rank for w in lora.values())
    alphas = sorted(w.alpha for w in lora.values())
    info = ConceptInfo(name=name, rank=ranks[len(ranks) // 2], alpha=alphas[len(alphas) // 2],
                       module_set=lora_keys.module_set_of(lora), source_format=source_format)
    if source_format == "word2scene":
        info.name = metadata.get(META + "name", name)
        info.concepts = [str(c) for c in _json(metadata, META + "concepts", [])]
        info.trigger_words = [str(t) for t in _json(metadata, META + "trigger_words", list(DEFAULT_TRIGGER_WORDS))]
        info.base_model = metadata.get(META + "base_model", "sd15")
        info.base_model_name = metadata.get(META + "base_model_name", "")
        info.base_model_hash = metadata.get(META + "base_model_hash", "")
        config = _json(metadata, META + "training_config", {})
        info.training_config = config if isinstance(config, dict) else {}
        try:
            info.recommended_strength = float(metadata.get(META + "recommended_strength", 1.0))
        except ValueError:
            pass
        known = {f for f in TrainingFacts.__dataclass_fields__}
        info.training = TrainingFacts(**{k: v for k, v in _json(metadata, META + "training", {}).items() if k in known})
    else:  # a plain kohya file: read what its ss_* keys say
        info.training = TrainingFacts(**{field_name: _kohya_fact(metadata, keys, kind)
                                         for field_name, (keys, kind) in _KOHYA_FACTS.items()})
        info.base_model_name = metadata.get(KOHYA + "sd_model_name", "")
        info.base_model_hash = metadata.get(KOHYA + "new_sd_model_hash", "")
    info.tag_frequency = _tag_frequency(metadata)
    return info


def read_concept(path: str | os.PathLike, input_name: str = "concept") -> Concept:
    """Read and validate a concept (or any SD1.5 LoRA) .safetensors file."""
    path = check_safetensors(path, "concept files are safetensors (pickled .ckpt/.pt LoRAs are never loaded)",
                             input_name)
    tensors, metadata = read_state_dict(path, input_name)
    concept = concept_from_tensors(tensors, metadata, path.stem, input_name)
    concept.path = path
    return concept


@functools.lru_cache(maxsize=8)
def _cached(real: str, mtime_ns: int, size: int) -> Concept:
    return read_concept(real)


def load_concept(path: str | os.PathLike, input_name: str = "concept") -> Concept:
    """read_concept, cached by (real path, mtime, size): an unchanged file is read once."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        raise InputError(input_name, f"{path} does not exist or is not readable") from None
    try:
        concept = _cached(os.path.realpath(path), st.st_mtime_ns, st.st_size)
    except InputError as exc:
        raise InputError(input_name, exc.message) from None
    concept.path = path
    return concept


# --- fitting a model -------------------------------------------------------------------

def check_fits(concept: Concept, weight_shapes: Mapping[str, tuple], model: str, input_name: str = "concept") -> None:
    """Raise unless every module of the concept exists in `weight_shapes` (canonical name ->
    weight shape of the target model) with the shape its delta has."""
    name = concept.path.name if concept.path else concept.info.name
    missing = sorted(m for m in concept.lora if m not in weight_shapes)
    if missing:
        raise InputError(input_name, f"{name}: {len(missing)} modules are not in {model} (e.g. {missing[0]})")
    for module, w in concept.lora.items():
        shape = tuple(weight_shapes[module])
        if tuple(shape) != w.weight_shape:
            raise InputError(input_name, f"{name} does not fit {model}: module {module} has weight {shape} but the "
                                         f"LoRA gives {w.weight_shape} (a LoRA for another base model?)")


# --- writing ---------------------------------------------------------------------------

def tensor_hash(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 of the tensor data as safetensors lays it out (kohya's sshs_model_hash)."""
    from safetensors.torch import save

    blob = save(dict(tensors))
    header = int.from_bytes(blob[:8], "little")
    return hashlib.sha256(blob[8 + header:]).hexdigest()


def concept_metadata(concept: Concept, tensors: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """All metadata strings written into a concept file (ours, kohya ss_*, modelspec)."""
    i = concept.info
    facts = i.training.known()
    meta = {
        META + "schema": str(SCHEMA_VERSION),
        META + "name": i.name,
        META + "concepts": json.dumps(i.concepts, ensure_ascii=False),
        META + "trigger_words": json.dumps(i.trigger_words, ensure_ascii=False),
        META + "base_model": i.base_model,
        META + "base_model_name": i.base_model_name,
        META + "base_model_hash": i.base_model_hash,
        META + "rank": str(i.rank),
        META + "alpha": f"{i.alpha:g}",
        META + "module_set": i.module_set,
        META + "recommended_strength": f"{i.recommended_strength:g}",
        META + "training": json.dumps(facts, ensure_ascii=False),
        META + "training_config": json.dumps(i.training_config, ensure_ascii=False, sort_keys=True),
        KOHYA + "network_module": "networks.lora",
        KOHYA + "network_dim": str(i.rank),
        KOHYA + "network_alpha": f"{i.alpha:g}",
        KOHYA + "base_model_version": "sd_v1",
        KOHYA + "v2": "False",
        KOHYA + "output_name": i.name,
        KOHYA + "sd_model_name": i.base_model_name,
        KOHYA + "new_sd_model_hash": i.base_model_hash,
        KOHYA + "network_args": json.dumps({"module_set": i.module_set}),
        "sshs_model_hash": tensor_hash(tensors),  # kohya's name for the hash of the file's own tensors
        MODELSPEC + "sai_model_spec": "1.0.0",
        MODELSPEC + "architecture": ARCHITECTURE,
        MODELSPEC + "implementation": "diffusers",
        MODELSPEC + "title": i.name,
        MODELSPEC + "prediction_type": "epsilon",
        MODELSPEC + "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
        MODELSPEC + "trigger_phrase": i.trigger_prompt,
    }
    for field_name, (keys, _) in _KOHYA_FACTS.items():
        if field_name in facts:
            meta.update({KOHYA + key: str(facts[field_name]) for key in keys})
    if i.tag_frequency:  # known only from a training's data: never made up from the words
        meta[KOHYA + "tag_frequency"] = json.dumps(i.tag_frequency, ensure_ascii=False)
    if "resolution" in facts:
        meta[KOHYA + "resolution"] = f"({facts['resolution']}, {facts['resolution']})"
        meta[MODELSPEC + "resolution"] = f"{facts['resolution']}x{facts['resolution']}"
    return meta


def save_concept(concept: Concept, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write the concept atomically as a kohya-format .safetensors with full metadata."""
    from safetensors.torch import save_file

    path = check_safetensors(path, "concept files are safetensors")
    if concept.lora:
        info = concept.info
        info.rank = info.rank or max(w.rank for w in concept.lora.values())
        info.alpha = info.alpha or float(next(iter(concept.lora.values())).alpha)
        info.module_set = info.module_set or lora_keys.module_set_of(concept.lora)
    tensors = concept.state_dict()
    with atomic_path(path, overwrite=overwrite) as tmp:  # a failed write names the file and keeps the old one
        save_file(tensors, str(tmp), metadata=concept_metadata(concept, tensors))
    concept.path = path
    return path
