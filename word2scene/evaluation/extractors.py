"""Feature extractors for evaluation: a network from a weights file (never downloaded),
its input preparation, and batched feature extraction.

Accepted weight files (.safetensors, or .pth/.pt/.bin read with weights_only=True):
- a scene classifier trained by this project (`word2scene classifier train`);
- torchvision-layout VGG16 (ImageNet or fine-tuned on scene classes, any class count);
- torchvision-layout Inception-v3, or pytorch-fid's FID Inception (1008 classes).
The extractor's `name` (architecture and file) goes into every result computed with it.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..models.weight_files import file_sha256, read_state_dict
from ..errors import InputError
from ..imagery import fit_square
from .backbones import InceptionV3, SceneCNN, VGG16

CLASSIFIER_METADATA_KEY = "word2scene_classifier"
# The scene classifier shipped with the pack (trained on AID with `word2scene classifier train`):
# the feature network evaluations use when none is given, named in every report it makes.
SHIPPED_CLASSIFIER = Path(__file__).resolve().parents[1] / "assets" / "classifier" / "aid-scene-cnn.safetensors"
CROP = "crop"  # shorter side to S (bicubic, antialiased), centre crop: what classifiers train and test on
STRETCH = "stretch"  # the whole image bilinearly to S x S on the tensor: pytorch-fid's FID/KID input
ACCEPTED = ("a classifier trained with `word2scene classifier train`, torchvision-layout VGG16 or Inception-v3 "
            "weights, or pytorch-fid's FID Inception weights (.safetensors, .pth)")


def shipped_classifier() -> Path | None:
    """The shipped scene classifier's file, or None where this copy of the pack has none."""
    return SHIPPED_CLASSIFIER if SHIPPED_CLASSIFIER.is_file() else None


@dataclass
class FeatureExtractor:
    """A network plus what it needs to read images; `classes` when it is a scene classifier."""
    name: str
    network: torch.nn.Module
    arch: str
    classes: list[str] = field(default_factory=list)
    facts: dict = field(default_factory=dict)  # training facts of our classifiers
    source: tuple = ()  # (path, modification time, size) of the file it was read from

    @property
    def input_size(self) -> int:
        return int(self.network.input_size)

    def pixels(self, images: list[Image.Image]) -> torch.Tensor:
        """RGB images -> B x 3 x S x S uint8 at the network's input size (bicubic, antialiased,
        centre-cropped)."""

        array = np.stack([np.asarray(fit_square(im.convert("RGB"), self.input_size)) for im in images])
        return torch.from_numpy(array).permute(0, 3, 1, 2)

    def stretched(self, images: list[Image.Image]) -> torch.Tensor:
        """RGB images -> B x 3 x S x S floats in [0, 1] as pytorch-fid prepares them: each image
        as a float tensor at its own size, bilinearly interpolated to S x S (no antialiasing,
        no crop: the whole scene, its aspect stretched)."""
        out = []
        for im in images:
            x = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
            out.append(torch.nn.functional.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                                                       align_corners=False))
        return torch.cat(out)

    def to_tensor(self, images: list[Image.Image], resize: str = CROP) -> torch.Tensor:
        """RGB images -> B x 3 x S x S, resized (`resize`: CROP or STRETCH) and normalised: the
        network's input."""
        if resize not in (CROP, STRETCH):
            raise ValueError(f"resize {resize!r}; accepted: {CROP}, {STRETCH}")
        return self.normalise(self.pixels(images) if resize == CROP else self.stretched(images))

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """B x 3 x S x S uint8 (or 0-1 float) -> the network's input scale."""
        x = pixels.float() / 255.0 if pixels.dtype == torch.uint8 else pixels.float()
        mean = torch.tensor(self.network.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.network.std).view(1, 3, 1, 1)
        return (x - mean) / std

    @torch.no_grad()
    def features(self, images: list[Image.Image], batch_size: int = 32, device: str = "cpu",
                 resize: str = CROP) -> dict[str, np.ndarray]:
        """{"conv": N x C*49 (GSHPS), "pooled": N x D (FID/KID), "logits": N x classes}, float32
        (the metrics compute in float64). `resize`: CROP (classifiers, GSHPS) or STRETCH
        (FID/KID, as pytorch-fid)."""
        self.network.eval().to(device)
        parts: dict[str, list[np.ndarray]] = {"conv": [], "pooled": [], "logits": []}
        for i in range(0, len(images), batch_size):
            out = self.network.forward_features(self.to_tensor(images[i:i + batch_size], resize).to(device))
            for key in parts:
                parts[key].append(out[key].flatten(1).float().cpu().numpy())
        return {k: np.concatenate(v) for k, v in parts.items()}


