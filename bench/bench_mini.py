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

Usage (about 0.65 s per image on one CPU core at mini's defaults, DDIM 10 steps, CFG 10; 1,800
images for three rows of 20 seeds; plus the classifier's training when it is not cached):
    python bench/bench_mini.py --images 10 [--steps 10 --cfg 10] [--classifier FILE] [--control FILE] [--out bench/results/mini]
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
from word2scene.models.sd15 import MINI_CONCEPT, MINI_CONCEPT_11, MINI_SAMPLING, load_sd15  # noqa: E402
from word2scene.prompts.knowledge import load_knowledge  # noqa: E402
from word2scene.scenes.pipeline import check_drawn_with, make_scenes  # noqa: E402
from word2scene.scenes.sampling import SamplingSettings  # noqa: E402
from word2scene.training.base_model import old_photo  # noqa: E402

AID = ROOT.parent / "shared" / "data" / "aid"
RS_SCENES = ROOT.parent / "shared" / "data" / "rs_scenes"


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


def fit_images(dataset: Path = AID, n: int = 600, seed: int = 0) -> list[Image.Image]:
    """n train images of `dataset` (a seeded draw; all when it has fewer) to fit the look score on."""
    rng = np.random.default_rng(seed)
    items = image_set(dataset, "data", split="train")
    return read_images([items[i] for i in rng.choice(len(items), min(n, len(items)), replace=False)], "data")


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
def row_folder(out: Path, name: str) -> Path:
    """Where a table row's images go: out/<the row's name, letters and digits kept>."""
    return out / "".join(ch if ch.isalnum() else "_" for ch in name).strip("_")


def generate_row(sd, kb, classes: list[str], seeds: list[int], out: Path, concept, strength: float, steps: int,
                 batch: int = 30, size: int = 128, cfg: float = 7.0) -> None:
    """Each class x seed at `size` px (out/<class>/<seed>.png), `batch` scenes per sampling call;
    skips files already written."""
    draw_jobs(sd, kb, [(kb[cid].name, seed, out / cid / f"{seed:04d}.png") for cid in classes for seed in seeds],
              concept, strength, steps, batch, size, cfg)


def draw_jobs(sd, kb, jobs: list[tuple[str, int, Path]], concept, strength: float, steps: int, batch: int = 30,
              size: int = 128, cfg: float = 7.0, sampler: str = "ddim") -> None:
    """Each (words, seed, file) job drawn through the scene pipeline (prompt "gs, geographic
    scene, <words>"; DDIM, CFG 7 unless given), `batch` per sampling call; files already
    written are skipped, once their PNGs show they were drawn with these settings."""
    settings = SamplingSettings(steps=steps, cfg=cfg, width=size, height=size, sampler=sampler)
    check_drawn_with([file for _, _, file in jobs], settings, strength)
    jobs = [j for j in jobs if not j[2].is_file()]
    apply_concepts(sd, [(concept, strength, strength)] if concept is not None and strength else [])
    try:
        for start in range(0, len(jobs), batch):
            part = jobs[start:start + batch]
            scenes = make_scenes(sd, [(words, seed) for words, seed, _ in part], settings, kb=kb,
                                 parameters={"strength": strength, "concept": str(getattr(concept, "path", ""))})
            for (_, _, file), scene in zip(part, scenes):
                file.parent.mkdir(parents=True, exist_ok=True)
                scene.save(file, overwrite=True)
    finally:
        apply_concepts(sd, [])


# --- test-set descriptions and diversity -------------------------------------------------------
def described_test_images(dataset: Path, per_image: int) -> list[tuple[str, str, int]]:
    """(class, description, seed) for each held-out image of a captioned dataset
    (rs_scenes: RSICD's human captions of AID test images), its first `per_image` captions,
    caption k drawn with seed k."""
    rows = [json.loads(line) for line in (dataset / "captions.jsonl").read_text().splitlines() if line.strip()]
    out = []
    for row in rows:
        if row.get("split") in ("heldout", "test") and row.get("captions"):
            out += [(row["class"], c.rstrip(" ."), k) for k, c in enumerate(row["captions"][:per_image])]
    return out


def feature_spread(classifier, images: list[Image.Image]) -> float:
    """Mean pairwise cosine distance of the classifier's pooled features: 0 when every image
    is the same to the classifier, larger for more varied ones."""
    f = classifier.features(images)["pooled"].astype(np.float64)
    f /= np.linalg.norm(f, axis=1, keepdims=True) + 1e-12
    cos = f @ f.T
    n = len(f)
    return float(1 - (cos.sum() - n) / (n * (n - 1))) if n > 1 else float("nan")


def prompt_effect(folder: Path, seeds: list[int]) -> float:
    """Mean |difference| in grey levels between the images two prompts draw from the same seed
    (folder/<prompt>/<seed>.png; every pair of prompts, each seed): how much the prompt, rather
    than the seed, sets the scene."""
    import itertools

    gaps = []
    for seed in seeds:
        images = [np.asarray(Image.open(f).convert("RGB"), dtype=np.float64)
                  for f in sorted(folder.glob(f"*/{seed:04d}.png"))]
        gaps += [np.abs(a - b).mean() for a, b in itertools.combinations(images, 2)]
    return float(np.mean(gaps)) if gaps else float("nan")


def diversity(classifier, sd, kb, concept, described, test: list, classes: list[str], out: Path, steps: int,
              size: int, cfg: float, seeds: int = 9) -> tuple[dict, list[str]]:
    """Nine seeds of one description per class (the first held-out image's first caption):
    the spread of the classifier's features across them and the share classified as the
    described class, beside nine real test images of the class. Writes out/<class>.png (3 x 3)."""
    first = {}
    for cls, text, k in described:
        first.setdefault(cls, text)
    jobs = [(first[c], seed, out / c / f"{seed:04d}.png") for c in classes if c in first for seed in range(seeds)]
    draw_jobs(sd, kb, jobs, concept, 1.0, steps, size=size, cfg=cfg)
    rows, lines = {}, ["| class | description | spread generated | spread real | generated classified as the class |",
                       "|---|---|---|---|---|"]
    for c in classes:
        if c not in first:
            continue
        files = [out / c / f"{seed:04d}.png" for seed in range(seeds)]
        images = [Image.open(f).convert("RGB") for f in files]
        real_items = [i for i in test if i.label == c][:seeds]
        real = read_images(real_items, "reference")
        hits = np.mean([classifier.classes[i] == c for i in classifier.features(images)["logits"].argmax(1)])
        rows[c] = {"description": first[c], "spread_generated": feature_spread(classifier, images),
                   "spread_real": feature_spread(classifier, real), "classified": float(hits)}
        grid = Image.new("RGB", (3 * size, 3 * size))
        for k, im in enumerate(images):
            grid.paste(im.resize((size, size)), ((k % 3) * size, (k // 3) * size))
        grid.save(out / f"{c}.png")
        lines.append(f"| {c} | {first[c]} | {rows[c]['spread_generated']:.3f} | {rows[c]['spread_real']:.3f} | "
                     f"{hits:.0%} |")
    g = np.array([r["spread_generated"] for r in rows.values()])
    r = np.array([r["spread_real"] for r in rows.values()])
    h = np.array([r["classified"] for r in rows.values()])
    lines.append(f"| mean (sd over classes) | | {g.mean():.3f} ({g.std():.3f}) | {r.mean():.3f} ({r.std():.3f}) | "
                 f"{h.mean():.0%} ({h.std():.0%}) |")
    return rows, lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=20, help="images per class and row (seeds 0..N-1)")
    ap.add_argument("--steps", type=int, default=MINI_SAMPLING["steps"], help="DDIM steps (default: mini's)")
    ap.add_argument("--cfg", type=float, default=MINI_SAMPLING["cfg"], help="guidance scale (default: mini's)")
    ap.add_argument("--classifier", help="a scene classifier .safetensors (default: the pack's shipped one when "
                                         "present, else train one, cached in --out)")
    ap.add_argument("--classifier-epochs", type=int, default=6)
    ap.add_argument("--classifier-size", type=int, default=64, help="the classifier's input side (AID images are 128 px)")
    ap.add_argument("--checkpoint", help="the base model (default: the shipped Word2Scene-mini)")
    ap.add_argument("--concept-11", default=str(MINI_CONCEPT_11), help="the 11-concept LoRA")
    ap.add_argument("--concept-c", default=str(MINI_CONCEPT), help="Word2Scene-C, trained on all 30 classes")
    ap.add_argument("--control", action="append", default=[], metavar="FILE", help="extra concept rows (controls)")
    ap.add_argument("--dataset", default=str(AID), help="the scene dataset (train split: classifier; test split: "
                                                        "the real rows)")
    ap.add_argument("--described", default=str(RS_SCENES),
                    help="captioned dataset whose held-out images' human descriptions make the description row "
                         "and the diversity study ('' to skip both)")
    ap.add_argument("--description-concept", help="concept for the description row and the diversity study "
                                                  "(default: --concept-11)")
    ap.add_argument("--descriptions-per-image", type=int, default=2)
    ap.add_argument("--size", type=int, default=128, help="generated side in pixels")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "mini"))
    args = ap.parse_args()
    out = Path(args.out)
    dataset = Path(args.dataset)
    kb = load_knowledge(extra_dirs=[])
    classes = sorted(d.name for d in dataset.iterdir() if d.is_dir())
    trained = set(kb.by_paper("trained")) & set(classes)
    t0 = time.perf_counter()

    shipped = ROOT / "word2scene" / "assets" / "classifier" / "aid-scene-cnn.safetensors"
    clf_path = Path(args.classifier) if args.classifier else shipped if shipped.is_file() and dataset == AID \
        else out / "aid_scene_cnn.safetensors"
    if not clf_path.is_file():
        config = ClassifierConfig(epochs=args.classifier_epochs, input_size=args.classifier_size)
        save_classifier(train_classifier(image_set(dataset, "data", split="train"), config,
                                         on_epoch=lambda e, n, loss: print(f"classifier epoch {e}/{n} loss {loss:.3f}")),
                        clf_path, overwrite=True)
    classifier = load_extractor(str(clf_path))
    test = image_set(dataset, "reference", split="test")
    test_images = read_images(test, "reference")
    ceiling = accuracy(classifier, test, images=test_images)
    network = classifier.name  # architecture, input size, file and sha256
    print(f"scene classifier {network}: test OA {ceiling.overall:.1%} on {ceiling.images} images "
          f"({time.perf_counter() - t0:.0f} s)")

    look = LookScore(fit_images(dataset))

    sd = (load_sd15(args.checkpoint) if args.checkpoint else load_sd15(model="mini")).to(args.device)
    concept_11, concept_c = load_concept(args.concept_11), load_concept(args.concept_c)
    rows = {"base (strength 0)": (None, 0.0), "base + 11-concept LoRA (strength 1)": (concept_11, 1.0),
            "base + Word2Scene-C, all 30 (strength 1)": (concept_c, 1.0)}
    for path in args.control:
        rows[f"control: {Path(path).stem} (strength 1)"] = (load_concept(path), 1.0)
    results = {"classifier": network, "classifier_test_oa": ceiling.overall, "images_per_class": args.images,
               "checkpoint": sd.source, "rows": {}}
    table = [("real test images", test, test_images)]
    for name, (c, strength) in rows.items():
        folder = row_folder(out, name)
        g0 = time.perf_counter()
        generate_row(sd, kb, classes, list(range(args.images)), folder, c, strength, args.steps, size=args.size,
                     cfg=args.cfg)
        items = image_set(folder, "generated")
        print(f"{name}: {len(items)} images ({time.perf_counter() - g0:.0f} s)")
        table.append((name, items, read_images(items, "generated")))
    description_concept = load_concept(args.description_concept) if args.description_concept else concept_11
    described = described_test_images(Path(args.described), args.descriptions_per_image) if args.described else []
    described = [d for d in described if d[0] in classes]
    if described:
        name = f"test-set descriptions, {Path(description_concept.path).stem} (strength 1)"
        folder = out / "descriptions"
        g0 = time.perf_counter()
        counter: dict[str, int] = {}
        jobs = []
        for cls, text, k in described:
            n = counter[cls] = counter.get(cls, -1) + 1
            jobs.append((text, k, folder / cls / f"{n:04d}.png"))
        draw_jobs(sd, kb, jobs, description_concept, 1.0, args.steps, size=args.size, cfg=args.cfg)
        items = image_set(folder, "generated")
        print(f"{name}: {len(items)} images ({time.perf_counter() - g0:.0f} s)")
        table.append((name, items, read_images(items, "generated")))

    lines = ["| row | OA all | OA the 11 | OA the 19 | OA by seed half | look all | look the 11 | "
             "look the 19 | FID | KID x1e3 | GSHPS |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    spread_lines = ["| row | look | FID | KID x1e3 | GSHPS |", "|---|---|---|---|---|"]

    def distances(items, images):
        report = evaluate(items, test, EvaluationSettings(features=str(clf_path)), generated_images=images)
        return report.value("FID"), report.value("KID") * 1e3, report.value("GSHPS")

    for name, items, images in table:
        acc = accuracy(classifier, items, images=images)
        per_class = acc.per_class
        split_oa = {k: np.mean([per_class[c] for c in per_class if (c in trained) == (k == "trained")] or [np.nan])
                    for k in ("trained", "zero-shot")}
        sd_class = {k: np.std([per_class[c] for c in per_class if (c in trained) == (k == "trained")] or [np.nan])
                    for k in ("trained", "zero-shot")}
        scores = look(images)
        halves, spread = [], []
        if name != "real test images":
            seeds = np.array([int(Path(i.path).stem) for i in items])
            cut = np.median(seeds) if name.startswith("test-set") else args.images // 2
            for half in (seeds < cut, seeds >= cut):
                if not half.any():  # too few images to split
                    continue
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
                                 "images": len(items), "look": float(scores.mean()),
                                 "look_trained": float(scores[is_trained].mean()) if is_trained.any() else None,
                                 "look_zero_shot": float(scores[~is_trained].mean()) if (~is_trained).any() else None,
                                 "fid": fid, "kid_x1e3": kid, "gshps": gshps,
                                 "seed_halves": [dict(zip(("look", "fid", "kid_x1e3", "gshps"), h)) for h in spread]}
        halves_text = " / ".join(f"{h:.1%}" for h in halves) or "-"
        mean_of = lambda m: f"{scores[m].mean():.2f}" if m.any() else "-"
        lines.append(f"| {name} | {acc.overall:.1%} | {split_oa['trained']:.1%} (sd {sd_class['trained']:.1%}) | "
                     f"{split_oa['zero-shot']:.1%} (sd {sd_class['zero-shot']:.1%}) | {halves_text} | "
                     f"{scores.mean():.2f} | {mean_of(is_trained)} | {mean_of(~is_trained)} | "
                     f"{fid:.1f} | {kid:.1f} | {gshps:.3f} |")
    text = (f"Word2Scene-mini ({sd.source}), {args.images} images per class and row at {args.size} px, DDIM "
            f"{args.steps} steps, CFG {args.cfg:g}; classifier {network}, test OA {ceiling.overall:.1%}; chance "
            f"{1 / len(classes):.1%}. The 11: the paper's training concepts; the 19: the others (zero-shot for the "
            f"11-concept LoRA, trained for Word2Scene-C).\n\n" + "\n".join(lines)
            + f"\n\nSpread: each figure on seeds 0-{args.images // 2 - 1} / {args.images // 2}-{args.images - 1} "
            f"({args.images // 2} images per class each; the description row: its captions' first / second halves)."
            f"\n\n" + "\n".join(spread_lines))
    if described:
        rows_d, lines_d = diversity(classifier, sd, kb, description_concept, described, test, classes,
                                    out / "diversity", args.steps, args.size, args.cfg)
        results["diversity"] = rows_d
        shared = list(range(min(9, args.images)))  # seeds both the diversity sheets and the rows drew
        effects = {"descriptions": prompt_effect(out / "diversity", shared)}
        for name, (c, _) in rows.items():
            if c is not None and Path(c.path).resolve() == Path(description_concept.path).resolve():
                effects["class words"] = prompt_effect(row_folder(out, name), shared)  # the same concept's row
        results["prompt_effect"] = effects
        text += ("\n\nDiversity and stability: 9 seeds of one held-out description per class with "
                 f"{Path(description_concept.path).stem} (spread = mean pairwise cosine distance of the classifier's "
                 "pooled features; real = 9 test images of the class)\n\n" + "\n".join(lines_d)
                 + "\n\nPrompt effect (mean |difference| in grey levels between two prompts' images from the same "
                 f"seed, all pairs of classes, seeds 0-{shared[-1]}): " + ", ".join(f"{k} {v:.1f}" for k, v in effects.items()))
    write_report(out, text, results)
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
