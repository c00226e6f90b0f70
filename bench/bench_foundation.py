"""Benchmark of the foundation: concept strength changes and one-word generation.

References, measured in the same run on the same random-weight full-size SD1.5 model:
- strength change: diffusers' own LoRA path (load_lora_weights, then fuse_lora /
  unfuse_lora for each new strength; set_adapters for the unfused scale change);
- drift: weights after 20 strength changes, against the weights of one clean application;
- generation: diffusers' StableDiffusionPipeline with DDIMScheduler at identical settings.

Usage: python bench/bench_foundation.py [--size 64] [--steps 4] [--rank 16]
Prints a markdown table; ratios are reference / ours for times (higher = we are faster).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from helpers import make_concept, model_shapes  # noqa: E402
from word2scene.concepts.file import save_concept  # noqa: E402
from word2scene.scenes.sampling import SamplingSettings, generate  # noqa: E402
from word2scene.models.sd15 import build_random, sd15_configs  # noqa: E402
from word2scene.concepts.patching import apply_concepts, lora_modules  # noqa: E402


def timed(fn, repeat=3):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--rank", type=int, default=16)
    args = ap.parse_args()
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; building random full-size SD1.5...", file=sys.stderr)
    sd = build_random(sd15_configs(), seed=0, name="sd15-random")
    concept = make_concept(model_shapes(sd), rank=args.rank, alpha=args.rank / 2, module_set="kohya", text_encoder=True)
    tmp = Path(tempfile.mkdtemp())
    path = save_concept(concept, tmp / "bench.safetensors")
    modules = lora_modules(sd)

    rows = []
    strengths = iter([0.1 * i for i in range(1, 1000)])
    ours_change = timed(lambda: apply_concepts(sd, [(concept, next(strengths), 1.0)]))
    apply_concepts(sd, [(concept, 0.7, 1.0)])
    clean = {n: modules[n].weight.detach().clone() for n in concept.lora}
    for s in [0.3, 1.5, -0.5, 0.9] * 5:
        apply_concepts(sd, [(concept, s, 1.0)])
    apply_concepts(sd, [(concept, 0.7, 1.0)])
    ours_drift = max(float((modules[n].weight - clean[n]).abs().max()) for n in concept.lora)

    settings = SamplingSettings(steps=args.steps, width=args.size, height=args.size, seed=1)
    apply_concepts(sd, [])
    ours_gen = timed(lambda: generate(sd, "gs, geographic scene, airport", settings), repeat=2)

    pipe = StableDiffusionPipeline(vae=sd.vae, text_encoder=sd.text_encoder, tokenizer=sd.tokenizer, unet=sd.unet,
                                   scheduler=DDIMScheduler.from_config(sd.configs["scheduler"]), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    ref_gen = timed(lambda: pipe("gs, geographic scene, airport", num_inference_steps=args.steps, guidance_scale=7.0,
                                 width=args.size, height=args.size,
                                 generator=torch.Generator().manual_seed(1)), repeat=2)
    t = time.perf_counter()
    pipe.load_lora_weights(str(path), adapter_name="c")
    ref_load = time.perf_counter() - t
    strengths = iter([0.1 * i for i in range(1, 1000)])
    ref_scale = timed(lambda: pipe.set_adapters(["c"], adapter_weights=[next(strengths)]))

    def fuse_cycle():
        pipe.unfuse_lora()
        pipe.fuse_lora(lora_scale=next(strengths))
    pipe.fuse_lora(lora_scale=0.7)
    ref_fuse = timed(fuse_cycle)
    pipe.unfuse_lora()
    pipe.fuse_lora(lora_scale=0.7)
    ref_clean = {n: (modules[n].base_layer.weight if hasattr(modules[n], "base_layer") else modules[n].weight).detach().clone()
                 for n in concept.lora}
    for s in [0.3, 1.5, -0.5, 0.9] * 5:
        pipe.unfuse_lora()
        pipe.fuse_lora(lora_scale=s)
    pipe.unfuse_lora()
    pipe.fuse_lora(lora_scale=0.7)
    ref_drift = max(float(((modules[n].base_layer.weight if hasattr(modules[n], "base_layer") else modules[n].weight)
                           - ref_clean[n]).abs().max()) for n in concept.lora)

    rows.append(("strength change, 240 modules (s)", ours_change, ref_fuse, "diffusers unfuse+fuse_lora"))
    rows.append(("strength change vs unfused scale (s)", ours_change, ref_scale, "diffusers set_adapters (weights stay unmerged: slower sampling)"))
    rows.append((f"one-word generation {args.size}px, {args.steps} steps (s)", ours_gen, ref_gen, "diffusers StableDiffusionPipeline + DDIM"))
    print(f"\nrandom full-size SD1.5, concept rank {args.rank} (kohya set + text encoder, {len(concept.lora)} modules); "
          f"diffusers load_lora_weights took {ref_load:.2f} s\n")
    print("| measurement | word2scene | reference | ratio (ref/ours) | reference is |")
    print("|---|---|---|---|---|")
    for name, ours, ref, what in rows:
        print(f"| {name} | {ours:.3f} | {ref:.3f} | {ref / ours:.2f}x | {what} |")
    print(f"| drift after 20 strength changes (max abs) | {ours_drift:.2e} | {ref_drift:.2e} | - | diffusers unfuse+fuse_lora |")


if __name__ == "__main__":
    main()
