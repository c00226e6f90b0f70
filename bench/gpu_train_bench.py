"""GPU benchmark of concept training: an SD1.5-shaped model (random weights) at 512 px.

Prints images/s and model FLOP utilisation (FLOPs counted, bench/flops.py) against the GPU's
measured bf16 matmul peak and its datasheet peak (H200: ~790 TFLOP/s dense bf16). Finishes within 10 minutes on one GPU.
Usage (on a GPU machine): python bench/gpu_train_bench.py [--steps 40] [--batch 4] [--resolution 512]
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
from flops import unet_step_tflop  # noqa: E402  (bench/flops.py)


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


def bf16_peak() -> float:
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(20):
        a @ b
    torch.cuda.synchronize()
    return 20 * 2 * 8192**3 / (time.perf_counter() - t) / 1e12


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--resolution", type=int, default=512)
    ap.add_argument("--gradient-checkpointing", action="store_true")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device: this benchmark needs a GPU")
    from word2scene.models import build_random, sd15_configs
    from word2scene.training import TrainConfig, train

    work = Path(tempfile.mkdtemp())
    data = dataset(work / "data")
    sd = build_random(sd15_configs(), seed=0, name="sd15-random")
    times: list[float] = []

    def on_progress(p):
        torch.cuda.synchronize()
        times.append(time.perf_counter())

    cfg = TrainConfig(steps=args.steps, batch_size=args.batch, resolution=args.resolution, rank=16, alpha=16.0,
                      mixed_precision="bf16", gradient_checkpointing=args.gradient_checkpointing, augment="flip")
    torch.cuda.reset_peak_memory_stats()
    train(sd, data, work / "gpu.safetensors", cfg, device="cuda", on_progress=on_progress)
    steady = times[args.warmup:]
    step_s = (steady[-1] - steady[0]) / (len(steady) - 1)
    images_s = args.batch / step_s
    sd.unet.disable_gradient_checkpointing()  # MFU counts model FLOPs, not recomputation
    with torch.autocast("cuda", dtype=torch.bfloat16):  # model FLOPs of the trained UNet (LoRA in place), counted
        achieved = unet_step_tflop(sd.unet, args.resolution, args.batch) / step_s
    peak = bf16_peak()
    print(f"\n{torch.cuda.get_device_name()}, torch {torch.__version__}, bf16 autocast, batch {args.batch}, "
          f"{args.resolution} px, rank 16, attention modules\n")
    print("| measurement | value |")
    print("|---|---|")
    print(f"| step time (s) | {step_s:.3f} |")
    print(f"| images/s | {images_s:.2f} |")
    print(f"| achieved model TFLOP/s | {achieved:.1f} |")
    print(f"| measured bf16 matmul peak (TFLOP/s) | {peak:.1f} |")
    print(f"| MFU vs measured peak | {achieved / peak:.1%} |")
    print(f"| MFU vs 790 TFLOP/s (H200 datasheet) | {achieved / 790:.1%} |")
    print(f"| peak GPU memory (GiB) | {torch.cuda.max_memory_allocated() / 1024**3:.2f} |")


if __name__ == "__main__":
    main()
