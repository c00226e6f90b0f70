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


@dataclass
class _Scope:
    """One row of the table: a name ("overall" or a class) and which images of each set it takes."""
    name: str
    generated: np.ndarray  # bool mask over the generated images
    reference: np.ndarray  # bool mask over the reference images

    @property
    def counts(self) -> tuple[int, int]:
        return int(self.generated.sum()), int(self.reference.sum())


def gshps_result(fg: dict, fr: dict, scope: _Scope, network: str, s: EvaluationSettings) -> Result:
    """The paper's GSHPS of one scope, on conv features (centre crop)."""
    return Result(scope.name, "GSHPS", gshps(fg["conv"][scope.generated], fr["conv"][scope.reference]), network,
                  *scope.counts)


def fid_result(fg: dict, fr: dict, scope: _Scope, network: str, s: EvaluationSettings) -> Result | None:
    """FID of one scope on pooled features (read as pytorch-fid reads images); None with
    fewer than 2 images a side."""
    n_g, n_r = scope.counts
    if min(n_g, n_r) < 2:
        return None
    value = fid(fg["pooled"][scope.generated], fr["pooled"][scope.reference])
    return Result(scope.name, "FID", value, network, n_g, n_r, note=_too_few(n_g, n_r, fg["pooled"].shape[1]))


def kid_result(fg: dict, fr: dict, scope: _Scope, network: str, s: EvaluationSettings) -> Result | None:
    """KID of one scope (mean ± standard deviation over s.kid_subsets subsets, their size in
    the note); None with fewer than 2 images a side."""
    n_g, n_r = scope.counts
    if min(n_g, n_r) < 2:
        return None
    size = s.kid_subset_size or min(KID_SUBSET_SIZE, n_g, n_r)
    mean, std = kid(fg["pooled"][scope.generated], fr["pooled"][scope.reference], s.kid_subsets, size)
    note = "; ".join(filter(None, [f"subsets of {size}", _too_few(n_g, n_r, fg["pooled"].shape[1])]))
    return Result(scope.name, "KID", mean, network, n_g, n_r, std, note)


def clip_results(images: list[Image.Image], texts: list[str], scopes: list[_Scope], s: EvaluationSettings) -> list[Result]:
    """CLIP score per scope: the mean over its images of each image's score with its text."""
    scorer = clip_scorer(s.clip, s.device)
    if any(not t for t in texts):
        raise InputError("generated", "CLIP score needs a prompt per image: PNGs written by word2scene carry "
                                      "theirs; otherwise use class folders (the class name is the text)")
    values = scorer.scores(images, texts, s.batch_size)
    return [Result(scope.name, "CLIP score", float(values[scope.generated].mean()), scorer.name, scope.counts[0], 0)
            for scope in scopes]


def classifier_accuracy(generated: list[LabelledImage], gen_images: list, reference: list[LabelledImage], ref_images,
                        classes: list[str], s: EvaluationSettings) -> dict[str, Accuracy]:
    """Overall accuracy both ways: a scene classifier trained on the generated images tested
    on the real ones ("generated->real"), and the reverse ("real->generated")."""
    if len(classes) < 2:
        raise InputError("classifier_oa", f"classifier accuracy needs at least two classes in both sets; "
                                          f"found {classes or 'no class folders'}")
    on_generated = train_classifier(generated, s.classifier, "generated", images=gen_images, device=s.device)
    out = {"generated->real": accuracy(on_generated, reference, "reference", device=s.device, images=ref_images())}
    on_real = train_classifier(reference, s.classifier, "reference", images=ref_images(), device=s.device)
    out["real->generated"] = accuracy(on_real, generated, "generated", device=s.device, images=gen_images)
    return out


def group_results(results: list[Result], groups: dict[str, list[str]]) -> list[Result]:
    """Per group of classes (e.g. the paper's trained and zero-shot concepts), each metric's
    mean over the classes' rows, ± their standard deviation."""
    out = []
    for name, classes in groups.items():
        for metric, extractor in dict.fromkeys((r.metric, r.extractor) for r in results if r.scope in classes):
            rows = [r for r in results if r.scope in classes and r.metric == metric and r.extractor == extractor]
            values = [r.value for r in rows]
            out.append(Result(name, metric, float(np.mean(values)), extractor, sum(r.generated for r in rows),
                              sum(r.reference for r in rows), float(np.std(values))))
    return out


# the metrics each feature network serves, by how it reads images
_FEATURE_METRICS = ((CROP, "gshps_features", (gshps_result,)), (STRETCH, "fid_features", (fid_result, kid_result)))


