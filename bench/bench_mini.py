"""The paper's 11 + 19 experiment on Word2Scene-mini, with the project's metrics.

For each of the 30 AID classes, N generated 128 px images (seeds 0..N-1, the paper's prompt
form "gs, geographic scene, <word>", DDIM, CFG 7) in several rows, against that class's
test split:
- real test images (the classifier's ceiling, and the true look);
- the base alone (concept strength 0): content from the base, look shifted;
- base + the paper's 11-concept LoRA at strength 1: the 11 trained concepts and the 19 zero-shot ones;
- base + Word2Scene-C (the shipped default, trained on all 30 classes) at strength 1;
- any extra concept given with --control (e.g. a LoRA trained on the shifted look itself).

Metrics, each named with its network:
- OA: a scene classifier trained here on the AID train split (`word2scene classifier train`;
  its own test OA is printed first), applied to generated images: does the class show?
- look: P(true colour) from a logistic regression on three image statistics (colourfulness,
  luminance contrast, sharpness), fitted on AID train images against the same images in the
  base model's shifted look (old_photo). Real test images score near 1, the shifted look near 0.
- GSHPS, FID, KID with the same classifier's features (evaluation.scoring).
Spread: every figure is also computed per seed block (the N seeds cut in halves; a second
table), and the class-level OA is reported with the standard deviation over classes.

Usage (about 15 minutes on 2 CPU cores for 10 images per class and row, plus the classifier's
training when it is not cached):
    python bench/bench_mini.py --images 10 --steps 20 [--classifier FILE] [--control FILE] [--out bench/results/mini]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from word2scene.concepts.file import load_concept  # noqa: E402
from word2scene.concepts.patching import apply_concepts  # noqa: E402
from word2scene.evaluation.classifier import ClassifierConfig, accuracy, save_classifier, train_classifier  # noqa: E402
from word2scene.evaluation.extractors import load_extractor  # noqa: E402
from word2scene.evaluation.image_sets import image_set, read_images  # noqa: E402
from word2scene.evaluation.scoring import EvaluationSettings, evaluate  # noqa: E402
from word2scene.models.sd15 import MINI_CONCEPT, MINI_CONCEPT_11, load_sd15  # noqa: E402
from word2scene.prompts.knowledge import load_knowledge  # noqa: E402
from word2scene.scenes.pipeline import make_scenes  # noqa: E402
from word2scene.scenes.sampling import SamplingSettings  # noqa: E402
from word2scene.training.base_model import old_photo  # noqa: E402

AID = ROOT.parent / "shared" / "data" / "aid"


# --- the look ------------------------------------------------------------------------------
def look_features(image: Image.Image) -> np.ndarray:
    """(colourfulness, luminance std, sharpness): Hasler-Suesstrunk colourfulness, contrast,
    and the mean absolute Laplacian of the luminance (blur lowers it)."""
    a = np.asarray(image.convert("RGB"), dtype=np.float64)
    rg, yb = a[..., 0] - a[..., 1], 0.5 * (a[..., 0] + a[..., 1]) - a[..., 2]
    colourful = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    grey = np.asarray(image.convert("L"), dtype=np.float64)
    lap = np.asarray(image.convert("L").filter(ImageFilter.FIND_EDGES), dtype=np.float64)
    return np.array([colourful, grey.std(), lap[1:-1, 1:-1].mean()])


class LookScore:
    """P(true colour) from a logistic regression on look_features, fitted by Newton steps."""

    def __init__(self, true_colour: list[Image.Image]):
        x = np.stack([look_features(im) for im in true_colour] + [look_features(old_photo(im)) for im in true_colour])
        y = np.r_[np.ones(len(true_colour)), np.zeros(len(true_colour))]
        self.mean, self.std = x.mean(0), x.std(0) + 1e-9
        z = np.c_[(x - self.mean) / self.std, np.ones(len(x))]
        w = np.zeros(z.shape[1])
        for _ in range(25):
            p = 1 / (1 + np.exp(-z @ w))
            hessian = z.T @ (z * (p * (1 - p))[:, None]) + 1e-3 * np.eye(len(w))
            w -= np.linalg.solve(hessian, z.T @ (p - y) + 1e-3 * w)
        self.w = w

    def __call__(self, images: list[Image.Image]) -> np.ndarray:
        x = np.stack([look_features(im) for im in images])
        z = np.c_[(x - self.mean) / self.std, np.ones(len(x))]
        return 1 / (1 + np.exp(-z @ self.w))


def fit_images(n: int = 600, seed: int = 0) -> list[Image.Image]:
    """n AID train images (a seeded draw) to fit the look score on."""
    rng = np.random.default_rng(seed)
    items = image_set(AID, "data", split="train")
    return read_images([items[i] for i in rng.choice(len(items), n, replace=False)], "data")


def write_report(out: Path, text: str, results: dict) -> None:
    """Print the table and keep it, with the figures, in out/report.md and out/results.json."""
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=2))


def subset(items: list, images: list, mask) -> tuple[list, list]:
    """The items and their images where `mask` is true."""
    return [it for it, m in zip(items, mask) if m], [im for im, m in zip(images, mask) if m]


# --- generation ----------------------------------------------------------------------------
def generate_row(sd, kb, classes: list[str], seeds: list[int], out: Path, concept, strength: float, steps: int,
                 batch: int = 30) -> None:
    """Each class x seed at 128 px (out/<class>/<seed>.png), `batch` scenes per sampling call;
    skips files already written."""
    jobs = [(cid, seed) for cid in classes for seed in seeds if not (out / cid / f"{seed:04d}.png").is_file()]
    apply_concepts(sd, [(concept, strength, strength)] if concept is not None and strength else [])
    try:
        for start in range(0, len(jobs), batch):
            part = jobs[start:start + batch]
            scenes = make_scenes(sd, [(kb[cid].name, seed) for cid, seed in part],
                                 SamplingSettings(steps=steps, cfg=7.0, width=128, height=128), kb=kb,
                                 parameters={"strength": strength, "concept": str(getattr(concept, "path", ""))})
            for (cid, seed), scene in zip(part, scenes):
                scene.save(out / cid / f"{seed:04d}.png", overwrite=True)
    finally:
        apply_concepts(sd, [])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=20, help="images per class and row (seeds 0..N-1)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--classifier", help="a scene classifier .safetensors (default: train one, cached in --out)")
    ap.add_argument("--classifier-epochs", type=int, default=6)
    ap.add_argument("--classifier-size", type=int, default=64, help="the classifier's input side (AID images are 128 px)")
    ap.add_argument("--control", action="append", default=[], metavar="FILE", help="extra concept rows (controls)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "mini"))
    args = ap.parse_args()
    out = Path(args.out)
    kb = load_knowledge(extra_dirs=[])
    classes = sorted(d.name for d in AID.iterdir() if d.is_dir())
    trained = set(kb.by_paper("trained")) & set(classes)
    t0 = time.perf_counter()

    clf_path = Path(args.classifier) if args.classifier else out / "aid_scene_cnn.safetensors"
    if not clf_path.is_file():
        config = ClassifierConfig(epochs=args.classifier_epochs, input_size=args.classifier_size)
        save_classifier(train_classifier(image_set(AID, "data", split="train"), config,
                                         on_epoch=lambda e, n, loss: print(f"classifier epoch {e}/{n} loss {loss:.3f}")),
                        clf_path, overwrite=True)
    classifier = load_extractor(str(clf_path))
    test = image_set(AID, "reference", split="test")
    test_images = read_images(test, "reference")
    ceiling = accuracy(classifier, test, images=test_images)
    network = classifier.name  # architecture, input size, file and sha256
    print(f"scene classifier {network}: AID test OA {ceiling.overall:.1%} on {ceiling.images} images "
          f"({time.perf_counter() - t0:.0f} s)")

    look = LookScore(fit_images())

    sd = load_sd15(model="mini")
    rows = {"base (strength 0)": (None, 0.0), "base + 11-concept LoRA (strength 1)": (load_concept(MINI_CONCEPT_11), 1.0),
            "base + Word2Scene-C, all 30 (strength 1)": (load_concept(MINI_CONCEPT), 1.0)}
    for path in args.control:
        rows[f"control: {Path(path).stem} (strength 1)"] = (load_concept(path), 1.0)
    results = {"classifier": network, "classifier_test_oa": ceiling.overall, "images_per_class": args.images, "rows": {}}
    table = [("real test images", test, test_images)]
    for name, (c, strength) in rows.items():
        folder = out / "".join(ch if ch.isalnum() else "_" for ch in name).strip("_")
        g0 = time.perf_counter()
        generate_row(sd, kb, classes, list(range(args.images)), folder, c, strength, args.steps)
        items = image_set(folder, "generated")
        print(f"{name}: {len(items)} images ({time.perf_counter() - g0:.0f} s)")
        table.append((name, items, read_images(items, "generated")))

    lines = ["| row | OA all 30 | OA the 11 | OA the 19 | OA by seed half | look all | look the 11 | "
             "look the 19 | FID | KID x1e3 | GSHPS |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    spread_lines = ["| row | look | FID | KID x1e3 | GSHPS |", "|---|---|---|---|---|"]

    def distances(items, images):
        report = evaluate(items, test, EvaluationSettings(features=str(clf_path)), generated_images=images)
        return report.value("FID"), report.value("KID") * 1e3, report.value("GSHPS")

    for name, items, images in table:
        acc = accuracy(classifier, items, images=images)
        per_class = acc.per_class
        split_oa = {k: np.mean([per_class[c] for c in per_class if (c in trained) == (k == "trained")])
                    for k in ("trained", "zero-shot")}
        sd_class = {k: np.std([per_class[c] for c in per_class if (c in trained) == (k == "trained")])
                    for k in ("trained", "zero-shot")}
        scores = look(images)
        halves, spread = [], []
        if name != "real test images":
            seeds = np.array([int(Path(i.path).stem) for i in items])
            for half in (seeds < args.images // 2, seeds >= args.images // 2):
                sub, sub_images = subset(items, images, half)
                halves.append(accuracy(classifier, sub, images=sub_images).overall)
                spread.append((float(scores[half].mean()), *distances(sub, sub_images)))
            spread_lines.append(f"| {name} | " + " | ".join(" / ".join(fmt.format(h[k]) for h in spread)
                                                           for k, fmt in enumerate(("{:.2f}", "{:.1f}", "{:.1f}", "{:.3f}")))
                                + " |")
        is_trained = np.array([i.label in trained for i in items])
        fid, kid, gshps = distances(items, images) if name != "real test images" else (0.0, 0.0, 1.0)
        results["rows"][name] = {"oa": acc.overall, "oa_trained": split_oa["trained"], "oa_zero_shot": split_oa["zero-shot"],
                                 "oa_class_std": sd_class, "oa_seed_halves": halves, "per_class": per_class,
                                 "look": float(scores.mean()), "look_trained": float(scores[is_trained].mean()),
                                 "look_zero_shot": float(scores[~is_trained].mean()), "fid": fid, "kid_x1e3": kid,
                                 "gshps": gshps, "seed_halves": [dict(zip(("look", "fid", "kid_x1e3", "gshps"), h))
                                                                 for h in spread]}
        halves_text = " / ".join(f"{h:.1%}" for h in halves) or "-"
        lines.append(f"| {name} | {acc.overall:.1%} | {split_oa['trained']:.1%} (sd {sd_class['trained']:.1%}) | "
                     f"{split_oa['zero-shot']:.1%} (sd {sd_class['zero-shot']:.1%}) | {halves_text} | "
                     f"{scores.mean():.2f} | {scores[is_trained].mean():.2f} | {scores[~is_trained].mean():.2f} | "
                     f"{fid:.1f} | {kid:.1f} | {gshps:.3f} |")
    text = (f"Word2Scene-mini, {args.images} images per class and row at 128 px, DDIM {args.steps} steps, CFG 7; "
            f"classifier {network}, AID test OA {ceiling.overall:.1%}; chance 3.3 %. The 11: the paper's training "
            f"concepts; the 19: the others (zero-shot for the 11-concept LoRA, trained for Word2Scene-C).\n\n"
            + "\n".join(lines) + f"\n\nSpread: each figure on seeds 0-{args.images // 2 - 1} / "
            f"{args.images // 2}-{args.images - 1} ({args.images // 2} images per class each).\n\n" + "\n".join(spread_lines))
    write_report(out, text, results)
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
