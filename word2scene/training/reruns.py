"""Running a training again under the same name, as a user of a graph expects: a finished
run with the same settings on the same data is that run's concept (nothing left to do);
anything else goes under the next free name, never replacing a file unasked."""
from __future__ import annotations

import json
from pathlib import Path

from ..concepts.file import Concept, load_concept
from ..datasets import dataset_hash, scan_dataset
from ..errors import InputError
from .config import TrainConfig
from .lora import list_states


def _plain(value):
    """A config value as it reads back from a concept's JSON metadata."""
    return json.loads(json.dumps(value))


def same_run(concept: Concept, cfg: TrainConfig, dataset, kb=None, base: tuple[str, str] | None = None) -> bool:
    """Whether `concept` was trained with `cfg`'s settings (every field that shapes the
    weights, steps and epochs included) on `dataset` as it is now (the dataset hash over
    file names, sizes, concepts and captions) from the base model `base` ((file name,
    sha256) as SD15.identity() gives it; None: not compared)."""
    recorded = concept.info.training_config or {}
    wanted = {**cfg.identity(), "steps": cfg.steps, "epochs": cfg.epochs}
    if any(_plain(v) != recorded.get(k) for k, v in wanted.items()):
        return False
    if base is not None and base[1] and concept.info.base_model_hash and base[1] != concept.info.base_model_hash:
        return False
    try:
        samples = scan_dataset(dataset, cfg.concepts or None, cfg.split, kb)
    except InputError:
        return False
    return dataset_hash(samples) == concept.info.training.dataset_hash


def finished_run(out: str | Path, cfg: TrainConfig, dataset, kb=None, base: tuple[str, str] | None = None) -> Concept | None:
    """The concept at `out` when it is this very run, finished (see same_run); else None."""
    out = Path(out)
    if not out.is_file():
        return None
    try:
        concept = load_concept(out, "save_name")
    except InputError:
        return None
    return concept if same_run(concept, cfg, dataset, kb, base) else None


def next_free_name(out: str | Path) -> Path:
    """`out` when neither it nor a checkpoint of it exists, else <stem>-2, -3, ... beside it."""
    out = Path(out)
    n, candidate = 1, out
    while candidate.exists() or list_states(candidate):
        n += 1
        candidate = out.with_name(f"{out.stem}-{n}{out.suffix}")
    return candidate
