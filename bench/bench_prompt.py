"""Benchmark of the scene prompt expander and caption mining.

Reference, measured in the same run: one forward pass of SD1.5's CLIP text encoder (full
size, random weights) on the expanded prompt, the step every expanded prompt feeds. The
ratio says how small the expander's cost is next to it (higher = cheaper).

Usage: python bench/bench_prompt.py
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from word2scene.scenes.sampling import encode_prompt  # noqa: E402
from word2scene.prompts.knowledge import cached_knowledge, load_knowledge  # noqa: E402
from word2scene.prompts.mining import mine, read_captions  # noqa: E402
from word2scene.models.sd15 import build_random, load_tokenizer, sd15_configs  # noqa: E402
from word2scene.prompts.expander import expand  # noqa: E402

CAPTIONS = ROOT.parent / "shared" / "data" / "rs_scenes" / "captions.jsonl"


def per_call(fn, n):
    fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def main() -> None:
    tok = load_tokenizer()
    kb = load_knowledge(extra_dirs=[])
    sd = build_random(sd15_configs(), seed=0, name="sd15-random")
    words = ["airport", "DenseResidential", "airprot", "机场, river", "storage tank, port, beach"]
    rows = []
    text_encoder = per_call(lambda: encode_prompt(sd, expand("airport", "descriptive", 3, kb=kb, tokenizer=tok).positive), 5)
    for w in words:
        for style, detail in (("word2scene", 0), ("descriptive", 3)):
            t = per_call(lambda: expand(w, style, detail, seed=1, kb=kb, tokenizer=tok), 20)
            rows.append((f"expand {w!r} ({style}, detail {detail})", t))
    rows.append(("load knowledge base (cold)", per_call(lambda: load_knowledge(extra_dirs=[]), 3)))
    rows.append(("load knowledge base (cached)", per_call(lambda: cached_knowledge([]), 50)))
    if CAPTIONS.is_file():
        captions = read_captions(CAPTIONS)
        rows.append((f"mine {sum(map(len, captions.values()))} captions, 30 classes", per_call(lambda: mine(captions), 2)))
    print(f"\nreference: SD1.5 CLIP text encoder forward, 1 prompt = {text_encoder * 1000:.1f} ms "
          f"(torch {torch.__version__}, {torch.get_num_threads()} threads)\n")
    print("| operation | time (ms) | ratio (text encoder / operation) |")
    print("|---|---|---|")
    for name, t in rows:
        print(f"| {name} | {t * 1000:.2f} | {text_encoder / t:.1f}x |")


if __name__ == "__main__":
    main()
