"""Evaluate generated scenes against real ones: GSHPS, FID, KID (per class and overall,
each named with its feature extractor), CLIP score, and classifier overall accuracy both
ways (train on generated / test on real, and the reverse). One Report, as markdown or JSON."""
from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError
from .classifier import Accuracy, accuracy, ClassifierConfig, train_classifier
from .extractors import CROP, FeatureExtractor, load_extractor, STRETCH
from .image_sets import class_key, LabelledImage, labels, read_images
from .metrics import clip_scorer, fid, gshps, kid, KID_SUBSET_SIZE

OVERALL = "overall"
# Below this share of the real images recognised, a classifier's features say little about
# how scene-like images are: its GSHPS, FID and KID are flagged.
WEAK_CLASSIFIER = 0.6


@dataclass
class EvaluationSettings:
    features: str | None = None  # weights for GSHPS and FID/KID unless the next two are given
    gshps_features: str | None = None  # the paper: a VGG16 fine-tuned on the scene classes
    fid_features: str | None = None  # e.g. Inception-v3 (pytorch-fid weights) or any classifier
    clip: str | None = None  # a local transformers CLIP folder; CLIP score when given
    classifier_oa: bool = False  # train scene classifiers both ways and report overall accuracy
    classifier: ClassifierConfig = field(default_factory=lambda: ClassifierConfig(epochs=20))
    kid_subsets: int = 100
    kid_subset_size: int | None = None  # None: the smaller set's size, at most 1000 (stated in the report)
    batch_size: int = 32
    device: str = "cpu"


@dataclass
class Result:
    scope: str  # "overall", a class key, or a group such as "trained"
    metric: str  # GSHPS | FID | KID | CLIP score
    value: float
    extractor: str  # what computed the features, e.g. "vgg16 (vgg16_aid.pth)"
    generated: int  # images in the generated set of this scope
    reference: int
    spread: float | None = None  # KID: standard deviation over subsets; groups: over classes
    note: str = ""  # how it was computed where that varies (KID: the subset size)


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)
    accuracy: dict[str, Accuracy] = field(default_factory=dict)  # "generated->real", "real->generated"
    groups: dict[str, list[str]] = field(default_factory=dict)
    # how well each scene classifier used for features recognises the real images it was given
    checks: dict[str, Accuracy] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # figures not to trust, and why

    def value(self, metric: str, scope: str = OVERALL) -> float:
        for r in self.results:
            if r.metric == metric and r.scope == scope:
                return r.value
        raise KeyError(f"{metric} for {scope}")

    def overall(self, metric: str) -> float:
        """The overall value of a metric, NaN when it was not computed (e.g. FID of one image)."""
        try:
            return self.value(metric)
        except KeyError:
            return float("nan")

    def as_dict(self) -> dict:
        return {"results": [asdict(r) for r in self.results], "accuracy": {k: v.as_dict() for k, v in self.accuracy.items()},
                "groups": self.groups, "checks": {k: v.as_dict() for k, v in self.checks.items()},
                "warnings": list(self.warnings)}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, ensure_ascii=False)

    def to_markdown(self) -> str:
        """One row per scope (classes, then groups, then overall), one column per metric and extractor."""
        columns = list(dict.fromkeys((r.metric, r.extractor) for r in self.results))
        scopes = list(dict.fromkeys(r.scope for r in self.results))
        scopes = [s for s in scopes if s not in self.groups and s != OVERALL] + \
            [s for s in scopes if s in self.groups] + [s for s in scopes if s == OVERALL]
        group_of = {c: g for g, cs in self.groups.items() for c in cs}
        cell = {(r.scope, r.metric, r.extractor): r for r in self.results}
        head = ["scope"] + (["split"] if self.groups else []) + ["generated", "reference"] + \
            [f"{m} [{e}]" for m, e in columns]
        lines = [f"**Warning:** {w}\n" for w in self.warnings]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for s in scopes:
            any_r = next(r for r in self.results if r.scope == s)
            row = [f"**{s}**" if s in self.groups or s == OVERALL else s]
            if self.groups:
                row.append(group_of.get(s, ""))
            row += [str(any_r.generated), str(any_r.reference)]
            for m, e in columns:
                r = cell.get((s, m, e))
                row.append("" if r is None else (f"{r.value:.4g} ± {r.spread:.2g}" if r.spread is not None else f"{r.value:.4g}")
                           + (f" ({r.note})" if r is not None and r.note else ""))
            lines.append("| " + " | ".join(row) + " |")
        text = "\n".join(lines)
        if any(m in ("FID", "KID") for m, _ in columns):
            text += ("\n\nFID and KID read each image as pytorch-fid does (bilinear to the network's input size on the "
                     "tensor, no crop); GSHPS and classifiers read a centre crop.")
        for name, check in self.checks.items():
            text += (f"\n\nFeature network check: {name} classifies {check.overall:.0%} of the {check.images} reference "
                     "images correctly (" + ", ".join(f"{c} {a:.0%}" for c, a in check.per_class.items()) + ").")
        if self.groups:
            text += "\n\nGroup rows are the mean (± standard deviation) of their classes' values."
        if self.accuracy:
            text += "\n\n| classifier overall accuracy | classifier | OA | images | per class |\n|---|---|---|---|---|\n"
            text += "\n".join(f"| {k} | {v.network} | {v.overall:.1%} | {v.images} | "
                              + ", ".join(f"{c} {a:.0%}" for c, a in v.per_class.items()) + " |"
                              for k, v in self.accuracy.items())
        return text + "\n"


