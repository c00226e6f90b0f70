"""Training data: find images and captions, read RS imagery, build training captions.

Layouts (detected in this order):
- captions.jsonl in the folder (as in shared/data): lines with "file", "class", "caption"
  and optionally "split" (only `split` rows are used when given, default "train");
- kohya folders: subfolders "10_airport" (repeat count, class) with image + .txt caption;
- class folders: subfolders named after the class (folder name = concept word), captions
  from .txt sidecars when present;
- a flat folder of images (+ optional .txt sidecars): the concept word is given.
Training caption = trigger words + concept word + caption (the paper's "gs, geographic
scene, ..." form).
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .imagery import IMAGE_SUFFIXES, MIN_IMAGE_SIDE, fit_square, read_image

REPEAT_PREFIX = re.compile(r"^(\d+)_(.+)$")


@dataclass(frozen=True)
class Sample:
    image: Path
    concept: str  # the concept word as it goes into the caption
    captions: tuple[str, ...] = ()  # the image's own captions (none, one, or RSICD's five); training draws one per epoch
    repeats: int = 1

    @property
    def caption(self) -> str:
        """The first caption ("" when none)."""
        return self.captions[0] if self.captions else ""


def row_captions(row: dict) -> tuple[str, ...]:
    """A captions.jsonl row's captions: its `captions` list and its `caption`, each once, in order."""
    found = [row.get("caption")] + list(row.get("captions") or [])
    out: list[str] = []
    for text in found:
        if isinstance(text, str) and text.strip() and text.strip() not in out:
            out.append(text.strip())
    return tuple(out)


def read_caption_rows(path: Path, required: tuple[str, ...], input_name: str) -> list[dict]:
    """The rows of a captions.jsonl (the format of shared/data): one JSON object per line,
    each with the `required` keys; errors name the file and line."""
    rows = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = Path(path).read_bytes()[:exc.start].count(b"\n") + 1
        raise InputError(input_name, f"{path}:{line}: not UTF-8 text (byte {exc.object[exc.start]:#04x}); save the "
                                     "file as UTF-8") from None
    except OSError as exc:
        raise InputError(input_name, f"{path}: cannot be read ({exc.strerror or exc})") from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(input_name, f"{path}:{n}: not a JSON line ({exc.msg})") from None
        if not isinstance(row, dict) or any(k not in row for k in required):
            raise InputError(input_name, f"{path}:{n}: a line needs {' and '.join(repr(k) for k in required)}")
        rows.append(row)
    return rows


def concept_word(class_name: str, kb=None) -> str:
    """Class folder/id -> the word used in captions (knowledge-base name when known)."""
    if kb is not None:
        cid = kb.find(class_name)
        if cid is not None:
            return kb[cid].name
    return " ".join(class_name.replace("_", " ").split())


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _sidecar(image: Path) -> tuple[str, ...]:
    """The captions in an image's .txt, one per line (kohya reads the first line only)."""
    txt = image.with_suffix(".txt")
    if not (txt.is_file() and txt.stat().st_size):
        return ()
    return tuple(line.strip() for line in txt.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip())


