"""The human half of hybrid intelligence, per image: a review file listing every machine
proposal with a decision (adopt / amend / annihilate, or pending until reviewed) and an
`add` list, and applying it to a training folder (kohya .txt per image, or captions.jsonl).

Applying is idempotent (the same review gives the same folder, and files of an earlier apply
that the review no longer produces are removed), works on partial reviews (pending proposals
are left out unless asked), and refuses a review whose images changed since the proposal.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from ..errors import InputError
from ..evaluation.image_sets import class_key
from ..files import safe_relative_name, write_text_atomic
from ..models.sd15 import file_sha256
from .proposals import ImageProposals

DECISIONS = ("pending", "adopt", "amend", "annihilate")
LEVELS = ("scene", "tags", "sentences")
ADD_KINDS = {"scene": "scene", "tag": "tags", "sentence": "sentences"}
FORMATS = ("kohya", "jsonl")
MANIFEST = ".word2scene-captions.json"  # what the last apply wrote here (removed when no longer produced)
HEADER = """\
# Word2Scene caption review: machine proposals per image at three levels (scene class, element
# tags, relation sentences), each with its source and confidence, for an expert to judge.
# For each proposal set `decision` to one of:
#   adopt       keep it as it is
#   amend       keep it, rewritten: put the new text in `amended`
#   annihilate  drop it
#   pending     not reviewed yet (left out when applied, unless --include-pending)
# Add your own under the image's `add` as {kind: tag|sentence|scene, text: ...}.
# Then: python -m word2scene captions apply THIS_FILE --out TRAINING_FOLDER [--format kohya|jsonl]
# Do not change the images in the meantime: a review of changed images is refused.
"""


def write_review(proposals: list[ImageProposals], facts: dict, dataset: str | Path, path: str | Path,
                 overwrite: bool = False) -> Path:
    """The review file: the dataset, the facts of the proposal run, one entry per image."""
    def item(p) -> dict:
        return {"text": p.text, "source": p.source, "confidence": p.confidence, "decision": "pending"}
    images = [{"file": ip.file, "sha256": ip.sha256, "label": ip.label, "scene": item(ip.scene),
               "tags": [item(t) for t in ip.tags], "sentences": [item(s) for s in ip.sentences],
               "add": []} for ip in proposals]
    body = {"dataset": str(Path(dataset).resolve()), "proposed_by": facts, "images": images}
    return write_text_atomic(path, HEADER + yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=110),
                             overwrite=overwrite)


@dataclass
class ReviewedImage:
    file: str
    source: Path
    label: str  # the class it is filed under ("" when neither the dataset nor the review gives one)
    captions: list[str]  # accepted sentences, then the accepted tags as one caption


@dataclass
class ApplySummary:
    decisions: dict = field(default_factory=lambda: {level: {d: 0 for d in DECISIONS} | {"added": 0}
                                                     for level in LEVELS})
    images: int = 0
    captioned: int = 0
    without_class: list[str] = field(default_factory=list)
    removed: int = 0  # files of an earlier apply no longer produced

    def report(self) -> str:
        lines = [f"{self.images} images written, {self.captioned} with captions"]
        for level, counts in self.decisions.items():
            lines.append(f"  {level}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        if self.without_class:
            lines.append(f"  skipped {len(self.without_class)} without a class (no dataset class, no scene adopted): "
                         + ", ".join(self.without_class[:5]))
        if self.removed:
            lines.append(f"  removed {self.removed} files an earlier apply wrote that this review no longer gives")
        return "\n".join(lines)


def _fail(where: str, message: str):
    raise InputError("review", f"{where}: {message}")


def _accepted(entry, where: str, counts: dict, include_pending: bool) -> str | None:
    """The text a proposal contributes (None when dropped), counting its decision."""
    if not isinstance(entry, dict):
        _fail(where, f"expected a mapping with text and decision; found {entry!r}")
    decision = str(entry.get("decision", "pending")).strip().lower()
    if decision not in DECISIONS:
        _fail(where, f"decision {decision!r}; accepted: {', '.join(DECISIONS)}")
    counts[decision] += 1
    text = entry.get("amended") if decision == "amend" else entry.get("text")
    if decision == "annihilate" or (decision == "pending" and not include_pending):
        return None
    if not isinstance(text, str) or not text.strip():
        _fail(where, f"decision {decision} needs {'the new text in `amended`' if decision == 'amend' else 'a `text`'}")
    return " ".join(text.split())


def read_review(path: str | Path, include_pending: bool = False) -> tuple[Path, list[ReviewedImage], ApplySummary]:
    """The dataset folder, each image's accepted class and captions, and the decision counts.
    Errors name the review file, the image and the field."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError("review", f"{path}: cannot be read as YAML ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not data.get("dataset"):
        raise InputError("review", f"{path}: expected `dataset` and a list of `images`, as `captions propose` writes")
    root = Path(data["dataset"])
    summary, reviewed, changed = ApplySummary(), [], []
    for n, image in enumerate(data["images"]):
        where = f"{path}: images[{n}]"
        if not isinstance(image, dict) or not isinstance(image.get("file"), str):
            _fail(where, "expected a mapping with file, sha256, scene, tags, sentences and add")
        file = safe_relative_name("review", image["file"])
        where = f"{path}: images[{n}] ({file})"
        source = root / file
        if not source.is_file():
            _fail(where, f"the image is gone from {root}")
        if file_sha256(source) != image.get("sha256"):
            changed.append(file)
            continue
        decided = {}
        scene = _accepted(image.get("scene"), f"{where}.scene", summary.decisions["scene"], include_pending)
        decided["scene"] = [scene] if scene else []
        for level in ("tags", "sentences"):
            entries = image.get(level) or []
            if not isinstance(entries, list):
                _fail(f"{where}.{level}", "expected a list of proposals")
            decided[level] = [t for k, e in enumerate(entries)
                              if (t := _accepted(e, f"{where}.{level}[{k}]", summary.decisions[level], include_pending))]
        added = image.get("add") or []
        if not isinstance(added, list):
            _fail(f"{where}.add", "expected a list of {kind: tag|sentence|scene, text: ...}")
        for k, extra in enumerate(added):
            if not isinstance(extra, dict) or extra.get("kind") not in ADD_KINDS or not str(extra.get("text", "")).strip():
                _fail(f"{where}.add[{k}]", f"expected {{kind: {'|'.join(ADD_KINDS)}, text: ...}}; found {extra!r}")
            level = ADD_KINDS[extra["kind"]]
            text = " ".join(str(extra["text"]).split())
            decided[level] = [text] if level == "scene" else decided[level] + [text]  # an added scene wins
            summary.decisions[level]["added"] += 1
        captions = list(dict.fromkeys(decided["sentences"]))
        if decided["tags"]:
            captions.append(", ".join(dict.fromkeys(decided["tags"])))
        label = decided["scene"][0] if decided["scene"] else str(image.get("label") or "")
        reviewed.append(ReviewedImage(file, source, label, captions))
    if changed:
        raise InputError("review", f"{path}: {len(changed)} images changed since they were proposed (first: "
                                   f"{', '.join(changed[:5])}); propose again for them")
    return root, reviewed, summary


