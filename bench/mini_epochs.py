"""The paper's epoch x strength study on Word2Scene-mini, measured: scene-classifier OA and the
look score of the concept after each epoch (at strength 1) and at each strength (after the
last epoch), with the base alone (strength 0) as the shared starting point.

Every point draws the 30 AID classes x N seeds (seeds 0..N-1, the prompt "gs, geographic scene,
<word>" as the expander writes it, DDIM at mini's sampling defaults unless given, 128 px) in batches of 30, and scores them with
bench/bench_mini.py's classifier and look score. Spread: each figure per seed, and the
standard deviation over classes. Images are cached in --out, so a run resumes where it stopped.

Usage (about 0.65 s per image on one CPU core at mini's defaults, DDIM 10 steps, CFG 10):
    python bench/mini_epochs.py DIR_WITH_<stem>-epochNNN.safetensors --classifier FILE [--images 2] [--steps 10 --cfg 10]
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_mini import AID, generate_row, LookScore, fit_images, subset, write_report  # noqa: E402
from word2scene.concepts.file import load_concept  # noqa: E402
from word2scene.evaluation.classifier import accuracy  # noqa: E402
from word2scene.evaluation.extractors import load_extractor  # noqa: E402
from word2scene.evaluation.image_sets import image_set, read_images  # noqa: E402
from word2scene.imagery import save_png  # noqa: E402
from word2scene.models.sd15 import MINI_SAMPLING, load_sd15  # noqa: E402
from word2scene.prompts.knowledge import load_knowledge  # noqa: E402


def chart(series: dict[str, list[float]], x: list[str], title: str, width: int = 520, height: int = 260) -> Image.Image:
    """A PIL line chart of values in [0, 1] over labelled x positions."""
    colours = [(20, 60, 160), (200, 80, 20), (30, 140, 60), (140, 40, 140)]
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    left, right, top, bottom = 40, width - 10, 24, height - 40
    draw.text((left, 4), title, fill="black")
    draw.rectangle([left, top, right, bottom], outline=(160, 160, 160))
    for v in (0.0, 0.5, 1.0):
        y = bottom - (bottom - top) * v
        draw.line([(left, y), (right, y)], fill=(225, 225, 225))
        draw.text((8, y - 6), f"{v:.1f}", fill="black")
    xs = [left + (right - left) * i / max(1, len(x) - 1) for i in range(len(x))]
    for i, label in enumerate(x):
        draw.text((xs[i] - 6, bottom + 4), label, fill="black")
    for k, (name, values) in enumerate(series.items()):
        points = [(xs[i], bottom - (bottom - top) * v) for i, v in enumerate(values)]
        draw.line(points, fill=colours[k % len(colours)], width=2)
        for px, py in points:
            draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=colours[k % len(colours)])
        draw.text((left + 6 + 125 * k, bottom + 20), name, fill=colours[k % len(colours)])
    return image


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("epochs", help="folder with the concept's per-epoch files (train --save-every-epoch)")
    ap.add_argument("--classifier", required=True, help="the scene classifier of bench/bench_mini.py")
    ap.add_argument("--images", type=int, default=2, help="seeds per class and point")
    ap.add_argument("--steps", type=int, default=MINI_SAMPLING["steps"], help="DDIM steps (default: mini's)")
    ap.add_argument("--cfg", type=float, default=MINI_SAMPLING["cfg"], help="guidance scale (default: mini's)")
    ap.add_argument("--strengths", default="0.2,0.4,0.6,0.8,1", help="strengths after the last epoch (0 is the base)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "mini_epochs"))
    ap.add_argument("--chart", default=str(ROOT / "docs" / "images" / "mini_epoch_curves.png"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    out = Path(args.out)
    by_epoch_file = sorted((int(re.findall(r"epoch(\d+)", f.stem)[-1]), f) for f in Path(args.epochs).glob("*-epoch*.safetensors"))
    if not by_epoch_file:
        raise SystemExit(f"{args.epochs}: no <stem>-epochNNN.safetensors files (train --save-every-epoch writes them)")
    epochs, files = [e for e, _ in by_epoch_file], [f for _, f in by_epoch_file]
    kb = load_knowledge(extra_dirs=[])
    classes = sorted(d.name for d in AID.iterdir() if d.is_dir())
    trained = set(kb.by_paper("trained")) & set(classes)
    seeds = list(range(args.images))
    sd = load_sd15(model="mini")
    classifier = load_extractor(args.classifier)
    look = LookScore(fit_images())

    points = [("base", 0, None, 0.0)]
    points += [(f"epoch {e}, strength 1", e, f, 1.0) for e, f in zip(epochs, files)]
    points += [(f"epoch {epochs[-1]}, strength {s:g}", epochs[-1], files[-1], s)
               for s in (float(v) for v in args.strengths.split(",")) if s not in (0.0, 1.0)]
    results = {"classifier": classifier.name, "images_per_class": args.images, "steps": args.steps, "cfg": args.cfg,
               "concept": [f.name for f in files], "points": {}}
    lines = ["| point | OA all 30 | OA by seed | look all | look the 11 | look the 19 | look by seed |",
             "|---|---|---|---|---|---|---|"]
    for name, epoch, path, strength in points:
        folder = out / ("base" if path is None else f"epoch{epoch:03d}_s{strength:.1f}")
        g0 = time.perf_counter()
        generate_row(sd, kb, classes, seeds, folder, None if path is None else load_concept(path), strength, args.steps,
                     cfg=args.cfg)
        items = [i for i in image_set(folder, "generated") if int(Path(i.path).stem) in seeds]
        images = read_images(items, "generated")
        acc = accuracy(classifier, items, images=images)
        scores = look(images)
        is_trained = np.array([i.label in trained for i in items])
        seed_of = np.array([int(Path(i.path).stem) for i in items])
        by_seed = [subset(items, images, seed_of == s) for s in seeds]
        by_seed_oa = [accuracy(classifier, sub, images=sub_images).overall for sub, sub_images in by_seed]
        by_seed_look = [float(scores[seed_of == s].mean()) for s in seeds]
        row = {"epoch": epoch, "strength": strength, "oa": acc.overall, "oa_by_seed": by_seed_oa,
               "oa_class_std": float(np.std(list(acc.per_class.values()))), "look": float(scores.mean()),
               "look_11": float(scores[is_trained].mean()), "look_19": float(scores[~is_trained].mean()),
               "look_by_seed": by_seed_look}
        results["points"][name] = row
        lines.append(f"| {name} | {acc.overall:.1%} (sd over classes {row['oa_class_std']:.1%}) | "
                     + " / ".join(f"{v:.1%}" for v in by_seed_oa) + f" | {row['look']:.2f} | {row['look_11']:.2f} | "
                     f"{row['look_19']:.2f} | " + " / ".join(f"{v:.2f}" for v in by_seed_look) + " |")
        print(lines[-1], f"({time.perf_counter() - g0:.0f} s)", flush=True)

    rows = results["points"]
    by_epoch = [rows["base"]] + [rows[f"epoch {e}, strength 1"] for e in epochs]
    strengths = sorted({r["strength"] for r in rows.values() if r["epoch"] in (0, epochs[-1])})
    by_strength = [next(r for r in rows.values() if r["strength"] == s and r["epoch"] in ((0,) if s == 0 else (epochs[-1],)))
                   for s in strengths]
    keys = {"OA": "oa", "look, the 11": "look_11", "look, the 19": "look_19"}
    left = chart({k: [r[v] for r in by_epoch] for k, v in keys.items()}, ["0"] + [str(e) for e in epochs],
                 "over epochs, strength 1 (epoch 0: the base)")
    right = chart({k: [r[v] for r in by_strength] for k, v in keys.items()}, [f"{s:g}" for s in strengths],
                  f"over strengths, after epoch {epochs[-1]}")
    both = Image.new("RGB", (left.width + right.width, left.height), "white")
    both.paste(left, (0, 0))
    both.paste(right, (left.width, 0))
    save_png(both, Path(args.chart), overwrite=True)
    text = (f"Word2Scene-mini epoch x strength, {args.images} seeds x 30 classes per point, DDIM {args.steps}, CFG {args.cfg:g}; "
            f"classifier {classifier.name}; concept files {files[0].name} .. {files[-1].name}.\n\n" + "\n".join(lines))
    write_report(out, text, results)
    print(f"wrote {args.chart}; total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
