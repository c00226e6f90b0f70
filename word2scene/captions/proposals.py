"""The machine half of hybrid intelligence, per image, at the paper's three levels:

- element tags: a multi-label tagger trained from scratch (a linear head on the scene
  classifier's pooled features) on the element phrases mined from captioned images' captions,
  cleaned against the knowledge base (no tag the scene's concept lists as a negative);
- relation sentences: the captions of the nearest captioned images in the scene classifier's
  feature space (cosine), or a local Hugging Face image-to-text model folder when given;
- the scene class: the scene classifier's prediction.

Each proposal carries its source and a confidence (tagger probability, cosine similarity,
classifier probability, or the captioner's mean token probability).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..datasets import concept_word, Sample, scan_dataset
from ..errors import InputError
from ..evaluation.extractors import FeatureExtractor, load_extractor
from ..imagery import IMAGE_SUFFIXES, open_image
from ..models.weight_files import file_sha256
from ..prompts.mining import element_phrases, mine
from ..settings import check_ranges, option

CHUNK = 64  # images read and encoded at a time: a dataset never sits in memory as pixels


@dataclass
class Proposal:
    text: str
    source: str  # "tagger", "neighbour <file>", "classifier <network>", "captioner <folder>"
    confidence: float


@dataclass
class ImageProposals:
    file: str  # relative to the dataset folder, with '/'
    sha256: str  # of the image file when proposed: a review of changed images is refused
    label: str  # the dataset's own class for the image ("" when it has none)
    scene: Proposal
    tags: list[Proposal] = field(default_factory=list)
    sentences: list[Proposal] = field(default_factory=list)


@dataclass
class ProposalSettings:
    """How proposals are made; the numbers state their accepted ranges (settings.option)."""
    classifier: str  # a scene classifier from `classifier train` (its classes are the scene level)
    captioned: str | None = None  # where the tagger and the neighbours learn (default: the dataset itself)
    split: str | None = None  # rows of the dataset's captions.jsonl to propose for (None: all)
    tags: int = option(6, min=1, max=1000, help="tags proposed per image at most")
    tag_threshold: float = option(0.5, min=0.0, max=1.0, help="tagger probability a tag needs")
    vocabulary: int = option(12, min=1, max=10_000, help="mined element phrases per class in the tag vocabulary")
    sentences: int = option(2, min=0, max=100, help="sentences proposed per image (one per nearest neighbour)")
    tagger_epochs: int = option(300, min=1, max=100_000, help="epochs of the tagger")
    seed: int = option(0, min=0, max=2**32 - 1, help="seed of the tagger's training")
    captioner: str | None = None  # a local transformers image-to-text folder: adds its sentence
    batch_size: int = option(32, min=1, max=4096, help="images encoded at a time")
    device: str = "cpu"

    def check(self, input_names: dict[str, str] | None = None) -> "ProposalSettings":
        """Ranges as the fields state them; errors name `input_names[field]` where given."""
        check_ranges(self, input_names)
        return self


def scene_classifier(path: str, input_name: str = "classifier") -> FeatureExtractor:
    x = load_extractor(path, input_name)
    if not x.classes:
        raise InputError(input_name, f"{path} is {x.arch} without scene classes; give a classifier trained with "
                                     "`python -m word2scene classifier train`")
    return x


def encode(x: FeatureExtractor, samples: list[Sample], s: ProposalSettings, input_name: str) -> dict[str, np.ndarray]:
    """Pooled features (N x D) and class probabilities (N x classes) of the samples' images,
    read CHUNK at a time with the training reader."""
    pooled, probs = [], []
    for i in range(0, len(samples), CHUNK):
        images = [open_image(sample.image, input_name) for sample in samples[i:i + CHUNK]]
        out = x.features(images, s.batch_size, s.device)
        pooled.append(out["pooled"])
        probs.append(torch.softmax(torch.from_numpy(out["logits"]), dim=1).numpy())
    return {"pooled": np.concatenate(pooled), "probs": np.concatenate(probs)}


def tag_vocabulary(samples: list[Sample], per_class: int) -> list[str]:
    """The tagger's tags: the top mined element phrases of each class's captions."""
    by_class: dict[str, list[str]] = {}
    for sample in samples:
        by_class.setdefault(sample.concept, []).extend(sample.captions)
    mined = mine(by_class, top=per_class)
    return sorted({p.text for phrases in mined.values() for p in phrases if p.kind == "element"})


def tag_labels(samples: list[Sample], vocabulary: list[str]) -> np.ndarray:
    """N x V: 1 where a tag is an element phrase of any of the image's captions."""
    index = {t: j for j, t in enumerate(vocabulary)}
    y = np.zeros((len(samples), len(vocabulary)), np.float32)
    for i, sample in enumerate(samples):
        for caption in sample.captions:
            for phrase in element_phrases(caption):
                if phrase in index:
                    y[i, index[phrase]] = 1.0
    return y


