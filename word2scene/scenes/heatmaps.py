"""Cross-attention heat maps (DAAM, Tang et al., ACL 2023): which words drive which pixels.

Capture: at the 16 cross-attention (attn2) sites of SD1.5 only, the probabilities
softmax(QK^T / sqrt(d)) are computed explicitly (self-attention stays on the fused kernel)
and the conditional rows of the guidance batch are summed over heads and steps per layer at
native resolution, as sampling runs. Nothing is stored per step or head.
Aggregation: each layer's map is upsampled (bicubic) to the image size, clamped at zero and
averaged over layers; a word's map is the mean of its sub-token maps. Heat maps are
words x H x W. Two back ends share all of this: a diffusers attention processor (here) and
a ComfyUI attn2 patch (nodes/comfy_bridge.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..prompts.tokens import chunk_tokens, PromptLayout
from ..errors import InputError
from .render import overlay
from .sampling import decode, encode_columns, initial_noise, sample


def layer_shape(height: int, width: int, tokens: int) -> tuple[int, int]:
    """The h x w grid of a UNet layer with `tokens` positions, for a latent of height x width
    (each UNet level halves with rounding up, as its stride-2 convolutions do)."""
    h, w = height, width
    while h * w > tokens and (h > 1 or w > 1):
        h, w = (h + 1) // 2, (w + 1) // 2
    if h * w != tokens:
        raise InputError("model", f"a cross-attention layer has {tokens} positions, which fits no level of a "
                                  f"{height} x {width} latent: not an SD1.5 attn2 layout")
    return h, w


@dataclass
class AttentionCapture:
    """Running sums of cross-attention probabilities: layer -> B x T x h x w (CPU, fp32)."""
    latent_size: tuple[int, int]  # latent h, w
    sums: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)  # layer -> heads x passes added
    enabled: bool = True

    def add(self, layer: str, probs: torch.Tensor) -> None:
        """probs: B x heads x HW x T for the conditional rows only."""
        if not self.enabled:
            return
        batch, heads, positions, tokens = probs.shape
        h, w = layer_shape(*self.latent_size, positions)
        summed = probs.sum(1).transpose(1, 2).reshape(batch, tokens, h, w).to("cpu", torch.float32)
        if layer in self.sums and self.sums[layer].shape == summed.shape:
            self.sums[layer] += summed
        else:
            self.sums[layer] = summed
            self.counts[layer] = 0
        self.counts[layer] += heads

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.sums.values())


def cross_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, capture: AttentionCapture | None,
                    layer: str, cond_rows: torch.Tensor | None) -> torch.Tensor:
    """Cross-attention that records probabilities. q: B x N x (heads*d), k, v: B x T x (heads*d).
    Returns B x N x (heads*d). Rows in `cond_rows` (batch indices) are computed explicitly,
    softmax(QK^T / sqrt(d)) in fp32, and added to `capture`; the other rows use the fused kernel."""
    b, n, inner = q.shape
    d = inner // heads
    qh = q.view(b, n, heads, d).transpose(1, 2)
    kh = k.view(b, -1, heads, d).transpose(1, 2)
    vh = v.view(b, -1, heads, d).transpose(1, 2)
    if capture is None or not capture.enabled or cond_rows is None or not len(cond_rows):
        out = F.scaled_dot_product_attention(qh, kh, vh)
    else:
        cond = cond_rows.to(q.device)
        rest = torch.tensor([i for i in range(b) if i not in set(cond_rows.tolist())], dtype=torch.long, device=q.device)
        out = torch.empty_like(qh)
        if len(rest):
            out[rest] = F.scaled_dot_product_attention(qh[rest], kh[rest], vh[rest])
        logits = qh[cond].float() @ kh[cond].float().transpose(-1, -2)
        probs = torch.softmax(logits.mul_(1.0 / math.sqrt(d)), dim=-1)
        capture.add(layer, probs)
        out[cond] = (probs.to(vh.dtype) @ vh[cond])
    return out.transpose(1, 2).reshape(b, n, inner)


def conditional_rows(cond_or_uncond: list[int], total_rows: int) -> torch.Tensor | None:
    """Rows of the first conditional chunk when a batch stacks equal chunks labelled
    0 (conditional) / 1 (unconditional), as ComfyUI's cond_or_uncond does; None if none."""
    groups = list(cond_or_uncond) or [0]
    if 0 not in groups:
        return None
    b = total_rows // len(groups)
    start = groups.index(0) * b
    return torch.arange(start, start + b)


