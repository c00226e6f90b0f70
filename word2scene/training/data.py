"""What a concept training reads: the dataset's samples and images (read once, fitted to the
training resolution), and what is encoded from them once for the whole run: each image's
latent distribution per augmentation variant, and each caption's embedding."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..datasets import dataset_hash, load_images, Sample, scan_dataset, training_captions
from ..imagery import dihedral
from ..models.diffusion import pixels_to_tensor
from ..models.sd15 import SD15
from ..scenes.sampling import encode_prompt
from .config import AUGMENTS, TrainConfig


@dataclass
class TrainingData:
    """The dataset as a run reads it."""
    samples: list[Sample]
    arrays: list[np.ndarray]  # per sample: resolution x resolution x 3 uint8 (let go once encoded)
    skipped: list[str]  # unreadable or too small images, with why
    expanded: list[int]  # sample index per slot of an epoch, with repeats
    hash: str  # dataset_hash: changes when the data does


def read_data(dataset, cfg: TrainConfig, kb=None) -> TrainingData:
    """The samples of `dataset` that cfg selects (concepts, split) with their images."""
    samples = scan_dataset(dataset, cfg.concepts or None, cfg.split, kb)
    samples, arrays, bad = load_images(samples, cfg.resolution, cfg.bands, cfg.max_bad_fraction)
    expanded = [i for i, s in enumerate(samples) for _ in range(s.repeats)]
    return TrainingData(samples, arrays, bad, expanded, dataset_hash(samples))


@dataclass
class LatentCache:
    """Per-image latents (mean, std) per augmentation variant and per-caption embeddings."""
    mean: torch.Tensor  # N x V x 4 x h x w
    std: torch.Tensor
    captions: list[list[str]]  # per sample: every training caption it has (one drawn per epoch)
    embeddings: dict  # caption -> 1 x (77 * chunks) x D (frozen text encoder only)


@torch.no_grad()
def build_cache(sd: SD15, samples: list[Sample], arrays: list[np.ndarray], cfg: TrainConfig, device) -> LatentCache:
    """Encode every image once per augmentation variant, and every caption once."""
    variants = AUGMENTS[cfg.augment]
    order = [0, 4] if variants == 2 else list(range(variants))
    means, stds = [], []
    for array in arrays:
        batch = np.stack([dihedral(array, k) for k in order])
        pixels = pixels_to_tensor(batch).to(device, sd.vae.dtype)
        dist = sd.vae.encode(pixels).latent_dist
        means.append(dist.mean.float().cpu())
        stds.append(dist.std.float().cpu())
    captions = [training_captions(cfg.trigger_words, s) for s in samples]
    embeddings = {}
    if not cfg.text_encoder:
        for text in sorted({t for texts in captions for t in texts} | {""}):
            embeddings[text] = encode_prompt(sd, text, weighted=False).cpu()
    return LatentCache(torch.stack(means), torch.stack(stds), captions, embeddings)