def prompt_of(path: Path) -> str:
    """The prompt a PNG written by this project (or AUTOMATIC1111) carries, else ""."""
    try:
        with Image.open(path) as im:
            text = getattr(im, "text", {}) or {}
    except Exception:  # noqa: BLE001 - CLIP texts fall back to the class name
        return ""
    if "word2scene" in text:
        try:
            return str(json.loads(text["word2scene"]).get("prompt", ""))
        except ValueError:
            pass
    return text.get("parameters", "").split("\nNegative prompt:")[0].strip()


_REFERENCE_FEATURES: OrderedDict = OrderedDict()  # (extractor, files) -> features; the last few sets kept
KEEP_FEATURE_SETS = 8


def _set_key(items: list[LabelledImage]) -> tuple:
    """Identity of an image set on disk: every file's path, class, modification time and size."""
    out = []
    for i in items:
        st = i.path.stat()
        out.append((str(i.path), i.label, st.st_mtime_ns, st.st_size))
    return tuple(out)


def _reference_features(x: FeatureExtractor, items: list[LabelledImage], read, s: "EvaluationSettings",
                        resize: str) -> dict:
    """Features of the reference set, reused while its files and the network are unchanged
    (a node evaluating batch after batch against the same real images reads them once)."""
    if not x.source:  # a network trained in memory: no identity to cache under
        return x.features(read(), s.batch_size, s.device, resize)
    key = (x.source, resize, _set_key(items))
    if key not in _REFERENCE_FEATURES:
        _REFERENCE_FEATURES[key] = x.features(read(), s.batch_size, s.device, resize)
        while len(_REFERENCE_FEATURES) > KEEP_FEATURE_SETS:
            _REFERENCE_FEATURES.popitem(last=False)
    _REFERENCE_FEATURES.move_to_end(key)
    return _REFERENCE_FEATURES[key]