# --- SD1.5 attn2 sites ------------------------------------------------------------------
def diffusers_sites(unet) -> dict[str, torch.nn.Module]:
    """The 16 cross-attention modules of an SD1.5 diffusers UNet, by name."""
    sites = {name: m for name, m in unet.named_modules() if name.endswith("attn2") and hasattr(m, "to_q")}
    if len(sites) != 16:
        raise InputError("model", f"found {len(sites)} cross-attention (attn2) layers; SD1.5 has 16")
    return sites


class CaptureProcessor:
    """diffusers attention processor for one attn2 site: explicit probabilities, captured."""
    def __init__(self, tracer: "DiffusersTracer", layer: str):
        self.tracer, self.layer = tracer, layer

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        q = attn.to_q(hidden_states)
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        k, v = attn.to_k(context), attn.to_v(context)
        out = cross_attention(q, k, v, attn.heads, self.tracer.capture, self.layer, self.tracer.cond_rows)
        out = attn.to_out[0](out)
        return attn.to_out[1](out)


class DiffusersTracer:
    """`with DiffusersTracer(unet, latent_size) as tracer:` captures every UNet call's
    cross-attention; set `cond_rows` to the batch rows that are conditional."""

    def __init__(self, unet, latent_size: tuple[int, int]):
        self.unet = unet
        self.capture = AttentionCapture(latent_size)
        self.cond_rows: torch.Tensor | None = None
        self._saved = None

    def __enter__(self) -> "DiffusersTracer":
        sites = diffusers_sites(self.unet)
        self._saved = {name: m.processor for name, m in sites.items()}
        for name, m in sites.items():
            m.set_processor(CaptureProcessor(self, name))
        return self

    def __exit__(self, *exc) -> None:
        for name, m in diffusers_sites(self.unet).items():
            m.set_processor(self._saved[name])


# --- aggregation --------------------------------------------------------------------------
@dataclass
class HeatMaps:
    """Captured cross-attention for a batch of images, with the prompt's word layout."""
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

    def word_maps(self, words: list[str] | None = None) -> tuple[list[str], torch.Tensor]:
        """(labels, B x N x H x W) for the requested words or phrases (empty: every content word)."""
        requests = [w.strip() for w in (words or []) if w.strip()] or self.layout.content_words()
        if not requests:
            raise InputError("words", "the prompt has no words to map")
        columns = []
        for request in requests:
            try:
                columns.append(self.layout.resolve(request))
            except (KeyError, ValueError):
                words = ", ".join(dict.fromkeys(w.text for w in self.layout.words))  # each word once, as written
                raise InputError("words", f"{request!r} is not in the prompt; its words are: {words}") from None
        flat = sorted({c for cols in columns for c in cols})
        maps = self.token_maps(flat)
        index = {c: i for i, c in enumerate(flat)}
        out = torch.stack([maps[:, [index[c] for c in cols]].mean(1) for cols in columns], dim=1)
        return requests, out

    def words(self, words: list[str] | None = None, threshold: float = 0.4) -> "WordMaps":
        """The maps of the requested words (empty: every content word), with what derives from them."""
        labels, maps = self.word_maps(words)
        return WordMaps(labels, maps, threshold)


@dataclass
class WordMaps:
    """The word heat maps of one capture, B x words x H x W, and what the node and the CLI
    show of them: normalized maps, masks, per-word scores and overlays."""

    labels: list[str]
    maps: torch.Tensor
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


def parse_timesteps(text: str, input_name: str = "timesteps") -> list[int]:
    """"100, 300, 500" -> [100, 300, 500]: DDPM timesteps, each 0 to 999."""
    try:
        steps = [int(t) for t in str(text).replace(" ", "").split(",") if t]
    except ValueError:
        raise InputError(input_name, f"{text!r}; give integers 0-999 like 100, 300, 500") from None
    if not steps or any(not 0 <= t < 1000 for t in steps):
        raise InputError(input_name, f"{text!r} outside the schedule; use integers 0 to 999")
    return steps


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


