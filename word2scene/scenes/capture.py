"""Capture, the first step of cross-attention heat maps (DAAM, Tang et al., ACL 2023): at the
16 cross-attention (attn2) sites of SD1.5 only, the probabilities softmax(QK^T / sqrt(d)) are
computed explicitly (self-attention stays on the fused kernel) and the conditional rows of
the guidance batch are summed over heads and passes per layer at native resolution, as
sampling runs. Nothing is stored per step or head. Two back ends add to one AttentionCapture:
DiffusersTracer here, and ComfyUI's attn2 patch (nodes/comfy_bridge/attention.py).
Aggregation into maps: aggregation.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..errors import InputError


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