def evaluate(generated: list[LabelledImage], reference: list[LabelledImage], settings: EvaluationSettings | None = None,
             generated_images: list[Image.Image] | None = None, texts: list[str] | None = None,
             groups: dict[str, list[str]] | None = None) -> Report:
    """Compare generated images with reference images, per class (when the generated set
    has classes) and overall. `generated_images` gives the generated pixels directly (e.g.
    a ComfyUI batch) instead of reading `generated` paths; `texts` the CLIP prompts
    (default: the prompt stored in each PNG, else the class name); `groups` adds rows that
    average classes (e.g. the paper's trained and zero-shot concepts). Networks and reference
    features are cached across calls (see load_extractor and _reference_features)."""
    s = settings or EvaluationSettings()
    if not generated:
        raise InputError("generated", "no generated images")
    if not reference:
        raise InputError("reference", "no reference images")
    gen_classes, ref_classes = labels(generated), labels(reference)
    if gen_classes and ref_classes:
        missing = sorted(set(gen_classes) - set(ref_classes))
        if missing:
            raise InputError("generated", f"classes {missing} have no reference images; the reference has "
                                          f"{ref_classes}. Class folders must be named alike (e.g. dense_residential)")
        reference = [r for r in reference if r.label in gen_classes]
    per_class = gen_classes if ref_classes else []
    if groups:
        unknown = sorted({c for cs in groups.values() for c in cs} - set(per_class))
        if unknown:
            raise InputError("groups", f"classes {unknown} are not among the evaluated classes {per_class}")
    report = Report(groups=dict(groups or {}))
    feature_sets = []  # networks first: a wrong weights path fails before any image is read
    gshps_path = s.gshps_features or s.features
    fid_path = s.fid_features or s.features
    if not (gshps_path or fid_path or s.clip or s.classifier_oa):
        load_extractor(None, "features")  # raises the error that says what to pass
    # GSHPS reads what classifiers read (centre crop); FID/KID read images as pytorch-fid does
    for path, input_name, metrics, resize in ((gshps_path, "gshps_features", ("GSHPS",), CROP),
                                              (fid_path, "fid_features", ("FID", "KID"), STRETCH)):
        if path:
            x = load_extractor(path, "features" if path == s.features else input_name)
            feature_sets.append((x, metrics, resize))
    gen_images = generated_images if generated_images is not None else read_images(generated, "generated")
    if len(gen_images) != len(generated):
        raise InputError("generated", f"{len(gen_images)} images for {len(generated)} entries")
    ref_pixels: list = []

    def ref_images() -> list[Image.Image]:  # read only when needed: cached features may make it unnecessary
        if not ref_pixels:
            ref_pixels.extend(read_images(reference, "reference"))
        return ref_pixels
    gen_labels = np.array([g.label for g in generated])
    ref_labels = np.array([r.label for r in reference])
    scopes = [(OVERALL, np.ones(len(generated), bool), np.ones(len(reference), bool))] + \
        [(c, gen_labels == c, ref_labels == c) for c in per_class]

    computed: dict[tuple, tuple[dict, dict]] = {}
    for x, metrics, resize in feature_sets:
        if (x.name, resize) not in computed:
            computed[x.name, resize] = (x.features(gen_images, s.batch_size, s.device, resize),
                                        _reference_features(x, reference, ref_images, s, resize))
        fg, fr = computed[x.name, resize]
        for scope, gm, rm in scopes:
            n_g, n_r = int(gm.sum()), int(rm.sum())
            for metric in metrics:
                if metric == "GSHPS":
                    report.results.append(Result(scope, metric, gshps(fg["conv"][gm], fr["conv"][rm]), x.name, n_g, n_r))
                elif min(n_g, n_r) >= 2 and metric == "FID":
                    report.results.append(Result(scope, metric, fid(fg["pooled"][gm], fr["pooled"][rm]), x.name, n_g, n_r,
                                                 note=_too_few(report, scope, metric, n_g, n_r, fg["pooled"].shape[1])))
                elif min(n_g, n_r) >= 2 and metric == "KID":
                    size = s.kid_subset_size or min(KID_SUBSET_SIZE, n_g, n_r)
                    mean, std = kid(fg["pooled"][gm], fr["pooled"][rm], s.kid_subsets, size)
                    note = "; ".join(filter(None, [f"subsets of {size}", _too_few(report, scope, metric, n_g, n_r,
                                                                                   fg["pooled"].shape[1])]))
                    report.results.append(Result(scope, metric, mean, x.name, n_g, n_r, std, note))
        if x.classes and "logits" in fr and x.name not in report.checks:
            _check_classifier(report, x, fr["logits"], reference)
    if s.clip:
        scorer = clip_scorer(s.clip, s.device)
        if texts is None:
            texts = [prompt_of(g.path) or g.label.replace("_", " ") for g in generated]
        if any(not t for t in texts):
            raise InputError("generated", "CLIP score needs a prompt per image: PNGs written by word2scene carry "
                                          "theirs; otherwise use class folders (the class name is the text)")
        values = scorer.scores(gen_images, texts, s.batch_size)
        for scope, gm, rm in scopes:
            report.results.append(Result(scope, "CLIP score", float(values[gm].mean()), scorer.name, int(gm.sum()), 0))
    if s.classifier_oa:
        if len(per_class) < 2:
            raise InputError("classifier_oa", f"classifier accuracy needs at least two classes in both sets; "
                                              f"found {per_class or 'no class folders'}")
        on_generated = train_classifier(generated, s.classifier, "generated", images=gen_images, device=s.device)
        report.accuracy["generated->real"] = accuracy(on_generated, reference, "reference", device=s.device,
                                                      images=ref_images())
        on_real = train_classifier(reference, s.classifier, "reference", images=ref_images(), device=s.device)
        report.accuracy["real->generated"] = accuracy(on_real, generated, "generated", device=s.device, images=gen_images)
    for name, classes in (groups or {}).items():
        for metric, extractor in dict.fromkeys((r.metric, r.extractor) for r in report.results if r.scope in classes):
            rows = [r for r in report.results if r.scope in classes and r.metric == metric and r.extractor == extractor]
            values = [r.value for r in rows]
            report.results.append(Result(name, metric, float(np.mean(values)), extractor, sum(r.generated for r in rows),
                                         sum(r.reference for r in rows), float(np.std(values))))
    return report


