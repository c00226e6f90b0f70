"""The human half of hybrid intelligence, per image: a review file listing every machine
proposal with a decision (adopt / amend / annihilate, or pending until reviewed) and an
`add` list, and applying it to a training folder (kohya .txt per image, or captions.jsonl).

Applying is idempotent (the same review gives the same folder, and files of an earlier apply
that the review no longer produces are removed), works on partial reviews (pending proposals
are left out unless asked), and refuses a review whose images changed since the proposal.

A review file is data from anywhere, so it is not trusted: its `dataset` is used only when
this user's `captions propose` wrote it (a seal keyed by a secret: seal_key_path), else the
dataset must be given by the user; YAML aliases are refused; and nothing is written or
deleted through a symbolic link inside the output folder.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import shutil
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from ..errors import InputError
from ..evaluation.image_sets import class_key
from ..files import check_output_folder, first_link, load_yaml, safe_relative_name, temp_name, write_text_atomic
from ..models.weight_files import file_sha256
from .proposals import ImageProposals

DECISIONS = ("pending", "adopt", "amend", "annihilate")
LEVELS = ("scene", "tags", "sentences")
ADD_KINDS = {"scene": "scene", "tag": "tags", "sentence": "sentences"}
FORMATS = ("kohya", "jsonl")
MANIFEST = ".word2scene-captions.json"  # what the last apply wrote here (removed when no longer produced)
SEAL_KEY_ENV = "W2S_REVIEW_KEY"  # where this user's secret for sealing a review's dataset is kept


def seal_key_path() -> Path:
    """$W2S_REVIEW_KEY, else ~/.word2scene/review.key."""
    return Path(os.environ.get(SEAL_KEY_ENV) or Path.home() / ".word2scene" / "review.key")
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


def write_caption_review(proposals: list[ImageProposals], facts: dict, dataset: str | Path, path: str | Path,
                         overwrite: bool = False) -> Path:
    """The review file of proposed captions, for an expert to decide per image (`captions
    apply` writes the accepted ones): the dataset (sealed, see dataset_seal), the facts of the
    proposal run, one entry per image."""
    def item(p) -> dict:
        return {"text": p.text, "source": p.source, "confidence": p.confidence, "decision": "pending"}
    images = [{"file": ip.file, "sha256": ip.sha256, "label": ip.label, "scene": item(ip.scene),
               "tags": [item(t) for t in ip.tags], "sentences": [item(s) for s in ip.sentences],
               "add": []} for ip in proposals]
    folder = str(Path(dataset).resolve())
    body = {"dataset": folder, "dataset_seal": dataset_seal(folder, create=True) or "", "proposed_by": facts,
            "images": images}
    return write_text_atomic(path, HEADER + yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=110),
                             overwrite=overwrite)


def dataset_seal(folder: str, create: bool = False) -> str | None:
    """HMAC-SHA256 of a dataset folder's path under this user's secret key (made when `create`
    and missing): a review whose seal matches names a folder this user proposed for. None
    when there is no key (or it cannot be made: the review then needs its dataset given)."""
    key_file = seal_key_path()
    try:
        key = key_file.read_bytes()
    except FileNotFoundError:
        if not create:
            return None
        try:
            key_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
        except FileExistsError:  # another run made it meanwhile
            pass
        except OSError:
            return None
        return dataset_seal(folder)
    except OSError:
        return None
    if len(key) < 16:
        return None
    return hmac.new(key, folder.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()


def reviewed_dataset(path: Path, data: dict, dataset: str | Path | None) -> Path:
    """The folder a review's images are read from: `dataset` when the user gives one, else the
    review's own `dataset` when its seal shows this user's `captions propose` wrote it. Any
    other folder is refused: a review from elsewhere could name /etc and the hash of a file
    there, and have it linked into the training set."""
    if dataset is not None:
        root = Path(dataset)
        if not root.is_dir():
            raise InputError("dataset", f"{root} is not a folder")
        return root
    recorded = data.get("dataset")
    if not isinstance(recorded, str) or not recorded.strip():
        raise InputError("review", f"{path}: dataset: expected the folder the images are in; found {recorded!r}")
    seal = data.get("dataset_seal")
    expected = dataset_seal(recorded)
    if not (isinstance(seal, str) and expected and hmac.compare_digest(seal, expected)):
        raise InputError("review", f"{path}: its dataset {recorded} was not written by your own `captions propose` "
                                   f"(no matching dataset_seal: a review from elsewhere, or an edited dataset); "
                                   f"pass the folder of the reviewed images yourself (--dataset FOLDER) to use it")
    root = Path(recorded)
    if not root.is_dir():
        raise InputError("review", f"{path}: dataset {recorded} is not a folder; pass where the images are now "
                                   "(--dataset FOLDER)")
    return root


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
    renamed: list[str] = field(default_factory=list)  # "<file> -> <written name>" where two names would collide
    removed: int = 0  # files of an earlier apply no longer produced
    not_removed: list[str] = field(default_factory=list)  # listed by an earlier apply, but not its regular files

    def report(self) -> str:
        lines = [f"{self.images} images written, {self.captioned} with captions"]
        for level, counts in self.decisions.items():
            lines.append(f"  {level}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        if self.without_class:
            lines.append(f"  skipped {len(self.without_class)} without a class (no dataset class, no scene adopted): "
                         + ", ".join(self.without_class[:5]))
        if self.renamed:
            lines.append(f"  renamed {len(self.renamed)} whose names would have collided with another image's (or "
                         f"its caption file's): " + ", ".join(self.renamed[:5]))
        if self.removed:
            lines.append(f"  removed {self.removed} files an earlier apply wrote that this review no longer gives")
        if self.not_removed:
            lines.append(f"  left {len(self.not_removed)} listed by an earlier apply that are not its regular files "
                         f"inside the output folder (a link, a folder, or gone): " + ", ".join(self.not_removed[:5]))
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


def read_review(path: str | Path, include_pending: bool = False,
                dataset: str | Path | None = None) -> tuple[Path, list[ReviewedImage], ApplySummary]:
    """The dataset folder (reviewed_dataset), each image's accepted class and captions, and
    the decision counts. Errors name the review file, the image and the field."""
    path = Path(path)
    data = load_yaml(path, "review")
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not data.get("dataset"):
        raise InputError("review", f"{path}: expected `dataset` and a list of `images`, as `captions propose` writes")
    root = reviewed_dataset(path, data, dataset)
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
            kind = extra.get("kind") if isinstance(extra, dict) else None
            text = extra.get("text") if isinstance(extra, dict) else None
            if not isinstance(kind, str) or kind not in ADD_KINDS or not isinstance(text, (str, int, float)) \
                    or not str(text).strip():
                _fail(f"{where}.add[{k}]", f"expected {{kind: {'|'.join(ADD_KINDS)}, text: ...}}; found {extra!r}")
            level = ADD_KINDS[kind]
            text = " ".join(str(text).split())
            decided[level] = [text] if level == "scene" else decided[level] + [text]  # an added scene wins
            summary.decisions[level]["added"] += 1
        captions = list(dict.fromkeys(decided["sentences"]))
        if decided["tags"]:
            captions.append(", ".join(dict.fromkeys(decided["tags"])))
        label = image.get("label") or ""
        if not isinstance(label, str):
            _fail(f"{where}.label", f"expected the class name as text; found {label!r}")
        label = decided["scene"][0] if decided["scene"] else label
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
    tmp = temp_name(dest.parent, dest.name)
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


def _unique_name(image: ReviewedImage, cls: str, taken: set[tuple[str, str]]) -> str:
    """<class>/<the image's dataset path with '/' as '__'>, with _2, _3, ... added to the stem
    when another image (or its caption file, which shares the stem) already has that name."""
    flat = Path(image.file.replace("/", "__"))
    stem, k = flat.stem, 1
    while (cls, stem.lower()) in taken:
        k += 1
        stem = f"{flat.stem}_{k}"
    taken.add((cls, stem.lower()))
    return f"{cls}/{stem}{flat.suffix}"


def _writable(out: Path, name: str) -> Path:
    """out/name, refused when a part of it below `out` is a symbolic link (it could lead
    anywhere: nothing is written through one)."""
    link = first_link(out, name)
    if link is not None:
        raise InputError("out", f"{link} is a symbolic link; nothing is written through links inside the output "
                                "folder: remove it, or choose a new folder")
    return out / name


def apply_review(review: str | Path, out: str | Path, fmt: str = "kohya", include_pending: bool = False,
                 dataset: str | Path | None = None) -> ApplySummary:
    """Write the reviewed captions as a training folder: out/<class>/<image> (the image's path in
    the dataset with '/' as '__'; a name that would collide with another image's, or its
    caption file's, gets _2, _3, ... and is reported) with one .txt per image (one caption per
    line; `kohya`) or one captions.jsonl (`jsonl`, each row's `captions` list). The trainer
    draws one of an image's captions per epoch. `dataset`: the folder of the reviewed images
    (default: the review's own, when sealed; see reviewed_dataset)."""
    if fmt not in FORMATS:
        raise InputError("format", f"{fmt!r}; accepted: {', '.join(FORMATS)}")
    root, reviewed, summary = read_review(review, include_pending, dataset)
    out = check_output_folder(out)
    if out.resolve() == root.resolve():
        raise InputError("out", f"{out} is the reviewed dataset itself; choose a new folder for the training captions")
    written: dict[str, str] = {}  # destination (relative) -> source file
    taken: set[tuple[str, str]] = set()
    rows = []
    for image in reviewed:
        cls = class_key(image.label)
        if not cls:
            summary.without_class.append(image.file)
            continue
        dest = _unique_name(image, cls, taken)
        if Path(dest).name != image.file.replace("/", "__"):
            summary.renamed.append(f"{image.file} -> {dest}")
        written[dest] = image.file
        _place(image.source, _writable(out, dest))
        summary.images += 1
        summary.captioned += bool(image.captions)
        if fmt == "kohya":
            txt = str(Path(dest).with_suffix(".txt"))
            if image.captions:
                write_text_atomic(_writable(out, txt), "\n".join(image.captions) + "\n", overwrite=True)
                written[txt] = image.file
        rows.append({"file": dest, "class": cls, "split": "train", "captions": image.captions, "source": image.file})
    if fmt == "jsonl":
        write_text_atomic(_writable(out, "captions.jsonl"),
                          "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), overwrite=True)
        written["captions.jsonl"] = ""
    summary.removed, summary.not_removed = _remove_stale(out, set(written))
    write_text_atomic(_writable(out, MANIFEST), json.dumps({"review": str(Path(review).resolve()),
                                                            "files": sorted(written), "summary": asdict(summary)},
                                                           indent=1) + "\n", overwrite=True)
    return summary


def _remove_stale(out: Path, now: set[str]) -> tuple[int, list[str]]:
    """Remove what the previous apply wrote and this one does not (a changed decision moves an
    image to another class, or drops its captions), so applying is idempotent. Only regular
    files reached without a symbolic link are removed: the manifest is a file in the output
    folder, and a link there could lead to any file. Returns (removed, listed but left)."""
    manifest = out / MANIFEST
    if first_link(out, MANIFEST) is not None or not manifest.is_file():
        return 0, []
    try:
        before = json.loads(manifest.read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError):
        return 0, []
    removed, left = 0, []
    for name in before if isinstance(before, list) else []:
        if not isinstance(name, str) or name in now:
            continue
        try:
            name = safe_relative_name("out", name)
        except InputError:
            left.append(repr(name))
            continue
        path = out / name
        try:
            regular = first_link(out, name) is None and _is_regular_file(path)
            if regular:
                path.unlink()
                removed += 1
                if path.parent != out and not any(path.parent.iterdir()):
                    path.parent.rmdir()
            elif os.path.lexists(path):
                left.append(name)
        except OSError:
            left.append(name)
    return removed, left


def _is_regular_file(path: Path) -> bool:
    """A regular file itself (not followed through a link)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False