def _place(source: Path, dest: Path) -> None:
    """The image at dest: a hard link where the file system allows (no copy, and the source's
    own mode untouched), else a copy; renamed into place, so no half-written image remains."""
    if dest.is_file() and (os.path.samefile(source, dest) or file_sha256(dest) == file_sha256(source)):
        return
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
        os.replace(tmp, dest)
    except OSError as exc:
        raise InputError("out", f"could not write {dest}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def apply_review(review: str | Path, out: str | Path, fmt: str = "kohya", include_pending: bool = False) -> ApplySummary:
    """Write the reviewed captions as a training folder: out/<class>/<image> (the image's path in
    the dataset with '/' as '__', so names never collide) with one .txt per
    image (one caption per line; `kohya`) or one captions.jsonl (`jsonl`, each row's `captions`
    list). The trainer draws one of an image's captions per epoch."""
    if fmt not in FORMATS:
        raise InputError("format", f"{fmt!r}; accepted: {', '.join(FORMATS)}")
    root, reviewed, summary = read_review(review, include_pending)
    out = Path(out)
    if out.resolve() == root.resolve():
        raise InputError("out", f"{out} is the reviewed dataset itself; choose a new folder for the training captions")
    written: dict[str, str] = {}  # destination (relative) -> source file
    rows = []
    for image in reviewed:
        cls = class_key(image.label)
        if not cls:
            summary.without_class.append(image.file)
            continue
        dest = f"{cls}/{image.file.replace('/', '__')}"  # the source's own path: unique whatever the class
        written[dest] = image.file
        _place(image.source, out / dest)
        summary.images += 1
        summary.captioned += bool(image.captions)
        if fmt == "kohya":
            txt = str(Path(dest).with_suffix(".txt"))
            if image.captions:
                write_text_atomic(out / txt, "\n".join(image.captions) + "\n", overwrite=True)
                written[txt] = image.file
        rows.append({"file": dest, "class": cls, "split": "train", "captions": image.captions, "source": image.file})
    if fmt == "jsonl":
        write_text_atomic(out / "captions.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                          overwrite=True)
        written["captions.jsonl"] = ""
    summary.removed = _remove_stale(out, set(written))
    write_text_atomic(out / MANIFEST, json.dumps({"review": str(Path(review).resolve()), "files": sorted(written),
                                                  "summary": asdict(summary)}, indent=1) + "\n", overwrite=True)
    return summary


def _remove_stale(out: Path, now: set[str]) -> int:
    """Remove what the previous apply wrote and this one does not (a changed decision moves an
    image to another class, or drops its captions), so applying is idempotent."""
    manifest = out / MANIFEST
    if not manifest.is_file():
        return 0
    try:
        before = json.loads(manifest.read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError):
        return 0
    removed = 0
    for name in before:
        if name not in now:
            path = out / safe_relative_name("out", name)
            if path.is_file():
                path.unlink()
                removed += 1
                if path.parent != out and not any(path.parent.iterdir()):
                    path.parent.rmdir()
    return removed
