"""GPU benchmark of concept training: an SD1.5-shaped model (random weights) at 512 px.

Prints images/s and model FLOP utilisation (FLOPs counted, bench/flops.py) against the GPU's
measured bf16 matmul peak and its datasheet peak (H200: ~790 TFLOP/s dense bf16). Finishes
within 10 minutes on one GPU.

Usage (on a GPU machine): python bench/gpu_train_bench.py [--steps 40] [--batch 4] [--resolution 512]
Smoke run anywhere (the test suite does this): --device cpu --model tiny --resolution 64 ...

The lent H200 machine's Python (3.12, torch 2.11, transformers, peft, accelerate) has no
diffusers: carry its wheel and importlib_metadata's (README, Benchmarks).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data" / "rs_scenes"
from flops import matmul_peak, unet_step_tflop  # noqa: E402  (bench/flops.py)


def dataset(folder: Path, n: int = 32) -> Path:
    (folder / "airport").mkdir(parents=True)
    rows = []
    if (SHARED / "captions.jsonl").is_file():
        rows = [json.loads(l) for l in (SHARED / "captions.jsonl").read_text().splitlines()]
        rows = [r for r in rows if r["class"] == "airport"][:n]
        for r in rows:
            shutil.copy(SHARED / r["file"], folder / r["file"])
    else:  # synthetic stand-ins when shared/ is absent
        rng = np.random.default_rng(0)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (512, 512, 3), dtype=np.uint8)).save(folder / "airport" / f"{i:03d}.png")
            rows.append({"file": f"airport/{i:03d}.png", "class": "airport", "caption": "an airport", "split": "train"})
    (folder / "captions.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return folder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--resolution", type=int, default=512)
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--device", default="cuda", help="cuda (the benchmark) or cpu (a smoke run)")
    ap.add_argument("--model", default="sd15", choices=("sd15", "tiny"), help="random full-size SD1.5, or the tiny model")
    args = ap.parse_args()
    kind = torch.device(args.device).type
    cuda = kind == "cuda"
    if cuda and not torch.cuda.is_available():
        sys.exit("no CUDA device: this benchmark needs a GPU (or --device cpu --model tiny for a smoke run)")
    from word2scene.models.sd15 import build_random, build_tiny, sd15_configs
    from word2scene.training.lora import TrainConfig, train

    work = Path(tempfile.mkdtemp())
    data = dataset(work / "data")
    sd = build_random(sd15_configs(), seed=0, name="sd15-random") if args.model == "sd15" else build_tiny()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    times: list[float] = []

    def on_progress(p):
        sync()
        times.append(time.perf_counter())

    cfg = TrainConfig(steps=args.steps, batch_size=args.batch, resolution=args.resolution, rank=16, alpha=16.0,
                      mixed_precision="bf16", gradient_checkpointing=args.gradient_checkpointing, augment="flip")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    train(sd, data, work / "gpu.safetensors", cfg, device=args.device, on_progress=on_progress)
    steady = times[args.warmup:]
    step_s = (steady[-1] - steady[0]) / (len(steady) - 1)
    images_s = args.batch / step_s
    sd.unet.disable_gradient_checkpointing()  # MFU counts model FLOPs, not recomputation
    with torch.autocast(kind, dtype=torch.bfloat16):  # the trained UNet, LoRA in place
        achieved = unet_step_tflop(sd.unet, args.resolution, args.batch) / step_s
    peak = matmul_peak(torch.bfloat16, args.device)
    name = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"\n{name}, torch {torch.__version__}, {args.model}, bf16 autocast, batch {args.batch}, "
          f"{args.resolution} px, rank 16, attention modules\n")
    print("| measurement | value |")
    print("|---|---|")
    print(f"| step time (s) | {step_s:.3f} |")
    print(f"| images/s | {images_s:.2f} |")
    print(f"| achieved model TFLOP/s | {achieved:.4g} |")
    print(f"| measured bf16 matmul peak (TFLOP/s) | {peak:.4g} |")
    print(f"| MFU vs measured peak | {achieved / peak:.1%} |")
    if cuda:
        print(f"| MFU vs 790 TFLOP/s (H200 datasheet) | {achieved / 790:.1%} |")
        print(f"| peak GPU memory (GiB) | {torch.cuda.max_memory_allocated() / 1024**3:.2f} |")


if __name__ == "__main__":
    main()