@dataclass
class Tagger:
    """A linear multi-label head on standardised features, trained from scratch."""
    vocabulary: list[str]
    mean: torch.Tensor
    std: torch.Tensor
    head: torch.nn.Linear

    @torch.no_grad()
    def probabilities(self, features: np.ndarray) -> np.ndarray:
        x = (torch.from_numpy(features).float() - self.mean) / self.std
        return torch.sigmoid(self.head(x)).numpy()


def tagger_features(encoded: dict[str, np.ndarray]) -> np.ndarray:
    """What the tagger reads: the classifier's pooled features and its class log-probabilities
    (N x (D + classes)); the posterior alone carries most of what a scene's tags are."""
    return np.hstack([encoded["pooled"], np.log(encoded["probs"] + 1e-6)]).astype(np.float32)


def train_tagger(features: np.ndarray, labels: np.ndarray, vocabulary: list[str], epochs: int = 300,
                 seed: int = 0) -> Tagger:
    """Binary cross-entropy on full batches (AdamW, weight decay 1e-3), seeded. Unweighted:
    weighting rare positives up made every tag likely (measured: F1 0.49 against 0.56)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(features).float()
    y = torch.from_numpy(labels)
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    x = (x - mean) / std
    head = torch.nn.Linear(x.shape[1], y.shape[1])
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=gen) * 0.01)
        head.bias.zero_()
    optimizer = torch.optim.AdamW(head.parameters(), lr=0.01, weight_decay=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    with torch.enable_grad():
        for _ in range(epochs):
            optimizer.zero_grad()
            loss_fn(head(x), y).backward()
            optimizer.step()
    return Tagger(vocabulary, mean, std, head.eval())


def _words(text: str) -> set[str]:
    return {w.rstrip("s") for w in re.findall(r"[a-z]+", text.lower())}


def contradicts(tag: str, negatives: list[str]) -> bool:
    """A tag contradicts a scene when it shares a word with one of the scene's negatives
    (singular and plural alike): "buildings" in a desert, "ocean" at an airport."""
    words = _words(tag)
    return any(words & _words(n) for n in negatives)


class NeighbourCaptioner:
    """Sentences from the nearest captioned images (cosine on the classifier's features)."""

    def __init__(self, features: np.ndarray, samples: list[Sample], files: list[str]):
        norms = np.linalg.norm(features, axis=1, keepdims=True).clip(1e-12)
        self.unit, self.samples, self.files = features / norms, samples, files

    def sentences(self, feature: np.ndarray, exclude: str, count: int) -> list[Proposal]:
        similarity = self.unit @ (feature / max(float(np.linalg.norm(feature)), 1e-12))
        out, seen = [], set()
        for j in np.argsort(-similarity, kind="stable"):
            if self.files[j] == exclude:
                continue
            text = self.samples[j].captions[0]
            if text in seen:
                continue
            seen.add(text)
            out.append(Proposal(text, f"neighbour {self.files[j]}", round(float(similarity[j]), 4)))
            if len(out) == count:
                break
        return out


class ModelCaptioner:
    """A local transformers image-to-text model folder (BLIP, GIT, VisionEncoderDecoder...):
    one sentence per image, confidence = its mean token probability. Nothing is downloaded."""

    def __init__(self, folder: str, device: str = "cpu"):
        from transformers import AutoProcessor
        try:  # transformers 5 names image-to-text models so; 4.x called them Vision2Seq
            from transformers import AutoModelForImageTextToText as AutoModel
        except ImportError:
            from transformers import AutoModelForVision2Seq as AutoModel

        path = Path(folder)
        if not (path / "config.json").is_file():
            raise InputError("captioner", f"{folder} is not a model folder (no config.json); give a folder saved "
                                          "with save_pretrained, with its processor")
        self.name = path.name
        self.processor = AutoProcessor.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).to(device).eval()
        self.device = device

    @torch.no_grad()
    def sentence(self, image) -> Proposal | None:
        inputs = self.processor(images=image, return_tensors="pt").to(self.device)
        out = self.model.generate(**inputs, max_new_tokens=30, do_sample=False, output_scores=True,
                                  return_dict_in_generate=True)
        scores = self.model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
        text = " ".join(self.processor.batch_decode(out.sequences, skip_special_tokens=True)[0].split())
        if not text:  # nothing but special tokens: no proposal
            return None
        return Proposal(text, f"captioner {self.name}", round(float(torch.exp(scores[0].mean())), 4))