def _too_few(report: Report, scope: str, metric: str, n_g: int, n_r: int, dims: int) -> str:
    """A note (and, for the overall row, a warning) when a set has no more images than the
    features have dimensions: its covariance cannot be estimated, so FID and KID from it are
    noise, however small they look."""
    n = min(n_g, n_r)
    if n > dims:
        return ""
    if scope == OVERALL:
        report.warnings.append(f"{metric} from {n} images is not a measurement: the {dims}-d features need more "
                               f"than {dims} images per set (a covariance estimate); compare sets of at least {dims + 1}.")
    return f"unreliable: {n} images for {dims}-d features"


def _check_classifier(report: Report, x: FeatureExtractor, logits, reference: list[LabelledImage]) -> None:
    """How many real images the scene classifier whose features are used classifies right
    (from the logits already computed); a weak one is a warning on every figure it gives."""
    known = [k for k, r in enumerate(reference) if r.label in x.classes]
    if not known:
        return
    predicted = np.asarray(logits)[known].argmax(1)
    hits = [x.classes[int(p)] == reference[k].label for p, k in zip(predicted, known)]
    per_class = {c: float(np.mean([h for h, k in zip(hits, known) if reference[k].label == c]))
                 for c in labels([reference[k] for k in known])}
    report.checks[x.name] = Accuracy(float(np.mean(hits)), per_class, len(known), x.name)
    if report.checks[x.name].overall < WEAK_CLASSIFIER:
        report.warnings.append(f"{x.name} classifies only {report.checks[x.name].overall:.0%} of the {len(known)} "
                               f"reference images correctly (under {WEAK_CLASSIFIER:.0%}): its features say little about "
                               "scene likeness, so GSHPS, FID and KID from them are weak evidence.")


def evaluate_batch(images: list[Image.Image], reference: list[LabelledImage], concept: str = "",
                   settings: EvaluationSettings | None = None, prompt: str = "") -> Report:
    """A batch of generated images of one concept (e.g. from ComfyUI) against the reference
    images of that class ("" = every reference image); `prompt` is the CLIP text."""

    key = class_key(concept)
    if key and key not in labels(reference):
        raise InputError("concept", f"{concept!r} is not a class of the reference folder ({', '.join(labels(reference))})")
    if key:
        reference = [r for r in reference if r.label == key]
    generated = [LabelledImage(Path(f"batch-{i}"), key) for i in range(len(images))]
    texts = [prompt.strip() or concept.strip() or "a remote sensing scene"] * len(images)
    return evaluate(generated, reference, settings, generated_images=images, texts=texts)
