"""The expert's part of hybrid intelligence, played by a script that knows each image's class.

`captions propose` writes machine proposals (scene class, element tags, relation sentences),
all pending; the paper has experts adopt, amend, annihilate or add. On AID, where every
image's class is known but no expert is at hand, this script decides as an expert who knows
only the class would:
- scene: adopt when the classifier's class is the image's class, else amend it to the class;
- tags: adopt;
- sentences: adopt those borrowed from a captioned neighbour of the same class, annihilate
  those from a neighbour of another class (a sentence about storage tanks under an airport).
Every decision is counted and printed. The result is what `captions apply` reads:

    python -m word2scene captions propose ../shared/data/aid --split train --from ../shared/data/rs_scenes \
        --out review.yaml
    python bench/mini_review.py review.yaml --out reviewed.yaml
    python -m word2scene captions apply reviewed.yaml --out aid_hybrid --format jsonl
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from word2scene.evaluation.image_sets import class_key  # noqa: E402
from word2scene.files import load_yaml, write_text_atomic  # noqa: E402


def review_by_class(review: dict) -> Counter:
    """Set every decision of `review` (in place) from each image's known class; the counts."""
    counts: Counter = Counter()
    for image in review["images"]:
        label = class_key(image.get("label") or "")
        scene = image.get("scene")
        if scene:
            if class_key(scene["text"]) == label:
                scene["decision"] = "adopt"
            else:
                scene["decision"], scene["amended"] = "amend", label.replace("_", " ")
            counts[f"scene {scene['decision']}"] += 1
        for tag in image.get("tags") or []:
            tag["decision"] = "adopt"
            counts["tag adopt"] += 1
        for sentence in image.get("sentences") or []:
            source = str(sentence.get("source", ""))
            neighbour = source.removeprefix("neighbour ").split("/")[0] if source.startswith("neighbour ") else None
            sentence["decision"] = "adopt" if neighbour is None or class_key(neighbour) == label else "annihilate"
            counts[f"sentence {sentence['decision']}"] += 1
    return counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("review", type=Path, help="a review file from `captions propose`")
    ap.add_argument("--out", required=True, type=Path, help="the reviewed file to write")
    args = ap.parse_args()
    review = load_yaml(args.review, "review")
    counts = review_by_class(review)
    header = "".join(line + "\n" for line in args.review.read_text().splitlines() if line.startswith("#"))
    write_text_atomic(args.out, header + yaml.safe_dump(review, sort_keys=False, allow_unicode=True, width=120),
                      overwrite=True)
    print(", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
