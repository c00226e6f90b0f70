"""Scene classifiers: train one on a labelled image set (offline, on CPU in minutes), use
it as a feature extractor (GSHPS, FID/KID), and measure overall accuracy per class.

The default network is SceneCNN; `arch="vgg16"` with ImageNet `init` weights gives the
paper's "VGG16 fine-tuned on scene classes" for GSHPS (slow on a CPU).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import InputError
from .extractors import CLASSIFIER_METADATA_KEY, FeatureExtractor, build_network, load_extractor
from ..files import atomic_path, check_safetensors
from ..models.weight_files import file_sha256
from .image_sets import LabelledImage, labels, read_images


@dataclass
class ClassifierConfig:
    arch: str = "scene-cnn"  # scene-cnn | vgg16 | inception-v3
    width: int = 32  # scene-cnn channels of the first stage
    input_size: int = 112  # scene-cnn input side in pixels (VGG16: 224, Inception: 299)
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    init: str | None = None  # weights to start from (vgg16/inception: ImageNet weights)
    augment: bool = True  # dihedral: aerial scenes have no canonical up

    def check(self) -> "ClassifierConfig":
        if self.arch not in ("scene-cnn", "vgg16", "inception-v3"):
            raise InputError("arch", f"{self.arch!r}; accepted: scene-cnn, vgg16, inception-v3")
        for name in ("width", "epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise InputError(name, f"{getattr(self, name)} is not accepted; use 1 or more")
        if self.input_size < 32:
            raise InputError("input_size", f"{self.input_size} is not accepted; use 32 or more pixels")
        if not 0 < self.learning_rate < 1:
            raise InputError("learning_rate", f"{self.learning_rate}; use a value in (0, 1), e.g. 2e-3")
        return self


def train_classifier(items: list[LabelledImage], config: ClassifierConfig | None = None, input_name: str = "data",
                     on_epoch: Callable[[int, int, float], None] | None = None,
                     images: list[Image.Image] | None = None, device: str = "cpu") -> FeatureExtractor:
    """Train a scene classifier on labelled images (at least two classes). Images are read
    and resized once; each batch gets one random dihedral transform. on_epoch(epoch,
    epochs, mean_loss); `images` gives the pixels of `items` when already read; `device` is
    where the network trains (the pixels stay on the CPU as uint8). Returns the classifier as a FeatureExtractor (eval mode)."""
    cfg = (config or ClassifierConfig()).check()
    classes = labels(items)
    if len(classes) < 2 or any(not i.label for i in items):
        raise InputError(input_name, f"a classifier needs images in at least two class folders (found "
                                     f"{len(classes)} class(es){'' if all(i.label for i in items) else ' and unlabelled images'})")
    torch.manual_seed(cfg.seed)
    network = build_network(cfg.arch, len(classes), cfg.width, cfg.input_size)
    name = f"{cfg.arch} {int(network.input_size)} px (trained here, {cfg.epochs} epochs)"
    if cfg.init:
        start = load_extractor(cfg.init, "init", cached=False)  # a private copy: fine-tuning changes it
        if start.arch.removesuffix("-fid") != cfg.arch:
            raise InputError("init", f"{cfg.init} holds {start.arch} weights; arch is {cfg.arch}")
        network = start.network
        network.reset_head(len(classes))
        name = (f"{cfg.arch} {int(network.input_size)} px (fine-tuned from {Path(cfg.init).name}, sha256 "
                f"{file_sha256(cfg.init)[:12]}, {cfg.epochs} epochs)")
    facts = {"arch": cfg.arch, "classes": classes, "width": cfg.width, "input_size": int(network.input_size),
             "epochs": cfg.epochs, "images": len(items), "seed": cfg.seed, "init": Path(cfg.init).name if cfg.init else None}
    extractor = FeatureExtractor(name, network, cfg.arch, classes, facts)
    x = extractor.pixels(images if images is not None else read_images(items, input_name))
    y = torch.tensor([classes.index(i.label) for i in items])
    network.to(device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(items) / cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, cfg.learning_rate, total_steps=cfg.epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(cfg.seed)
    network.train()
    for epoch in range(1, cfg.epochs + 1):
        order = torch.randperm(len(items), generator=generator)
        total = 0.0
        for start in range(0, len(items), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            batch = x[idx]
            if cfg.augment:
                k = int(torch.randint(8, (1,), generator=generator))
                batch = torch.rot90(batch, k % 4, dims=(2, 3))
                batch = batch.flip(3) if k >= 4 else batch
            loss = F.cross_entropy(network(extractor.normalise(batch).to(device)), y[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * len(idx)
        if on_epoch is not None:
            on_epoch(epoch, cfg.epochs, total / len(items))
    network.cpu().eval()
    return extractor


@dataclass
class Accuracy:
    overall: float  # fraction of images classified correctly (overall accuracy, OA)
    per_class: dict[str, float]
    images: int
    network: str = ""  # the classifier: architecture, input size, weights file and its sha256

    def as_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def accuracy(extractor: FeatureExtractor, items: list[LabelledImage], input_name: str = "data",
             batch_size: int = 64, device: str = "cpu", images: list[Image.Image] | None = None) -> Accuracy:
    """Overall and per-class accuracy of a classifier on labelled images whose classes it
    knows (`images`: their pixels when already read)."""
    unknown = sorted(set(labels(items)) - set(extractor.classes))
    if unknown or any(not i.label for i in items):
        raise InputError(input_name, f"classes {unknown or ['(unlabelled)']} are not among the classifier's "
                                     f"{extractor.classes}")
    images = images if images is not None else read_images(items, input_name)
    logits = extractor.features(images, batch_size, device)["logits"]
    predicted = [extractor.classes[i] for i in logits.argmax(1)]
    per_class = {}
    for cls in labels(items):
        hits = [p == i.label for p, i in zip(predicted, items) if i.label == cls]
        per_class[cls] = float(np.mean(hits))
    overall = float(np.mean([p == i.label for p, i in zip(predicted, items)]))
    return Accuracy(overall, per_class, len(items), extractor.name)


def save_classifier(extractor: FeatureExtractor, path: str | Path, overwrite: bool = False) -> Path:
    """A .safetensors file with the classes and training facts in its metadata, written atomically."""
    from safetensors.torch import save_file

    path = check_safetensors(path, "a classifier is saved as .safetensors")
    state = {k: v.detach().contiguous().cpu() for k, v in extractor.network.state_dict().items()}
    with atomic_path(path, overwrite=overwrite) as tmp:
        save_file(state, str(tmp), metadata={CLASSIFIER_METADATA_KEY: json.dumps(extractor.facts, ensure_ascii=False)})
    return path
