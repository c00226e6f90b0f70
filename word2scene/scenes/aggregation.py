"""Aggregation, the second step of cross-attention heat maps: from an AttentionCapture and the
prompt's word layout to maps. Each layer's sums are averaged over heads and passes, upsampled
(bicubic) to the image size, clamped at zero and averaged over layers; a word's map is the
mean of its sub-token maps. One noun per step: HeatMaps (all that was captured, token maps
B x tokens x H x W) and WordMaps (the requested words' maps, B x words x H x W, with their
masks, scores and overlays).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..prompts.tokens import PromptLayout
from .capture import AttentionCapture
from .render import overlay


@dataclass
class HeatMaps:
    """Captured cross-attention for a batch of images, with the prompt's word layout: token
    maps on request, and the word maps of `words(...)`."""
    capture: AttentionCapture
    layout: PromptLayout
    image_size: tuple[int, int]  # pixels H, W
    passes: int = 0  # UNet passes captured (sampling steps, or explained timesteps)
    note: str | None = None  # e.g. how an explained image was resized

    @property
    def batch(self) -> int:
        return next(iter(self.capture.sums.values())).shape[0] if self.capture.sums else 0

    def token_maps(self, columns: list[int]) -> torch.Tensor:
        """B x len(columns) x H x W: per layer mean over heads and passes, upsampled bicubic,
        clamped at zero, averaged over layers."""
        if not self.capture.sums:
            raise InputError("heatmaps", "no cross-attention was captured")
        total = None
        for layer, sums in self.capture.sums.items():
            if max(columns) >= sums.shape[1]:
                raise InputError("words", f"token column {max(columns)} is past the {sums.shape[1]} columns captured")
            maps = sums[:, columns] / self.capture.counts[layer]
            up = F.interpolate(maps, size=self.image_size, mode="bicubic", align_corners=False).clamp_(min=0)
            total = up if total is None else total + up
        return total / len(self.capture.sums)

    def words(self, words: list[str] | None = None, threshold: float = 0.4) -> "WordMaps":
        """The maps of the requested words or phrases (empty: every content word), each the
        mean of its sub-token maps, with what derives from them (masks at `threshold`)."""
        requests = [w.strip() for w in (words or []) if w.strip()] or self.layout.content_words()
        if not requests:
            raise InputError("words", "the prompt has no words to map")
        columns = []
        for request in requests:
            try:
                columns.append(self.layout.resolve(request))
            except (KeyError, ValueError):
                known = ", ".join(dict.fromkeys(w.text for w in self.layout.words))  # each word once, as written
                raise InputError("words", f"{request!r} is not in the prompt; its words are: {known}") from None
        flat = sorted({c for cols in columns for c in cols})
        maps = self.token_maps(flat)
        index = {c: i for i, c in enumerate(flat)}
        out = torch.stack([maps[:, [index[c] for c in cols]].mean(1) for cols in columns], dim=1)
        return WordMaps(requests, out, threshold)


@dataclass
class WordMaps:
    """The word heat maps of one capture, B x words x H x W, and what the node and the CLI
    show of them: normalized maps, masks, per-word scores and overlays."""

    labels: list[str]
    maps: torch.Tensor  # B x words x H x W
    threshold: float = 0.4

    def normalized(self) -> torch.Tensor:
        return normalize(self.maps)

    def masks(self) -> torch.Tensor:
        return masks(self.maps, self.threshold)

    def scores(self) -> list[dict]:
        return word_scores(self.labels, self.maps, self.threshold)

    def score_lines(self) -> list[str]:
        return [f"image {s['image']} {s['word']}: mean {s['mean']:.5f}, peak {s['peak']:.5f}, area {s['area']:.1%}"
                for s in self.scores()]

    def overlays(self, images: list) -> list:
        """Per image, per word: the normalized map over the image (a batch of maps pairs
        with the images one to one; a single map serves every image)."""
        if self.maps.shape[0] not in (1, len(images)):
            raise InputError("image", f"{len(images)} images for heat maps of a batch of {self.maps.shape[0]}")
        shown = self.normalized()
        return [overlay(image, shown[i if self.maps.shape[0] > 1 else 0, k], label)
                for i, image in enumerate(images) for k, label in enumerate(self.labels)]


def normalize(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each map (last two dims) to 0-1 for display."""
    lo = maps.amin(dim=(-2, -1), keepdim=True)
    hi = maps.amax(dim=(-2, -1), keepdim=True)
    return (maps - lo) / (hi - lo).clamp_min(1e-12)


def masks(maps: torch.Tensor, threshold: float = 0.4) -> torch.Tensor:
    """Binary masks: normalised map >= threshold (DAAM's 0.4 by default)."""
    if not 0.0 <= threshold <= 1.0:
        raise InputError("threshold", f"{threshold} is not accepted; use 0 to 1")
    return (normalize(maps) >= threshold).float()


def word_scores(labels: list[str], maps: torch.Tensor, threshold: float = 0.4) -> list[dict]:
    """Per word (first image of the batch is index 0): mean and peak attention, and the
    fraction of the image its mask covers."""
    out = []
    m = masks(maps, threshold)
    for b in range(maps.shape[0]):
        for i, label in enumerate(labels):
            out.append({"image": b, "word": label, "mean": round(float(maps[b, i].mean()), 6),
                        "peak": round(float(maps[b, i].max()), 6), "area": round(float(m[b, i].mean()), 4)})
    return out
