"""How much of an RS scene a VAE keeps: reconstruction of the AID test split at 128 px.

Rows (all measured in one run, on the same images):
- thumbnail: a 16 x 16 RGB thumbnail (PIL bicubic with antialias) upsampled bicubically
  to 128 px: 768 numbers per image, against the 16 x 16 x 4 = 1,024 of an SD1.5-layout latent;
- pca-4: a linear code of the latent's size, each 8 x 8 RGB patch kept as its 4 leading
  principal components (fitted on AID train patches);
- one row per checkpoint given (its VAE: encode to the latent mean, decode).

Figures: PSNR in dB with RGB in [0, 1] (mean over images of each image's PSNR), the same on
8 x 8 average-pooled images (colour and layout: what the thumbnail keeps), and the spread of
both as the standard deviation over the two halves of the images (by file name order).
The goal of issue #21: a VAE >= 24 dB and >= 38 dB pooled, i.e. above the thumbnail on both.

Usage:
    python bench/bench_vae.py [CHECKPOINT ...] [--images N] [--out DIR]
(no checkpoint: the shipped Word2Scene-mini). With --out, writes report.md and
reconstructions.png (8 test images above their reconstructions by the last checkpoint).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from word2scene.datasets import load_images, scan_dataset  # noqa: E402
from word2scene.models.sd15 import load_single_file  # noqa: E402
from word2scene.training.base_model import encode_latents  # noqa: E402

AID = ROOT.parent / "shared" / "data" / "aid"
SIZE = 128
POOL = 8


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image PSNR in dB of N x H x W x 3 arrays in [0, 1]."""
    mse = ((a - b) ** 2).reshape(len(a), -1).mean(1)
    return 10 * np.log10(1.0 / np.maximum(mse, 1e-12))


def pooled(x: np.ndarray) -> np.ndarray:
    n, h, w, c = x.shape
    return x.reshape(n, h // POOL, POOL, w // POOL, POOL, c).mean((2, 4))


def thumbnail(images: np.ndarray) -> np.ndarray:
    out = []
    size = images.shape[1]
    for im in images:
        small = Image.fromarray(im).resize((size // 8, size // 8), Image.BICUBIC)
        out.append(np.asarray(small.resize((size, size), Image.BICUBIC)))
    return np.stack(out)


def patches(x: np.ndarray) -> np.ndarray:
    n, size = len(x), x.shape[1]
    return x.reshape(n, size // 8, 8, size // 8, 8, 3).transpose(0, 1, 3, 2, 4, 5).reshape(-1, 192)


def unpatch(p: np.ndarray, n: int, size: int) -> np.ndarray:
    return p.reshape(n, size // 8, size // 8, 8, 8, 3).transpose(0, 1, 3, 2, 4, 5).reshape(n, size, size, 3)


def pca_code(train: np.ndarray, test: np.ndarray, k: int = 4) -> np.ndarray:
    p = patches(train.astype(np.float32) / 255)
    mean = p.mean(0)
    _, _, vt = np.linalg.svd(p - mean, full_matrices=False)
    basis = vt[:k]
    q = patches(test.astype(np.float32) / 255) - mean
    return np.clip(unpatch(q @ basis.T @ basis + mean, len(test), test.shape[1]), 0, 1)


@torch.no_grad()
def vae_reconstruct(checkpoint: str, images: np.ndarray) -> np.ndarray:
    sd = load_single_file(checkpoint)
    mean, _ = encode_latents(sd.vae, images)
    out = []
    for i in range(0, len(mean), 64):
        out.append(sd.vae.decode(mean[i:i + 64]).sample.clamp(-1, 1).add(1).div(2).permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


def figures(real: np.ndarray, recon: np.ndarray) -> dict:
    full, pool = psnr(real, recon), psnr(pooled(real), pooled(recon))
    halves = np.array_split(np.arange(len(real)), 2)
    return {"psnr": full.mean(), "pooled": pool.mean(),
            "psnr_halves": [full[h].mean() for h in halves], "pooled_halves": [pool[h].mean() for h in halves]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="*", help="checkpoints whose VAE to measure (default: the shipped mini)")
    ap.add_argument("--images", type=int, default=0, help="test images (0 = the whole AID test split)")
    ap.add_argument("--out", type=Path, help="folder for report.md and reconstructions.png")
    ap.add_argument("--dataset", type=Path, default=AID, help="captions.jsonl dataset with train and test splits")
    ap.add_argument("--size", type=int, default=SIZE, help="image side in pixels (a multiple of 8)")
    args = ap.parse_args()
    checkpoints = args.checkpoints or [str(ROOT / "word2scene/assets/mini/word2scene-mini.safetensors")]
    test = scan_dataset(args.dataset, split="test")
    test = sorted(test, key=lambda s: str(s.image))
    if args.images:
        test = test[:: max(1, len(test) // args.images)][: args.images]
    _, arrays, _ = load_images(test, args.size)
    real_u8 = np.stack(arrays)
    real = real_u8.astype(np.float32) / 255
    train = scan_dataset(args.dataset, split="train")
    _, train_arrays, _ = load_images(train[::8] if len(train) > 64 else train, args.size)
    rows = {}
    t = time.perf_counter()
    rows["thumbnail 16x16 + bicubic"] = (figures(real, thumbnail(real_u8).astype(np.float32) / 255), time.perf_counter() - t)
    t = time.perf_counter()
    rows["pca-4 per 8x8 patch"] = (figures(real, pca_code(np.stack(train_arrays), real_u8)), time.perf_counter() - t)
    recon = None
    for ck in checkpoints:
        t = time.perf_counter()
        recon = vae_reconstruct(ck, real_u8)
        rows[f"VAE of {Path(ck).name}"] = (figures(real, recon), time.perf_counter() - t)
    base = rows["thumbnail 16x16 + bicubic"][0]
    lines = [f"{args.dataset.name} test split, {len(real)} images at {args.size} px (PSNR in dB, RGB in [0, 1]; pooled = 8 x 8 average "
             "pooling of both images; halves = the images split in two by file name)", "",
             "| row | PSNR | pooled PSNR | PSNR halves | pooled halves | vs thumbnail (dB) | seconds |",
             "|---|---|---|---|---|---|---|"]
    for name, (f, secs) in rows.items():
        lines.append(f"| {name} | {f['psnr']:.2f} | {f['pooled']:.2f} | {f['psnr_halves'][0]:.2f} / "
                     f"{f['psnr_halves'][1]:.2f} | {f['pooled_halves'][0]:.2f} / {f['pooled_halves'][1]:.2f} | "
                     f"{f['psnr'] - base['psnr']:+.2f} / {f['pooled'] - base['pooled']:+.2f} | {secs:.1f} |")
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "report.md").write_text(report + "\n")
        pick = np.linspace(0, len(real) - 1, 8).astype(int)
        top = np.concatenate(list(real_u8[pick]), axis=1)
        bottom = np.concatenate(list((recon[pick] * 255 + 0.5).astype(np.uint8)), axis=1)
        Image.fromarray(np.concatenate([top, bottom], axis=0)).save(args.out / "reconstructions.png")


if __name__ == "__main__":
    main()
