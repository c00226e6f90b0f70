"""What a concept training writes and where: the concept file's path (a node's save_name in
the loras folder), its metadata (ConceptInfo: what it was trained on, and how, from the one
TrainConfig), a concept file per epoch beside it, and the preview scenes drawn on the way."""
from __future__ import annotations

import re
from pathlib import Path

import torch

from ..concepts.file import Concept, ConceptInfo, save_concept
from ..datasets import Sample, tag_frequency
from ..files import check_output, check_safetensors, safe_relative_name, save_or_keep
from ..imagery import save_png
from ..errors import InputError
from ..models.sd15 import SD15
from ..scenes.pipeline import make_scene
from ..scenes.sampling import SamplingSettings
from .adapters import extract_concept
from .config import TrainConfig
from .data import TrainingData


def concept_output_path(folder: str | Path, save_name: str) -> Path:
    """<folder>/<save_name>.safetensors for a user-given name (subfolders allowed, no '..')."""
    name = safe_relative_name("save_name", save_name)
    if not name.lower().endswith(".safetensors"):
        name += ".safetensors"
    return Path(folder) / name


def check_destination(out: str | Path, overwrite: bool) -> Path:
    """A concept file's path: a .safetensors name that may be written (see files.check_output)."""
    return check_output(check_safetensors(out, "concept files are safetensors"), overwrite)


def concept_info(sd: SD15, cfg: TrainConfig, out: Path, data: TrainingData, steps: int, per_step: int) -> ConceptInfo:
    """The metadata of the concept after `steps` optimizer steps of `per_step` images (per
    micro-batch, over all processes): what it was trained on (concepts, trigger words, the
    data's tag frequencies, the base model's name and sha256) and how (cfg's facts, and cfg
    itself as recorded)."""
    epochs_done = steps * cfg.grad_accumulation * per_step / len(data.expanded)
    base_name, base_hash = sd.identity()
    return ConceptInfo(name=out.stem, concepts=sorted({s.concept for s in data.samples}),
                       trigger_words=list(cfg.trigger_words), base_model_name=base_name, base_model_hash=base_hash,
                       rank=cfg.rank, alpha=cfg.file_alpha, module_set=cfg.module_set,
                       training=cfg.facts(steps, max(1, round(epochs_done)), len(data.samples), data.hash),
                       training_config=cfg.recorded(), tag_frequency=tag_frequency(cfg.trigger_words, data.samples))


def save_trained(concept: Concept, out: Path, overwrite: bool, previews: list) -> None:
    """The finished concept at `out` (if that fails, kept beside it or in the temp folder, and
    the error says where), and the last preview beside it as the thumbnail concept browsers
    show (<stem>.preview.png)."""
    save_or_keep(out, lambda path, replace: save_concept(concept, path, overwrite=replace), overwrite)
    if previews:
        save_png(previews[-1][1][0], out.with_suffix(".preview.png"), overwrite=True)


def epoch_concept_path(out: Path, epoch: int) -> Path:
    return out.with_name(f"{out.stem}-epoch{epoch:02d}{out.suffix}")


def epoch_concepts(out: Path) -> dict[int, Path]:
    """The epoch concept files beside `out` (<stem>-epochNN.safetensors), by epoch."""
    pattern = re.compile(rf"^{re.escape(out.stem)}-epoch(\d+){re.escape(out.suffix)}$")
    found = (pattern.match(p.name) for p in out.parent.iterdir()) if out.parent.is_dir() else ()
    return {int(m[1]): out.with_name(m[0]) for m in found if m}


def earlier_epochs(out: Path, cfg: TrainConfig, overwrite: bool, epochs_done: int) -> list[Path]:
    """The epoch files of an earlier run beside `out` that this run's would mix with (those past
    the epochs a resumed state has done): refused without `overwrite`; with it, returned, to
    be removed when this run writes its first epoch file (the whole set is replaced)."""
    if not cfg.save_every_epoch:
        return []
    earlier = [p for e, p in sorted(epoch_concepts(out).items()) if e > epochs_done]
    if earlier and not overwrite:
        names = ", ".join(p.name for p in earlier[:3]) + (", ..." if len(earlier) > 3 else "")
        raise InputError("out", f"{out.parent} holds epoch files of an earlier run ({names}); pass overwrite to replace "
                                "the whole set, or choose another name")
    return earlier


def save_epoch_concept(sd: SD15, cfg: TrainConfig, out: Path, data: TrainingData, done: int, epoch: int,
                       per_step: int) -> Path:
    """The adapters as they are at the end of `epoch` (after `done` steps), as a concept file beside `out`."""
    info = concept_info(sd, cfg, out, data, done, per_step)
    info.name, info.training.epochs = epoch_concept_path(out, epoch).stem, epoch
    return save_concept(extract_concept(sd, cfg, info), epoch_concept_path(out, epoch), overwrite=True)


def blank_preview(cfg: TrainConfig):
    """What stands for the previews of a run that drew none (preview_every = 0): one black
    image of the preview size."""
    from PIL import Image

    size = cfg.preview_size or cfg.resolution
    return Image.new("RGB", (size, size))


@torch.no_grad()
def preview_images(sd: SD15, cfg: TrainConfig, samples: list[Sample], kb=None) -> list:
    """One scene per concept word with a fixed seed, using the adapters as they are now
    (the scene pipeline in the paper's prompt form: "gs, geographic scene, <word>")."""
    size = cfg.preview_size or cfg.resolution
    settings = SamplingSettings(steps=cfg.preview_steps, seed=cfg.seed, width=size, height=size)
    was_training = sd.unet.training
    sd.unet.eval()
    images = [make_scene(sd, word, settings, trigger_words=cfg.trigger_words, kb=kb).image
              for word in sorted({s.concept for s in samples})]
    sd.unet.train(was_training)
    return images
