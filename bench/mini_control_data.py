"""The data of the Word2Scene-mini experiment's control LoRAs: the AID train images of the
paper's 11 training concepts (or, with --all, of all 30 classes: Word2Scene-C's control), in
the base model's own shifted look (old_photo), as class folders. A LoRA trained on them with
the shipped concept's command learns no true colour, so the look it gives shows what the
true-colour images, not LoRA training itself, bring.

    python bench/mini_control_data.py --out /tmp/mini_control_data
    python -m word2scene train /tmp/mini_control_data --model mini <the README concept options> \\
        --out /tmp/word2scene-mini-control-shifted.safetensors
    python bench/bench_mini.py --images 10 --steps 20 --control /tmp/word2scene-mini-control-shifted.safetensors
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from word2scene.datasets import scan_dataset  # noqa: E402
from word2scene.evaluation.image_sets import class_key  # noqa: E402
from word2scene.imagery import open_image  # noqa: E402
from word2scene.prompts.knowledge import load_knowledge  # noqa: E402
from word2scene.training.base_model import old_photo  # noqa: E402

AID = ROOT.parent / "shared" / "data" / "aid"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, help="folder for the class folders")
    ap.add_argument("--all", action="store_true", help="all 30 classes (Word2Scene-C's control), not the paper's 11")
    args = ap.parse_args()
    kb = load_knowledge(extra_dirs=[])
    trained = None if args.all else [kb[c].name for c in kb.by_paper("trained")]
    samples = scan_dataset(AID, concepts=trained, split="train", kb=kb)
    for sample in samples:
        folder = Path(args.out) / class_key(sample.concept)
        folder.mkdir(parents=True, exist_ok=True)
        old_photo(open_image(sample.image, "dataset")).save(folder / (sample.image.stem + ".png"))
    concepts = len({s.concept for s in samples})
    print(f"wrote {len(samples)} images of {concepts} concepts in the shifted look to {args.out}")


if __name__ == "__main__":
    main()
