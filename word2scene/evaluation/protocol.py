"""The Word2Scene evaluation protocol: N images per concept with fixed seeds for the
paper's 11 trained and 19 zero-shot concepts, evaluated against a real reference folder
per class, a markdown table per concept and by split, and the strength x epochs grid.

Work is split by (concept, seed): image `images/<concept>/<seed>.png` depends on nothing
else, so any number of workers (`accelerate launch`) gives the same files, and a rerun
skips images already written (each is written atomically)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from ..concepts.patching import apply_concepts
from ..scenes.pipeline import check_drawn_with, make_scene, scene_prompt
from ..scenes.sampling import SamplingSettings
from ..scenes.strength_study import strength_grid
from ..errors import InputError
from ..files import write_text_atomic
from ..imagery import save_png
from .scoring import evaluate
from .image_sets import LabelledImage

SPLITS = ("trained", "zero-shot")


@dataclass
class ProtocolSettings:
    concepts: list[str] = field(default_factory=list)  # knowledge-base ids; empty: the paper's 30
    images_per_concept: int = 10
    seed: int = 0  # image k of a concept uses seed + k
    sampling: SamplingSettings = field(default_factory=SamplingSettings)  # the paper's DDIM 30 steps, CFG 7, 512 px
    strength: float = 1.0  # the paper's GUI sends <lora:word2scene:1>
    style: str = "word2scene"
    grid: bool = True
    grid_word: str = "church"
    grid_strengths: list[float] = field(default_factory=lambda: [k / 10 for k in range(11)])  # the paper's 0-1.0


def paper_concepts(kb) -> dict[str, list[str]]:
    """{"trained": 11 ids, "zero-shot": 19 ids} from the knowledge base."""
    return {split: kb.by_paper(split) for split in SPLITS}


def resolve_concepts(kb, names: list[str]) -> list[str]:
    """Knowledge-base ids of the given words ('trained' / 'zero-shot' name the splits);
    empty: all of the paper's concepts."""
    split_ids = paper_concepts(kb)
    if not names:
        return split_ids["trained"] + split_ids["zero-shot"]
    ids: list[str] = []
    for name in names:
        if name in split_ids:
            ids += split_ids[name]
            continue
        cid = kb.find(name)
        if cid is None:
            raise InputError("concepts", f"{name!r} is not in the knowledge base; use words such as airport, "
                                         "'dense residential', or trained / zero-shot")
        ids.append(cid)
    return list(dict.fromkeys(ids))


def work_items(concepts: list[str], images_per_concept: int, seed: int) -> list[tuple[str, int]]:
    return [(c, seed + k) for c in concepts for k in range(images_per_concept)]


def image_path(out: Path, concept_id: str, seed: int) -> Path:
    return Path(out) / "images" / concept_id / f"{seed:06d}.png"


def generate_images(sd, kb, concept, settings: ProtocolSettings, out: str | Path, worker: tuple[int, int] = (0, 1),
                    on_image: Callable[[Path, bool], None] | None = None) -> tuple[int, int]:
    """Write this worker's share (every num_workers-th item) of the images not yet on disk.
    Returns (written, skipped). on_image(path, written) after each item."""

    index, count = worker
    items = work_items(resolve_concepts(kb, settings.concepts), settings.images_per_concept, settings.seed)[index::count]
    check_drawn_with([image_path(out, cid, seed) for cid, seed in items], settings.sampling, settings.strength)
    triggers = concept.info.trigger_words if concept is not None else None
    written = skipped = 0
    apply_concepts(sd, [(concept, settings.strength, settings.strength)] if concept is not None else [])
    try:
        for cid, seed in items:
            path = image_path(out, cid, seed)
            if path.is_file():
                skipped += 1
                if on_image:
                    on_image(path, False)
                continue
            scene = make_scene(sd, kb[cid].name, replace(settings.sampling, seed=seed), style=settings.style,
                               trigger_words=triggers, kb=kb,
                               parameters={"concept": cid, "strength": settings.strength,
                                           "concept_file": str(concept.path) if concept is not None else None})
            scene.save(path, overwrite=True)
            written += 1
            if on_image:
                on_image(path, True)
    finally:
        apply_concepts(sd, [])
    return written, skipped


def generated_set(out: str | Path, concepts: list[str]):
    """The protocol's images as a labelled set (class = concept id)."""
    items = []
    for cid in concepts:
        folder = Path(out) / "images" / cid
        items += [LabelledImage(p, cid) for p in sorted(folder.glob("*.png"))] if folder.is_dir() else []
    return items


def evaluate_protocol(kb, settings: ProtocolSettings, out: str | Path, reference: list, evaluation) -> str:
    """Evaluate the written images against `reference` (a labelled set), write report.md
    and results.json into `out`; returns the markdown."""

    concepts = resolve_concepts(kb, settings.concepts)
    generated = generated_set(out, concepts)
    splits = paper_concepts(kb)
    groups = {split: [c for c in concepts if c in ids] for split, ids in splits.items()}
    report = evaluate(generated, reference, evaluation, groups={k: v for k, v in groups.items() if v})
    s = settings.sampling
    text = (f"# Word2Scene protocol\n\n{settings.images_per_concept} images per concept, seeds {settings.seed}.."
            f"{settings.seed + settings.images_per_concept - 1}, DDIM {s.steps} steps, CFG {s.cfg:g}, {s.width}x{s.height}, "
            f"strength {settings.strength:g}.\n\n" + report.to_markdown())
    for name, data in (("report.md", text), ("results.json", report.to_json())):
        write_text_atomic(Path(out) / name, data, overwrite=True)
    return text


def protocol_grid(sd, kb, concepts: list, settings: ProtocolSettings, out: str | Path) -> Path | None:
    """The strength x epochs grid (rows: concept files, e.g. one per epoch) as grid.png; skipped when present."""
    path = Path(out) / "grid.png"
    if path.is_file() or not concepts:
        return None
    expansion = scene_prompt(sd, settings.grid_word, style=settings.style, seed=settings.seed,
                             trigger_words=concepts[0].info.trigger_words, kb=kb)
    sampling = SamplingSettings(**{**settings.sampling.as_dict(), "seed": settings.seed, "negative": expansion.negative})
    image, _ = strength_grid(sd, expansion.positive, concepts, settings.grid_strengths, sampling)
    save_png(image, path, {"prompt": expansion.positive, **sampling.as_dict(), "strengths": settings.grid_strengths,
                           "concepts": [str(c.path) for c in concepts]}, overwrite=True)
    return path