def scan_dataset(root: str | Path, concepts: list[str] | None = None, split: str | None = "train", kb=None,
                 input_name: str = "dataset", split_input: str = "split") -> list[Sample]:
    """All training samples under `root`; `concepts` restricts class layouts to those
    classes (matched through the knowledge base) and names the concept of a flat folder.
    Errors about the folder name `input_name`; a split its captions.jsonl lacks, `split_input`."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(input_name, f"{root} is not a folder")
    wanted = None
    if concepts:
        wanted = {(kb.find(c) if kb else None) or c.strip().lower().replace(" ", "_") for c in concepts}

    def keep(cls: str) -> bool:
        if wanted is None:
            return True
        return ((kb.find(cls) if kb else None) or cls.lower()) in wanted

    samples: list[Sample] = []
    jsonl = root / "captions.jsonl"
    if jsonl.is_file():
        rows = read_caption_rows(jsonl, ("file", "class"), input_name)
        splits = sorted({str(row.get("split", split)) for row in rows})
        if split is not None and rows and split not in splits:
            raise InputError(split_input, f"{split!r}: {jsonl} has no rows of that split; its splits: "
                                          f"{', '.join(splits)} (or all)")
        for row in rows:
            file, cls = str(row["file"]), str(row["class"])
            if split is not None and row.get("split", split) != split or not keep(cls):
                continue
            path = (root / file).resolve()
            if root.resolve() not in path.parents:
                raise InputError(input_name, f"{jsonl}: file {file!r} points outside the dataset folder")
            samples.append(Sample(path, concept_word(cls, kb), row_captions(row)))
    else:
        subfolders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        for folder in subfolders:
            m = REPEAT_PREFIX.match(folder.name)
            repeats, cls = (int(m[1]), m[2]) if m else (1, folder.name)
            if not keep(cls):
                continue
            for image in _images(folder):
                samples.append(Sample(image, concept_word(cls, kb), _sidecar(image), max(1, repeats)))
        flat = _images(root)
        if flat:
            if not concepts:
                raise InputError("concept", f"{root} holds images directly; give the concept word they show")
            for image in flat:
                samples.append(Sample(image, concept_word(concepts[0], kb), _sidecar(image)))
    if not samples:
        what = f" for concept(s) {', '.join(concepts)}" if concepts else ""
        raise InputError(input_name, f"{root} has no images{what} (accepted: captions.jsonl, kohya '10_name' folders, "
                                    f"class folders, or images with .txt captions; {', '.join(sorted(IMAGE_SUFFIXES))})")
    missing = [s.image for s in samples if not s.image.is_file()]
    if missing:
        raise InputError(input_name, f"{len(missing)} captioned images do not exist (first: {missing[0]}); "
                                    "captions must match image files")
    return samples


def training_caption(trigger_words: list[str], sample: Sample, choice: int = 0) -> str:
    """The paper's form: "gs, geographic scene, <concept>, <caption>", with the sample's
    caption number `choice` (when it has captions)."""
    parts = [t.strip() for t in trigger_words if t.strip()] + [sample.concept]
    if sample.captions:
        parts.append(sample.captions[choice].rstrip(". "))
    return ", ".join(parts)


def training_captions(trigger_words: list[str], sample: Sample) -> list[str]:
    """Every training caption of a sample (one when it has no caption of its own)."""
    return [training_caption(trigger_words, sample, k) for k in range(max(1, len(sample.captions)))]


def tag_frequency(trigger_words: list[str], samples: list[Sample]) -> dict[str, dict[str, int]]:
    """kohya's ss_tag_frequency of a training on `samples`: per image folder, each tag (a
    comma-separated part of a training caption, in lower case) with the number of images
    whose training captions have it (an image counts once, whatever its captions and repeats)."""
    counts: dict[str, dict[str, int]] = {}
    for s in samples:
        tags = {t.strip().lower() for text in training_captions(trigger_words, s) for t in text.split(",") if t.strip()}
        folder = counts.setdefault(s.image.parent.name, {})
        for tag in tags:
            folder[tag] = folder.get(tag, 0) + 1
    return {name: dict(sorted(tags.items(), key=lambda kv: (-kv[1], kv[0]))) for name, tags in sorted(counts.items())}


def dataset_hash(samples: list[Sample]) -> str:
    """sha256 over (file name, size, concept, caption, repeats): changes when the data does."""
    h = hashlib.sha256()
    for s in sorted(samples, key=lambda s: str(s.image)):
        h.update(f"{s.image.name}|{s.image.stat().st_size}|{s.concept}|{chr(31).join(s.captions)}|{s.repeats}\n".encode())
    return h.hexdigest()[:16]


def load_images(samples: list[Sample], resolution: int, bands: tuple[int, ...] = (1, 2, 3),
                max_bad_fraction: float = 0.1) -> tuple[list[Sample], list[np.ndarray], list[str]]:
    """Read every sample's image fitted to resolution x resolution (H x W x 3 uint8).
    Unreadable ones, and ones under MIN_IMAGE_SIDE pixels a side (a 1 x 1 or 1 x 1000 px
    image stretched to the resolution teaches nothing), are skipped and reported; more than
    max_bad_fraction of them is an error."""
    kept, arrays, bad = [], [], []
    for s in samples:
        try:
            image = read_image(s.image, bands)
            if min(image.size) < MIN_IMAGE_SIDE:
                bad.append(f"{s.image.name} ({image.width} x {image.height} px; accepted: at least {MIN_IMAGE_SIDE} "
                           "px a side)")
                continue
            arrays.append(np.asarray(fit_square(image, resolution)))
            kept.append(s)
        except InputError:
            raise
        except Exception as exc:  # PIL raises many types for corrupt files
            bad.append(f"{s.image.name} ({type(exc).__name__})")
    if samples and len(bad) / len(samples) > max_bad_fraction:
        raise InputError("dataset", f"{len(bad)} of {len(samples)} images are unreadable or too small (more than "
                                    f"{max_bad_fraction:.0%}): {', '.join(bad[:5])}")
    return kept, arrays, bad
