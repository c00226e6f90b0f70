"""Labelled image sets for evaluation and scene classifiers: real reference folders and
generated folders, in the layouts training accepts (captions.jsonl with "class" and
"split", kohya or class folders), or a flat folder of unlabelled images."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..imagery import IMAGE_SUFFIXES, open_image
from ..datasets import read_caption_rows, scan_dataset
from ..errors import InputError


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    label: str  # class key (snake_case, e.g. dense_residential); "" when unlabelled


def class_key(name: str) -> str:
    """'Dense Residential', 'dense-residential', 'dense_residential' -> 'dense_residential'."""
    return "_".join("".join(c if c.isalnum() else " " for c in name.lower()).split())


def image_set(root: str | Path, input_name: str, split: str | None = None,
              split_input: str = "split") -> list[LabelledImage]:
    """Every image under `root` with its class; `split` keeps only those captions.jsonl rows.
    Errors name `input_name` for the folder and `split_input` for a split it does not have."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(input_name, f"{root} is not a folder")
    has_classes = (root / "captions.jsonl").is_file() or any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir())
    if not has_classes:
        flat = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not flat:
            raise InputError(input_name, f"{root} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return [LabelledImage(p, "") for p in flat]
    samples = scan_dataset(root, split=split, input_name=input_name, split_input=split_input)
    return [LabelledImage(s.image, class_key(s.concept)) for s in samples]


HELD_OUT_SPLITS = ("heldout", "test")


def held_out_split(root: str | Path, input_name: str = "--split") -> str:
    """The held-out split of a captions.jsonl folder ('heldout' or 'test'). Class folders
    without one have no held-out split: testing there is an explicit choice (split all)."""
    jsonl = Path(root) / "captions.jsonl"
    if not jsonl.is_file():
        raise InputError(input_name, f"{root} has no captions.jsonl, so no held-out split; pass 'all' to test on every "
                                     "image (if the classifier trained on them, that scores its training images)")
    splits = {str(row.get("split")) for row in read_caption_rows(jsonl, (), "data")}
    for name in HELD_OUT_SPLITS:
        if name in splits:
            return name
    raise InputError(input_name, f"{jsonl} has no held-out split ({' or '.join(HELD_OUT_SPLITS)}); its splits: "
                                 f"{', '.join(sorted(splits))}; pass one of them or 'all'")


def labels(items: list[LabelledImage]) -> list[str]:
    """The sorted distinct class keys of a set ("" excluded)."""
    return sorted({i.label for i in items if i.label})


def read_images(items: list[LabelledImage], input_name: str) -> list[Image.Image]:
    """RGB images of a set; an unreadable file is an error naming it (a metric over fewer
    images than asked would be silently different)."""
    return [open_image(item.path, input_name) for item in items]