def read_weights(path: str | Path, input_name: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """State dict and metadata of a weights file, through the project's one reader
    (models.read_state_dict: pickles only with weights_only=True)."""

    if path is None or not str(path).strip():
        raise InputError(input_name, f"no weights file given; pass {ACCEPTED}. Weights are never downloaded: "
                                     "train a scene classifier offline with `word2scene classifier train DATA --out FILE`")
    path = Path(path)
    if not path.is_file():
        raise InputError(input_name, f"{path} does not exist; pass {ACCEPTED}")
    if path.suffix.lower() not in (".safetensors", ".pth", ".pt", ".bin", ".ckpt"):
        raise InputError(input_name, f"{path.name} has suffix {path.suffix!r}; pass {ACCEPTED}")
    try:
        state, metadata = read_state_dict(path, input_name)
    except InputError as exc:
        raise InputError(input_name, f"{path} cannot be read as weights ({exc.message}); "
                                     f"pass {ACCEPTED}") from None
    return {k.removeprefix("module."): v for k, v in state.items()}, metadata


def build_network(arch: str, num_classes: int, width: int = 32, input_size: int = 112) -> torch.nn.Module:
    if arch == "scene-cnn":
        return SceneCNN(num_classes, width, input_size)
    if arch == "vgg16":
        return VGG16(num_classes)
    if arch in ("inception-v3", "inception-v3-fid"):
        return InceptionV3(num_classes, fid=arch.endswith("fid"))
    raise InputError("arch", f"{arch!r} is not known; accepted: scene-cnn, vgg16, inception-v3")


def detect_arch(state: dict[str, torch.Tensor]) -> tuple[str, int]:
    """(architecture, class count) of a torchvision-layout state dict, or ("", 0)."""
    if "Mixed_5b.branch1x1.conv.weight" in state and "fc.weight" in state:
        n = state["fc.weight"].shape[0]
        return ("inception-v3-fid" if n == 1008 else "inception-v3"), n
    if "features.0.weight" in state and "classifier.6.weight" in state:
        return "vgg16", state["classifier.6.weight"].shape[0]
    return "", 0


_LOADED: OrderedDict = OrderedDict()  # (path, mtime, size) -> FeatureExtractor; the last few files stay loaded
KEEP_LOADED = 3


def load_extractor(path: str | Path | None, input_name: str = "features", cached: bool = True) -> FeatureExtractor:
    """The feature extractor in a weights file (see the module docstring for what is accepted).
    The last few files loaded stay in memory, keyed by path, modification time and size, so a
    node run again (or the protocol) does not read a 500 MB VGG16 again. `cached=False` gives
    a private copy to modify (fine-tuning)."""
    if not cached or path is None or not Path(path).is_file():  # a copy, or the error that says what to pass
        return _read_extractor(path, input_name)
    st = Path(path).stat()
    key = (str(Path(path).resolve()), st.st_mtime_ns, st.st_size)
    if key not in _LOADED:
        _LOADED[key] = _read_extractor(path, input_name)
        while len(_LOADED) > KEEP_LOADED:
            _LOADED.popitem(last=False)
    _LOADED.move_to_end(key)
    return _LOADED[key]


def _read_extractor(path, input_name: str) -> FeatureExtractor:
    state, metadata = read_weights(path, input_name)
    path = Path(path)
    if CLASSIFIER_METADATA_KEY in metadata:
        facts = json.loads(metadata[CLASSIFIER_METADATA_KEY])
        arch, classes = facts["arch"], list(facts["classes"])
        network = build_network(arch, len(classes), facts.get("width", 32), facts.get("input_size", 112))
    else:
        arch, n = detect_arch(state)
        if not arch:
            raise InputError(input_name, f"{path.name} is not a network this project knows (keys such as "
                                         f"{', '.join(list(state)[:3])}); pass {ACCEPTED}")
        facts, classes = {}, []
        network = build_network(arch, n)
        state = {k: v for k, v in state.items() if not k.startswith("AuxLogits.")}
    missing, unexpected = network.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise InputError(input_name, f"{path.name} does not fit {arch}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    st = path.stat()
    name = f"{arch} {network.input_size} px ({path.name}, sha256 {file_sha256(path)[:12]})"
    return FeatureExtractor(name, network.eval(), arch, classes, facts, (str(path.resolve()), st.st_mtime_ns, st.st_size))