# --- standalone runs (diffusers back end) ---------------------------------------------------
def _layout(sd, prompt: str, columns: list[int]) -> PromptLayout:
    return PromptLayout(prompt, columns, sd.tokenizer)


@torch.no_grad()
def generate_with_heatmaps(sd, prompt: str, settings, every: int = 0, words: list[str] | None = None):
    """Sample with capture. Returns (image, HeatMaps, frames): frames are (x0 image,
    normalised word maps) every `every` steps (for the process animation), else empty."""

    settings.check()
    if not prompt.strip():
        raise InputError("prompt", "is empty; give the prompt whose words to map")
    layout = _layout(sd, prompt, chunk_tokens(sd.tokenizer, prompt))
    frames = []
    with DiffusersTracer(sd.unet, (settings.height // 8, settings.width // 8)) as tracer:
        heat = HeatMaps(tracer.capture, layout, (settings.height, settings.width))

        def on_step(step, total, latents, x0):
            heat.passes = step
            if every and (step % every == 0 or step == total):
                labels, maps = heat.word_maps(words)
                frames.append((decode(sd, x0)[0], labels, normalize(maps)[0]))
        latents = sample(sd, prompt, settings, on_step=on_step, tracer=tracer)
    return decode(sd, latents)[0], heat, frames


MIN_EXPLAINED_SIDE = 8  # pixels: one latent cell


def check_explainable(width: int, height: int, input_name: str = "image") -> None:
    """A real image to explain is at least MIN_EXPLAINED_SIDE px a side (the CLI, the library
    and the Explain Image node alike)."""
    if min(width, height) < MIN_EXPLAINED_SIDE:
        raise InputError(input_name, f"{width} x {height} px is too small to explain; "
                                     f"accepted: at least {MIN_EXPLAINED_SIDE} px per side")


@torch.no_grad()
def explain_image(sd, image, prompt: str, timesteps: list[int], seed: int = 0) -> tuple:
    """DAAM on a real image: encode it, noise it at each timestep (fixed seed), run one
    conditional UNet pass each, capture. Returns (the image as used, HeatMaps)."""
    from PIL import Image


    if not prompt.strip():
        raise InputError("prompt", "is empty; give the prompt whose words to map")
    n_train = int(sd.configs["scheduler"].get("num_train_timesteps", 1000))
    bad = [t for t in timesteps if not 0 <= int(t) < n_train]
    if bad or not timesteps:
        raise InputError("timesteps", f"{bad or timesteps} outside the schedule; use integers 0 to {n_train - 1}")
    check_explainable(*image.size)
    image = image.convert("RGB")
    width, height = image.size
    note = None
    if width % 8 or height % 8:
        width, height = max(8, width // 8 * 8), max(8, height // 8 * 8)
        image = image.resize((width, height), Image.BICUBIC)
        note = f"resized to {width} x {height} (a multiple of 8)"
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
    latents = sd.vae.encode(pixels.to(sd.device, sd.vae.dtype)).latent_dist.mean.float() * sd.vae_scale
    from diffusers import DDPMScheduler
    schedule = DDPMScheduler.from_config(sd.configs["scheduler"])
    columns, weights = chunk_tokens(sd.tokenizer, prompt, with_weights=True)
    context = encode_columns(sd, columns, weights).to(sd.unet.dtype)
    layout = _layout(sd, prompt, columns)
    with DiffusersTracer(sd.unet, tuple(latents.shape[-2:])) as tracer:
        tracer.cond_rows = torch.tensor([0])
        for i, t in enumerate(timesteps):
            noise = initial_noise(seed + i, tuple(latents.shape)).to(sd.device)
            t_ = torch.tensor([int(t)])
            noisy = schedule.add_noise(latents.cpu(), noise.cpu(), t_).to(sd.device, sd.unet.dtype)
            sd.unet(noisy, t_.to(sd.device), encoder_hidden_states=context)
        heat = HeatMaps(tracer.capture, layout, (height, width), passes=len(timesteps), note=note)
    return image, heat
