"""The README's pictures of Word2Scene-mini, made with the project's own library:

- docs/images/mini_classes.png: per AID class, a real test image, the base alone (strength 0),
  base + the paper's 11-concept LoRA and base + Word2Scene-C (the default; strength 1), same
  prompt "gs, geographic scene, <word>" and seed;
- docs/images/mini_epoch_strength.png: the paper's epoch x strength study (rows: the 11-concept
  LoRA after each epoch; columns: strength 0 to 1 in 0.1 steps), one prompt and seed;
- docs/images/mini_heatmaps.png: cross-attention heat maps of "gs", "geographic scene" and the
  class word with the default concept, on a generated scene and on a real image (explained at
  timesteps 100, 300, 500);
- docs/images/mini_diversity.png (with --diversity, bench_mini.py's diversity folder): per class,
  the 3 x 3 sheet of nine seeds of one held-out description beside nine real test images, two
  classes per row.

Usage: python bench/mini_pictures.py [--epochs DIR_WITH_<stem>-epochNN.safetensors] [--seed 1]
    [--diversity BENCH_OUT/diversity [--diversity-classes beach,farmland]] [--only-diversity]
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from word2scene.concepts.file import load_concept  # noqa: E402
from word2scene.concepts.patching import apply_concepts  # noqa: E402
from word2scene.imagery import fit_square, read_image, save_png  # noqa: E402
from word2scene.models.sd15 import MINI_CONCEPT, MINI_CONCEPT_11, MINI_SAMPLING, load_sd15  # noqa: E402
from word2scene.prompts.knowledge import load_knowledge  # noqa: E402
from word2scene.scenes.heatmaps import explain_image, generate_with_heatmaps  # noqa: E402
from word2scene.scenes.pipeline import make_scene  # noqa: E402
from word2scene.scenes.render import labelled_grid  # noqa: E402
from word2scene.scenes.sampling import SamplingSettings  # noqa: E402
from word2scene.scenes.strength_study import strength_grid  # noqa: E402

AID = ROOT.parent / "shared" / "data" / "aid"
OUT = ROOT / "docs" / "images"


@functools.cache
def test_files(cls: str) -> list[str]:
    """The AID test split's files of a class, in captions.jsonl's order."""
    rows = [json.loads(line) for line in (AID / "captions.jsonl").read_text().splitlines()]
    return [r["file"] for r in rows if r["class"] == cls and r["split"] == "test"]


def first_test_image(cls: str) -> Image.Image:
    return fit_square(read_image(AID / test_files(cls)[0]), 128)


def look_table(cells: list[list[Image.Image]], classes: list[str], trained: set[str]) -> None:
    """P(true colour) (bench/bench_mini.py's look score) of the real image, the base alone and
    base + each concept, per class; printed as mean and spread over classes, by split. The base
    alone is the control: the same prompt, seed and sampler without a concept."""
    import numpy as np

    from bench.bench_mini import LookScore, fit_images

    score = LookScore(fit_images(n=300))
    values = np.array([score(row) for row in cells])  # classes x (real, base, 11-concept, C)
    rows = []
    for name, mask in (("all 30", np.ones(len(classes), bool)), ("trained 11", np.array([c in trained for c in classes])),
                       ("zero-shot 19", np.array([c not in trained for c in classes]))):
        v = values[mask]
        rows.append(f"| {name} | " + " | ".join(f"{v[:, k].mean():.2f} (sd {v[:, k].std():.2f})" for k in range(4)) + " |")
    text = ("| classes | real test image | base alone (strength 0) | + 11-concept LoRA (strength 1) | "
            "+ Word2Scene-C (strength 1) |\n|---|---|---|---|---|\n" + "\n".join(rows))
    print(text)
    (OUT / "mini_look.md").parent.mkdir(parents=True, exist_ok=True)
    (OUT / "mini_look.md").write_text(text + "\n")


def diversity_figure(folder: Path, classes: list[str], side: int = 96) -> Image.Image:
    """bench_mini's 3 x 3 sheets of nine seeds of one description (folder/<class>.png), each beside
    nine real AID test images of the class; two classes per row."""
    pairs = []
    for cls in classes:
        sheet = Image.open(folder / f"{cls}.png").convert("RGB").resize((3 * side, 3 * side))
        real = Image.new("RGB", (3 * side, 3 * side))
        for k, file in enumerate(test_files(cls)[:9]):
            real.paste(fit_square(read_image(AID / file), side), ((k % 3) * side, (k // 3) * side))
        pairs.append((cls.replace("_", " "), [sheet, real]))
    blank = Image.new("RGB", (3 * side, 3 * side), "white")
    cells = [pairs[i][1] + (pairs[i + 1][1] if i + 1 < len(pairs) else [blank, blank]) for i in range(0, len(pairs), 2)]
    labels = [" / ".join(name for name, _ in pairs[i:i + 2]) for i in range(0, len(pairs), 2)]
    return labelled_grid(cells, labels, ["9 seeds, one description", "9 real test images"] * 2, "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", help="folder with the concept's per-epoch files (train --save-every-epoch)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=MINI_SAMPLING["steps"], help="DDIM steps (default: mini's)")
    ap.add_argument("--cfg", type=float, default=MINI_SAMPLING["cfg"], help="guidance scale (default: mini's)")
    ap.add_argument("--diversity", help="bench_mini.py's OUT/diversity folder: draw mini_diversity.png from it")
    ap.add_argument("--diversity-classes", default="beach,medium_residential,farmland,airport")
    ap.add_argument("--only-diversity", action="store_true", help="draw mini_diversity.png only")
    args = ap.parse_args()
    if args.diversity:
        save_png(diversity_figure(Path(args.diversity), args.diversity_classes.split(",")), OUT / "mini_diversity.png",
                 overwrite=True)
        if args.only_diversity:
            return 0
    kb = load_knowledge(extra_dirs=[])
    sd = load_sd15(model="mini")
    concepts = [load_concept(MINI_CONCEPT_11), load_concept(MINI_CONCEPT)]
    settings = SamplingSettings(sampler=MINI_SAMPLING["sampler"], steps=args.steps, cfg=args.cfg,
                                seed=args.seed, width=128, height=128)
    classes = sorted(d.name for d in AID.iterdir() if d.is_dir())
    trained = set(kb.by_paper("trained"))

    cells, labels = [], []
    for cls in classes:
        row = [first_test_image(cls)]
        for concept in [None, *concepts]:
            apply_concepts(sd, [(concept, 1.0, 1.0)] if concept else [])
            row.append(make_scene(sd, kb[cls].name, settings, kb=kb).image)
        apply_concepts(sd, [])
        cells.append(row)
        labels.append(f"{kb[cls].name}{' *' if cls in trained else ''}")
    look_table(cells, classes, trained)
    half = (len(cells) + 1) // 2
    columns = ["real (test)", "base, strength 0", "+ 11-concept, 1", "+ C, 1"]
    left = labelled_grid(cells[:half], labels[:half], columns, "")
    right = labelled_grid(cells[half:], labels[half:], columns, "")
    both = Image.new("RGB", (left.width + right.width, max(left.height, right.height)), "white")
    both.paste(left, (0, 0))
    both.paste(right, (left.width, 0))
    save_png(both, OUT / "mini_classes.png", overwrite=True)

    epochs = []
    if args.epochs:
        files = sorted(Path(args.epochs).glob(f"{MINI_CONCEPT_11.stem}-epoch*.safetensors"))
        epochs = [load_concept(f) for f in files]
    if args.epochs and epochs:
        image, _ = strength_grid(sd, "gs, geographic scene, dense residential", epochs,
                                 [round(0.1 * i, 1) for i in range(11)], settings)
        save_png(image, OUT / "mini_epoch_strength.png", overwrite=True)

    apply_concepts(sd, [(concepts[1], 1.0, 1.0)])
    panels = []
    for cls in ("church", "airport"):
        prompt = f"gs, geographic scene, {kb[cls].name}"
        words = ["gs", "geographic scene", kb[cls].name]
        image, heat, _ = generate_with_heatmaps(sd, prompt, settings, 0, words)
        panels.append([image] + heat.words(words).overlays([image]))
        real = first_test_image(cls)
        _, explained = explain_image(sd, real, prompt, [100, 300, 500], args.seed)
        panels.append([real] + explained.words(words).overlays([real]))
    apply_concepts(sd, [])
    save_png(labelled_grid(panels, ["church, generated", "church, real", "airport, generated", "airport, real"],
                           ["image", "gs", "geographic scene", "class word"], ""), OUT / "mini_heatmaps.png", overwrite=True)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