def dataset_samples(root: Path, split: str | None, kb=None, input_name: str = "dataset") -> list[Sample]:
    """The images of a dataset in any layout training reads, and of a plain folder of
    uncaptioned, unlabelled images (concept ""). Errors name `input_name`."""
    if not root.is_dir():
        raise InputError(input_name, f"{root} is not a folder")
    if (root / "captions.jsonl").is_file() or any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir()):
        return scan_dataset(root, split=split, kb=kb, input_name=input_name)
    images = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise InputError(input_name, f"{root} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return [Sample(p, "") for p in images]


def _relative(sample: Sample, root: Path) -> str:
    return sample.image.resolve().relative_to(root.resolve()).as_posix()


def propose(dataset: str | Path, settings: ProposalSettings, kb=None,
            on_progress: Callable[[int, int], None] | None = None) -> tuple[list[ImageProposals], dict]:
    """Proposals for every image of `dataset`; returns them and facts for the review file
    (the classifier, the tag vocabulary, where the tagger and neighbours learned)."""
    settings.check()
    root = Path(dataset)
    samples = dataset_samples(root, settings.split, kb)
    classifier = scene_classifier(settings.classifier)
    source_root = Path(settings.captioned) if settings.captioned else root
    learned_from = dataset_samples(source_root, None, kb, "captioned") if settings.captioned else samples
    captioned = [c for c in learned_from if c.captions]
    if not captioned:
        raise InputError("captioned", f"{source_root} has no captioned images to learn tags and sentences from; "
                                      "give a captioned dataset (e.g. shared/data/aid) with --from")
    captioned_files = [_relative(c, source_root) for c in captioned]
    known = encode(classifier, captioned, settings, "captioned")
    vocabulary = tag_vocabulary(captioned, settings.vocabulary)
    tagger = train_tagger(tagger_features(known), tag_labels(captioned, vocabulary), vocabulary,
                          settings.tagger_epochs, settings.seed)
    neighbours = NeighbourCaptioner(known["pooled"], captioned, captioned_files)
    model = ModelCaptioner(settings.captioner, settings.device) if settings.captioner else None
    same = source_root.resolve() == root.resolve()
    result = []
    for start in range(0, len(samples), CHUNK):
        chunk = samples[start:start + CHUNK]
        feats = encode(classifier, chunk, settings, "dataset")
        tag_probs = tagger.probabilities(tagger_features(feats))
        for i, sample in enumerate(chunk):
            file = _relative(sample, root)
            k = int(feats["probs"][i].argmax())
            scene_word = concept_word(classifier.classes[k], kb)
            scene = Proposal(scene_word, f"classifier {classifier.name}", round(float(feats["probs"][i, k]), 4))
            concept = kb.find(scene_word) if kb is not None else None
            negatives = kb[concept].negatives if concept else []
            order = np.argsort(-tag_probs[i], kind="stable")
            tags = [Proposal(vocabulary[j], "tagger", round(float(tag_probs[i, j]), 4)) for j in order
                    if tag_probs[i, j] >= settings.tag_threshold and not contradicts(vocabulary[j], negatives)]
            sentences = neighbours.sentences(feats["pooled"][i], file if same else "", settings.sentences)
            if model is not None and (generated := model.sentence(open_image(sample.image, "dataset"))):
                sentences.insert(0, generated)
            result.append(ImageProposals(file, file_sha256(sample.image), sample.concept, scene, tags[:settings.tags],
                                         sentences))
        if on_progress is not None:
            on_progress(min(start + CHUNK, len(samples)), len(samples))
    facts = {"classifier": classifier.name, "captioned_from": str(source_root), "captioned_images": len(captioned),
             "vocabulary": vocabulary, "captioner": str(settings.captioner or "")}
    return result, facts