def evaluate(generated: list[LabelledImage], reference: list[LabelledImage], settings: EvaluationSettings | None = None,
             generated_images: list[Image.Image] | None = None, texts: list[str] | None = None,
             groups: dict[str, list[str]] | None = None) -> Report:
    """Compare generated images with reference images, per class (when the generated set
    has classes) and overall. `generated_images` gives the generated pixels directly (e.g.
    a ComfyUI batch) instead of reading `generated` paths; `texts` the CLIP prompts
    (default: the prompt stored in each PNG, else the class name); `groups` adds rows that
    average classes (e.g. the paper's trained and zero-shot concepts). Networks and reference
    features are cached across calls (see load_extractor and _reference_features).
    The table (Report) is built from each metric's results: GSHPS, FID, KID per scope and
    network, CLIP score, classifier accuracy, group rows."""
    s = settings or EvaluationSettings()
    reference, per_class = _checked_sets(generated, reference, groups)
    networks = _feature_networks(s)  # networks first: a wrong weights path fails before any image is read
    gen_images = generated_images if generated_images is not None else read_images(generated, "generated")
    if len(gen_images) != len(generated):
        raise InputError("generated", f"{len(gen_images)} images for {len(generated)} entries")
    ref_pixels: list = []

    def ref_images() -> list[Image.Image]:  # read only when needed: cached features may make it unnecessary
        if not ref_pixels:
            ref_pixels.extend(read_images(reference, "reference"))
        return ref_pixels
    gen_labels, ref_labels = np.array([g.label for g in generated]), np.array([r.label for r in reference])
    scopes = [_Scope(OVERALL, np.ones(len(generated), bool), np.ones(len(reference), bool))] + \
        [_Scope(c, gen_labels == c, ref_labels == c) for c in per_class]

    report = Report(groups=dict(groups or {}))
    computed: dict[tuple, tuple[dict, dict]] = {}
    for x, metrics, resize in networks:
        if (x.name, resize) not in computed:
            computed[x.name, resize] = (x.features(gen_images, s.batch_size, s.device, resize),
                                        _reference_features(x, reference, ref_images, s, resize))
        fg, fr = computed[x.name, resize]
        rows = [r for scope in scopes for metric in metrics if (r := metric(fg, fr, scope, x.name, s)) is not None]
        report.results += rows
        report.warnings += _few_images_warnings(rows, fg["pooled"].shape[1] if "pooled" in fg else 0)
        if x.classes and "logits" in fr and x.name not in report.checks:
            check = _classifier_check(x, fr["logits"], reference)
            if check is not None:
                report.checks[x.name] = check
                report.warnings += _weak_classifier_warnings(x.name, check)
    if s.clip:
        texts = texts if texts is not None else [prompt_of(g.path) or g.label.replace("_", " ") for g in generated]
        report.results += clip_results(gen_images, texts, scopes, s)
    if s.classifier_oa:
        report.accuracy.update(classifier_accuracy(generated, gen_images, reference, ref_images, per_class, s))
    report.results += group_results(report.results, groups or {})
    return report


def _checked_sets(generated: list[LabelledImage], reference: list[LabelledImage],
                  groups: dict[str, list[str]] | None) -> tuple[list[LabelledImage], list[str]]:
    """The reference images of the generated set's classes, and the classes evaluated one by
    one (none when either set has no classes); refused by name: empty sets, generated classes
    without reference images, groups of classes not evaluated."""
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
    return reference, per_class


def _feature_networks(s: EvaluationSettings) -> list[tuple[FeatureExtractor, tuple, str]]:
    """(network, the metric functions it serves, how it reads images) for the networks the
    settings name: GSHPS reads what classifiers read (centre crop); FID/KID read images as
    pytorch-fid does."""
    paths = {"gshps_features": s.gshps_features or s.features, "fid_features": s.fid_features or s.features}
    if not (any(paths.values()) or s.clip or s.classifier_oa):
        load_extractor(None, "features")  # raises the error that says what to pass
    return [(load_extractor(paths[name], "features" if paths[name] == s.features else name), metrics, resize)
            for resize, name, metrics in _FEATURE_METRICS if paths[name]]


def _too_few(n_g: int, n_r: int, dims: int) -> str:
    """A note when a set has no more images than the features have dimensions: its covariance
    cannot be estimated, so FID and KID from it are noise, however small they look."""
    n = min(n_g, n_r)
    return "" if n > dims else f"unreliable: {n} images for {dims}-d features"


def _few_images_warnings(results: list[Result], dims: int) -> list[str]:
    """The warning for each overall FID or KID from too few images (see _too_few)."""
    return [f"{r.metric} from {n} images is not a measurement: the {dims}-d features need more than {dims} images "
            f"per set (a covariance estimate); compare sets of at least {dims + 1}."
            for r in results if r.scope == OVERALL and r.metric in ("FID", "KID")
            and (n := min(r.generated, r.reference)) <= dims]


def _classifier_check(x: FeatureExtractor, logits, reference: list[LabelledImage]) -> Accuracy | None:
    """How many real images the scene classifier whose features are used classifies right
    (from the logits already computed); None when it knows none of their classes."""
    known = [k for k, r in enumerate(reference) if r.label in x.classes]
    if not known:
        return None
    predicted = np.asarray(logits)[known].argmax(1)
    hits = [x.classes[int(p)] == reference[k].label for p, k in zip(predicted, known)]
    per_class = {c: float(np.mean([h for h, k in zip(hits, known) if reference[k].label == c]))
                 for c in labels([reference[k] for k in known])}
    return Accuracy(float(np.mean(hits)), per_class, len(known), x.name)


def _weak_classifier_warnings(name: str, check: Accuracy) -> list[str]:
    """A weak classifier is a warning on every figure it gives."""
    if check.overall >= WEAK_CLASSIFIER:
        return []
    return [f"{name} classifies only {check.overall:.0%} of the {check.images} reference images correctly (under "
            f"{WEAK_CLASSIFIER:.0%}): its features say little about scene likeness, so GSHPS, FID and KID from them "
            "are weak evidence."]


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
