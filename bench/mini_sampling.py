"""Word2Scene-mini's sampling defaults, chosen by measurement: OA and look of base + a concept
over a grid of samplers x steps x CFG scales, in one run.

For each setting: the 30 AID classes x N seeds (seeds 0..N-1, prompt "gs, geographic scene,
<word>", 128 px), scored with the scene classifier (OA against the word's class), the look
score of bench_mini (P(true colour)) and FID against the AID test split in the classifier's
features; the spread is OA on the two seed halves. Time
per image is measured too (fewer steps is faster). The table is sorted by OA.

Usage:
    python bench/mini_sampling.py [--checkpoint FILE] [--concept FILE] [--images 4]
        [--samplers ddim,dpmpp_2m] [--steps 10,20,30] [--cfg 3,5,7,10] [--strengths 1]
        [--out bench/results/mini_sampling]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_mini import AID, LookScore, draw_jobs, fit_images, subset, write_report  # noqa: E402
from word2scene.concepts.file import load_concept  # noqa: E402
from word2scene.evaluation.classifier import accuracy  # noqa: E402
from word2scene.evaluation.extractors import load_extractor, shipped_classifier  # noqa: E402
from word2scene.evaluation.image_sets import image_set, read_images  # noqa: E402
from word2scene.evaluation.scoring import EvaluationSettings, evaluate  # noqa: E402
from word2scene.models.sd15 import MINI_CONCEPT, load_sd15  # noqa: E402
from word2scene.prompts.knowledge import load_knowledge  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", help="the base model (default: the shipped Word2Scene-mini)")
    ap.add_argument("--concept", default=str(MINI_CONCEPT), help="the concept (default: Word2Scene-C)")
    ap.add_argument("--classifier", default=str(shipped_classifier() or ""), help="the scene classifier")
    ap.add_argument("--images", type=int, default=4, help="seeds per class and setting")
    ap.add_argument("--samplers", default="ddim,dpmpp_2m")
    ap.add_argument("--steps", default="10,20,30")
    ap.add_argument("--cfg", default="3,5,7,10")
    ap.add_argument("--strengths", default="1", help="the concept's strengths (model and text encoder alike)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "mini_sampling"))
    args = ap.parse_args()
    out = Path(args.out)
    kb = load_knowledge(extra_dirs=[])
    classes = sorted(d.name for d in AID.iterdir() if d.is_dir())
    classifier = load_extractor(args.classifier)
    look = LookScore(fit_images())
    sd = load_sd15(args.checkpoint) if args.checkpoint else load_sd15(model="mini")
    concept = load_concept(args.concept)
    test = image_set(AID, "reference", split="test")
    seeds = list(range(args.images))
    rows = []
    for sampler in args.samplers.split(","):
        for steps in (int(s) for s in args.steps.split(",")):
            for cfg, strength in ((float(c), float(s)) for c in args.cfg.split(",") for s in args.strengths.split(",")):
                # strength 1 keeps the folder name earlier runs used, so their images are reused
                folder = out / (f"{sampler}_{steps}_{cfg:g}" + ("" if strength == 1 else f"_s{strength:g}"))
                t0 = time.perf_counter()
                jobs = [(kb[c].name, seed, folder / c / f"{seed:04d}.png") for c in classes for seed in seeds]
                fresh = sum(not j[2].is_file() for j in jobs)
                draw_jobs(sd, kb, jobs, concept, strength, steps, cfg=cfg, sampler=sampler)
                seconds = (time.perf_counter() - t0) / max(1, fresh)
                items = image_set(folder, "generated")
                images = read_images(items, "generated")
                scores = look(images)
                seed_of = np.array([int(Path(i.path).stem) for i in items])
                halves = []
                for m in (seed_of < args.images // 2, seed_of >= args.images // 2):
                    sub, sub_images = subset(items, images, m)
                    halves.append(accuracy(classifier, sub, images=sub_images).overall)
                oa = accuracy(classifier, items, images=images).overall
                fid = evaluate(items, test, EvaluationSettings(features=args.classifier), generated_images=images).value("FID")
                rows.append((oa, sampler, steps, cfg, strength, halves, float(scores.mean()), fid,
                             seconds if fresh else None))
                print(f"{sampler} {steps} steps CFG {cfg:g} strength {strength:g}: OA {oa:.1%} look {scores.mean():.2f} "
                      f"FID {fid:.1f}", flush=True)
    rows.sort(key=lambda r: -r[0])
    lines = [f"Word2Scene-mini ({sd.source}) + {Path(concept.path).name}, 30 AID classes x {args.images} "
             f"seeds per setting, 128 px; classifier {classifier.name}. Sorted by OA.", "",
             f"| sampler | steps | CFG | strength | OA | OA by seed half | look | FID | s per image "
             f"({torch.get_num_threads()} threads) |", "|---|---|---|---|---|---|---|---|---|"]
    for oa, sampler, steps, cfg, strength, halves, lk, fid, secs in rows:
        lines.append(f"| {sampler} | {steps} | {cfg:g} | {strength:g} | {oa:.1%} | {' / '.join(f'{h:.1%}' for h in halves)} | "
                     f"{lk:.2f} | {fid:.1f} | {'-' if secs is None else f'{secs:.2f}'} |")
    write_report(out, "\n".join(lines), {"rows": [dict(zip(("oa", "sampler", "steps", "cfg", "strength", "oa_halves", "look",
                                                             "fid", "seconds_per_image"), r)) for r in rows]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
