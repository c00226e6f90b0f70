"""Word2Scene-mini: a small SD1.5-shaped base model trained here from scratch.

The paper starts from SD1.5, which knew the scene words but drew them in another look
(oblique, computer-graphics); its LoRA turned them into top-down RS scenes. Real SD1.5
weights cannot be had offline, so this module trains that starting point in miniature:
the base sees every class of a scene dataset, but only in a shifted look (an "old aerial
photograph": grayscale, low contrast, blurred) and never with the trigger words. The
concept LoRA trained afterwards with `train` on true-colour images then has the paper's
job: move the look, keep the content.

Two phases, one resumable run: the VAE is fitted to the images (both looks: an
autoencoder is look-agnostic), then the UNet learns the epsilon objective on the shifted
look's cached latents, and the text encoder learns with it (captions from a few templates
around the class word, so the class word is found in any context). A random text encoder
left frozen gives the 30 class words nearly the same encoding (cosine 0.96), and the UNet
learned to ignore the text (measured: every word drew the same scene). Every random draw of
step k comes from (seed, phase, k), so a resumed run ends with the same weights. `init`
starts from an earlier checkpoint's weights instead of random ones (a second stage).
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter

from ..datasets import dataset_hash, load_images, scan_dataset
from ..imagery import dihedral
from ..errors import InputError
from ..files import atomic_path, check_output, check_safetensors, check_writable, output_lock, save_or_keep
from ..models.diffusion import epsilon_loss, pixels_to_tensor, use_fast_attention
from ..models.sd15 import (PRETRAIN_METADATA_KEY, SD15, build_random, load_single_file, mini_configs,
                           save_single_file, tiny_configs)
from ..models.weight_files import file_sha256
from ..prompts.tokens import chunk_tokens
from ..settings import SPLIT, check_ranges, option
from .draws import seeded_generator
from .states import check_base, check_resumable, check_within, prune_states, read_state, TrainingInterrupted

# The shifted look and its captions. None of these words is a trigger word ("gs",
# "geographic scene"): the base must not know them, as SD1.5 did not.
LOOK_TEMPLATES = ("an old aerial photograph of {}", "{}, old aerial photograph", "a grayscale aerial photo of {}",
                  "a blurry archival photo showing {}", "{}")
STATE_FORMAT = "word2scene-pretrain-state"
LOOK_CONTRAST = 0.55
LOOK_BLUR_RADIUS = 1.2  # pixels at 128 px
PRECISIONS = ("fp32", "bf16")


def old_photo(image: Image.Image) -> Image.Image:
    """The base model's look: luminance only, contrast pulled towards mid-grey, a soft blur.
    Deterministic; any RGB image in, RGB out (three equal bands)."""
    grey = np.asarray(image.convert("L"), dtype=np.float32)
    grey = 128.0 + (grey - 128.0) * LOOK_CONTRAST
    out = Image.fromarray(np.clip(grey + 0.5, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(LOOK_BLUR_RADIUS))
    return out.convert("RGB")


def look_caption(concept: str, template: int) -> str:
    return LOOK_TEMPLATES[template % len(LOOK_TEMPLATES)].format(concept)


@dataclass
class PretrainConfig:
    """Everything that defines a pretraining run (saved in states and the checkpoint); the
    `pretrain` command's options are derived from these fields (settings.py)."""

    model: str = option("mini", choices=("mini", "tiny"), help="architecture: mini (the shipped model's widths) or "
                                                                "tiny (the test model's, for quick runs)")
    vae_steps: int = option(1000, min=0, max=1_000_000, help="VAE fitting steps (random crops of both looks)")
    unet_steps: int = option(1200, flag="--steps", min=0, max=10_000_000, help="UNet steps")
    batch_size: int = option(32, flag="--batch", min=1, max=4096, help="UNet batch size")
    vae_batch_size: int = option(16, flag="--vae-batch", min=1, max=4096, help="VAE batch size (crops)")
    learning_rate: float = option(5e-4, flag="--lr", min=1e-7, max=0.1, help="UNet AdamW learning rate")
    text_learning_rate: float = option(5e-4, flag="--text-lr", min=0.0, max=0.1,
                                       help="text encoder AdamW learning rate (trained with the UNet); 0 = frozen "
                                            "random text encoder")
    text_token_scale: float = option(1.0, min=0.01, max=1000.0,
                                     help="multiply the text encoder's token embeddings by this when the run starts "
                                          "(not on resume): a random encoder's tiny embeddings (std 0.02) are "
                                          "averaged away by its layers, and the class words come out nearly the "
                                          "same (cosine of the class word's column 0.96 at 1, 0.42 at 20)")
    vae_learning_rate: float = option(1e-3, flag="--vae-lr", min=1e-7, max=0.1, help="VAE AdamW learning rate")
    warmup_steps: int = option(100, flag="--warmup", min=0, max=1_000_000, help="linear warm-up steps of each phase")
    resolution: int = option(128, min=64, max=4096, help="image side in pixels, a multiple of 64")
    vae_crop: int = option(48, min=8, max=4096, help="VAE crop side in pixels (the VAE is convolutional: "
                                                     "fitting on crops is cheaper per image)")
    vae_shifted_fraction: float = option(0.1, min=0.0, max=1.0, help="fraction of VAE crops in the shifted look "
                                                                      "(the rest true colour)")
    chroma_weight: float = option(20.0, min=0.0, max=100.0, help="extra L1 weight on colour (each pixel minus its "
                                                                "grey, averaged over 4 x 4 pixels): AID's muted "
                                                                "colours are otherwise lost first")
    pooled_weight: float = option(10.0, min=0.0, max=1000.0,
                                  help="extra L1 weight on the image averaged over 8 x 8 pixels (colour and layout, "
                                       "what one latent pixel stands for)")
    kl_weight: float = option(1e-6, min=0.0, max=1.0, help="weight of the VAE's KL term")
    latent_code_weight: float = option(1.0, min=0.0, max=1000.0,
                                       help="MSE weight pulling the VAE's latent towards a linear code of each 8 x 8 "
                                            "RGB patch (its mean colour and the leading principal component of the "
                                            "rest, fitted on the images at the start): colour and layout kept from "
                                            "the first step, which the VAE then improves on; 0 = off")
    latent_norm: str = option("scale", choices=("scale", "channels"),
                              help="how the UNet sees the VAE's latents: scale = one factor giving the base's "
                                   "(shifted-look) latents unit variance, SD1.5's way; channels = each latent "
                                   "channel shifted and scaled to zero mean and unit variance on true-colour "
                                   "images, baked into the VAE's quant_conv and post_quant_conv (an exact change "
                                   "of coordinates; the file keeps SD1.5's layout), so the colour the concepts "
                                   "learn is on the noise's scale")
    vae_precision: str = option("bf16", choices=PRECISIONS,
                                help="VAE phase arithmetic: bf16 autocast (measured 1.9x faster per step on a "
                                     "2-core AMX CPU, bench/bench_pretrain.py) or fp32")
    unet_precision: str = option("bf16", choices=PRECISIONS,
                                 help="UNet phase arithmetic: bf16 autocast (on a CPU with the classic attention "
                                      "kernels: measured 1.2-1.4x faster per step than fp32 on one AMX core, "
                                      "bench/bench_pretrain.py) or fp32")
    lr_decay: str = option("cosine", choices=("constant", "cosine"),
                           help="learning rate after each phase's warm-up: constant, or a cosine down to a tenth "
                                "at the phase's last step")
    caption_dropout: float = option(0.1, min=0.0, max=0.99, help="fraction of empty captions (for guidance)")
    min_snr_gamma: float = option(5.0, min=0.0, max=100.0, help="min-SNR loss weighting gamma; 0 = off")
    ema_decay: float = option(0.999, min=0.0, max=0.99999, help="EMA of the UNet weights (the file holds the EMA); 0 = off")
    seed: int = option(0, min=0, max=2**32 - 1, help="seed of the weights and of every random draw")
    save_every: int = option(200, min=0, max=1_000_000, help="write a resumable state every N steps beside the output")
    keep_states: int = option(2, min=0, max=1000, help="resumable states kept (the newest); 0 = all")
    split: str | None = option("train", kind=SPLIT, help="captions.jsonl split to use; 'all' for every row")

    def check(self, input_names: dict[str, str] | None = None) -> "PretrainConfig":
        check_ranges(self, input_names)

        def bad(name, message):
            raise InputError((input_names or {}).get(name, name), message)
        if self.resolution % 64:
            bad("resolution", f"{self.resolution} is not accepted; use a multiple of 64 (e.g. 128)")
        if self.vae_crop % 8 or self.vae_crop > self.resolution:
            bad("vae_crop", f"{self.vae_crop}; use a multiple of 8 up to the resolution")
        return self

    def identity(self) -> dict:
        """The fields a resumed run must share with the run that wrote the state (step
        counts may grow: a run can be continued past its first goal; the precisions, like the
        device, choose the arithmetic, not the recipe, and may change between sittings)."""
        return {k: v for k, v in asdict(self).items()
                if k not in ("vae_steps", "unet_steps", "save_every", "keep_states", "vae_precision", "unet_precision")}


@dataclass
class PretrainProgress:
    phase: str  # "vae" | "unet"
    step: int
    total: int
    loss: float
    elapsed: float
    eta: float


def _lr(step: int, base: float, warmup: int, total: int = 0, decay: str = "constant") -> float:
    """The learning rate of step `step` (from 0) of a phase of `total` steps: linear warm-up,
    then constant or a cosine down to 10 % at the last step. A pure function of the step, so
    a resumed run follows the same schedule.

    Not diffusers' get_scheduler (which the concept trainer uses), for two reasons: its cosine
    ends at 0, and the mini recipe ends at 10 % (a base still learning the words at its last
    step); and pretraining has two phases (VAE, then UNet with the text encoder) on three
    optimizers, each phase with its own warm-up, resumed from states mid-phase and extended
    with --resume --steps N, where a stateful LambdaLR per optimizer would have to be saved,
    restored and rebuilt for the new total, for the same numbers this function gives."""
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    if decay == "cosine" and total > warmup + 1:
        progress = min(1.0, (step - warmup) / (total - warmup - 1))
        return base * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))
    return base


def autocast(precision: str, device: torch.device):
    """bf16 autocast on `device` for precision "bf16"; a no-op for "fp32"."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


class _Run:
    """The state a pretraining run carries from step to step, and its checkpoints."""
    def __init__(self, sd: SD15, cfg: PretrainConfig, out: Path, data_hash: str, base: dict):
        self.sd, self.cfg, self.out, self.data_hash, self.base = sd, cfg, out, data_hash, base
        self.vae_opt = torch.optim.AdamW(sd.vae.parameters(), lr=cfg.vae_learning_rate, weight_decay=0.0)
        self.unet_opt = torch.optim.AdamW(sd.unet.parameters(), lr=cfg.learning_rate, weight_decay=0.01)
        self.text_opt = torch.optim.AdamW(sd.text_encoder.parameters(), lr=cfg.text_learning_rate,
                                          weight_decay=0.01)
        self.ema = copy.deepcopy(sd.unet).requires_grad_(False) if cfg.ema_decay else None
        self.ema_text = copy.deepcopy(sd.text_encoder).requires_grad_(False) if cfg.ema_decay else None
        self.vae_step = self.unet_step = 0
        self.losses: dict[str, list[float]] = {"vae": [], "unet": []}
        self.latent_scale: float | None = None
        self.latent_channels: dict | None = None  # {"shift", "spread"} once latent_norm "channels" is applied
        self.last_state: Path | None = None
        self.patch_code: PatchCode | None = None  # the VAE's latent target (latent_code_weight)

    def state_path(self) -> Path:
        return self.out.with_name(f"{self.out.stem}.pretrain-{self.vae_step:06d}-{self.unet_step:06d}.pt")

    def save_state(self) -> Path:
        state = {"format": STATE_FORMAT, "version": 1, "config": self.cfg.identity(),
                 "dataset_hash": self.data_hash, "base_model": self.base,
                 "vae_step": self.vae_step, "unet_step": self.unet_step,
                 "losses": self.losses, "latent_scale": self.latent_scale, "latent_channels": self.latent_channels,
                 "vae": self.sd.vae.state_dict(), "unet": self.sd.unet.state_dict(),
                 "text_encoder": self.sd.text_encoder.state_dict(),
                 "ema_text": self.ema_text.state_dict() if self.ema_text is not None else {},
                 "ema": self.ema.state_dict() if self.ema is not None else {},
                 "vae_optimizer": self.vae_opt.state_dict(), "unet_optimizer": self.unet_opt.state_dict(),
                 "text_optimizer": self.text_opt.state_dict()}
        path = self.state_path()
        with atomic_path(path, overwrite=True) as tmp:
            torch.save(state, tmp)
        self.last_state = path
        prune_states(sorted(self.out.parent.glob(f"{self.out.stem}.pretrain-*.pt")), self.cfg.keep_states)
        return path

    def load_state(self, path: Path) -> None:
        state = read_state(path, STATE_FORMAT)
        check_resumable(state, path, self.cfg.identity(), self.data_hash, defaults=PretrainConfig().identity())
        check_base(state, path, self.base)
        self.sd.vae.load_state_dict(state["vae"])
        self.sd.unet.load_state_dict(state["unet"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.vae_opt.load_state_dict(state["vae_optimizer"])
        self.unet_opt.load_state_dict(state["unet_optimizer"])
        if "text_encoder" in state:  # states from before the text encoder trained hold none
            self.sd.text_encoder.load_state_dict(state["text_encoder"])
            self.text_opt.load_state_dict(state["text_optimizer"])
            if self.ema_text is not None:
                self.ema_text.load_state_dict(state["ema_text"])
        self.vae_step, self.unet_step = int(state["vae_step"]), int(state["unet_step"])
        check_within(path, "VAE step", self.vae_step, self.cfg.vae_steps)
        check_within(path, "UNet step", self.unet_step, self.cfg.unet_steps)
        self.losses = {k: list(v) for k, v in state["losses"].items()}
        self.latent_scale = state["latent_scale"]
        self.latent_channels = state.get("latent_channels")  # states from before latent_norm hold none


CHROMA_GAIN = 4.0


class PatchCode:
    """A linear code of an SD1.5-layout latent's size for 8 x 8 RGB patches (pixels in [-1, 1]):
    the patch's mean luminance and its two colour differences (amplified; x 8, the norm of a
    unit-mean patch), then the leading principal components of what is left (fitted on `samples` patches drawn with
    `seed`). It keeps each patch's colour exactly, which a code learned from scratch loses
    first (AID's colours are muted: luminance texture dominates any squared error)."""

    def __init__(self, pixels: np.ndarray, k: int = 4, samples: int = 20000, seed: int = 0):
        rng = np.random.default_rng(seed)
        n, h, w = pixels.shape[:3]
        i, y, x = rng.integers(0, n, samples), rng.integers(0, h // 8, samples) * 8, rng.integers(0, w // 8, samples) * 8
        patches = np.stack([pixels[a, b:b + 8, c:c + 8] for a, b, c in zip(i, y, x)]).astype(np.float64) / 127.5 - 1
        patches = patches.transpose(0, 3, 1, 2).reshape(samples, 3, 64)  # as F.unfold orders them: C x 8 x 8
        rest = (patches - patches.mean(2, keepdims=True)).reshape(samples, -1)
        _, _, vt = np.linalg.svd(rest - rest.mean(0), full_matrices=False)
        texture = vt[:k - 3] * np.sign(vt[:k - 3].sum(1, keepdims=True) + 1e-12)  # a fixed sign: reproducible
        # luminance and two colour differences (red and blue minus luminance), x CHROMA_GAIN:
        # AID's colour differences are a few percent of the luminance, and a latent that
        # carries them that small is decoded grey (measured)
        opponent = np.array([[1 / 3, 1 / 3, 1 / 3], [2 / 3, -1 / 3, -1 / 3], [-1 / 3, -1 / 3, 2 / 3]])
        opponent[1:] *= CHROMA_GAIN
        means = np.kron(opponent, np.full((1, 64), 1 / 8))  # 3 x 192 on patch means, x 8
        self.basis = torch.from_numpy(np.concatenate([means, texture])).float()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """B x 3 x H x W in [-1, 1] -> B x k x H/8 x W/8."""
        b, _, h, w = x.shape
        code = self.basis.to(x.device) @ F.unfold(x.float(), 8, stride=8)  # B x k x L
        return code.view(b, -1, h // 8, w // 8)


def vae_step(run: _Run, pixels: np.ndarray, step: int) -> float:
    """One VAE step on random crops of both looks: L1 + MSE reconstruction, L1 on colour, a small KL."""
    cfg, vae = run.cfg, run.sd.vae
    g = seeded_generator(cfg.seed, 1, step)
    n, size = len(pixels), pixels.shape[1]
    index = torch.randint(0, n, (cfg.vae_batch_size,), generator=g).tolist()
    corner = torch.randint(0, size - cfg.vae_crop + 1, (cfg.vae_batch_size, 2), generator=g).tolist()
    shifted = (torch.rand(cfg.vae_batch_size, generator=g) < cfg.vae_shifted_fraction).tolist()
    flips = torch.randint(0, 8, (cfg.vae_batch_size,), generator=g).tolist()
    crops = []
    for i, (y, x), s, k in zip(index, corner, shifted, flips):
        crop = pixels[i, y:y + cfg.vae_crop, x:x + cfg.vae_crop]
        crop = np.asarray(old_photo(Image.fromarray(crop))) if s else crop
        crops.append(dihedral(crop, k))
    device = run.sd.device
    x = pixels_to_tensor(np.stack(crops)).to(device)
    code = run.patch_code(x) if cfg.latent_code_weight else None
    noise = torch.randn((len(x), 4, cfg.vae_crop // 8, cfg.vae_crop // 8), generator=g).to(device)
    with autocast(cfg.vae_precision, device):
        dist = vae.encode(x).latent_dist
        z = dist.mean + dist.std * noise
        recon = vae.decode(z).sample.float()
    kl = dist.kl().float().mean() / z[0].numel()
    # colour per 4 x 4 pixels: what a blurry decoder can still get right (pixel-level L1
    # pulls uncertain colour to grey, its median)
    chroma = F.l1_loss(F.avg_pool2d(recon - recon.mean(1, keepdim=True), 4), F.avg_pool2d(x - x.mean(1, keepdim=True), 4))
    pooled = F.l1_loss(F.avg_pool2d(recon, 8), F.avg_pool2d(x, 8))
    loss = (F.l1_loss(recon, x) + F.mse_loss(recon, x) + cfg.chroma_weight * chroma + cfg.pooled_weight * pooled
            + cfg.kl_weight * kl)
    if code is not None:
        loss = loss + cfg.latent_code_weight * F.mse_loss(dist.mean.float(), code)
    for group in run.vae_opt.param_groups:
        group["lr"] = _lr(step, cfg.vae_learning_rate, cfg.warmup_steps, cfg.vae_steps, cfg.lr_decay)
    run.vae_opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
    run.vae_opt.step()
    return float(loss.detach())


@torch.no_grad()
def encode_latents(vae, images: np.ndarray, batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) of the VAE's latent distribution: N x 4 x H/8 x W/8 each."""
    means, stds = [], []
    device = next(vae.parameters()).device
    for i in range(0, len(images), batch):
        dist = vae.encode(pixels_to_tensor(images[i:i + batch]).to(device)).latent_dist
        means.append(dist.mean.cpu())
        stds.append(dist.std.cpu())
    return torch.cat(means), torch.cat(stds)


def caption_tokens(sd: SD15, texts) -> dict[str, torch.Tensor]:
    """{caption: 77 token ids} (the captions are short: one chunk each)."""
    return {t: torch.tensor(chunk_tokens(sd.tokenizer, t)[:77]) for t in texts}


def caption_encoder(sd: SD15, tokens: dict[str, torch.Tensor], trainable: bool) -> Callable[[list[str]], torch.Tensor]:
    """texts -> B x 77 x D contexts. A frozen text encoder (text learning rate 0) is run once
    per distinct caption, not once per caption and step."""
    if trainable:
        return lambda texts: sd.text_encoder(torch.stack([tokens[t] for t in texts]).to(sd.device))[0]
    with torch.no_grad():
        fixed = {t: sd.text_encoder(ids[None].to(sd.device))[0][0] for t, ids in tokens.items()}
    return lambda texts: torch.stack([fixed[t] for t in texts])


def cached_latents(vae, images: np.ndarray, out: Path, data_hash: str, resolution: int):
    """encode_latents, kept beside `out` (<stem>.latents-<key>.safetensors) for a resumed or
    second-stage run with the same VAE, images and resolution (encoding 8,282 AID images
    takes about 13 minutes on 2 CPU cores)."""
    from safetensors.torch import load_file

    path = _latent_cache_path(vae, out, data_hash, resolution, len(images))
    shape = (len(images), vae.config.latent_channels, resolution // 8, resolution // 8)
    try:  # a cache is checked, never trusted: one cut short or of another shape is encoded again
        cached = load_file(str(path))
        mean, std = cached["mean"], cached["std"]
        if all(t.shape == shape and t.dtype == torch.float32 and bool(torch.isfinite(t).all()) for t in (mean, std)) \
                and bool((std >= 0).all()):
            return mean, std
    except Exception:  # missing, truncated, not safetensors, other keys: safetensors raises several types
        pass
    mean, std = encode_latents(vae, images)
    _keep_latents(path, mean, std)
    return mean, std


def _latent_cache_path(vae, out: Path, data_hash: str, resolution: int, count: int) -> Path:
    digest = hashlib.sha256(f"{data_hash}:{resolution}:{count}".encode())
    for name, tensor in sorted(vae.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return out.with_name(f"{out.stem}.latents-{digest.hexdigest()[:16]}.safetensors")


def _keep_latents(path: Path, mean: torch.Tensor, std: torch.Tensor) -> None:
    from safetensors.torch import save_file

    try:
        with atomic_path(path, overwrite=True) as tmp:
            save_file({"mean": mean.contiguous(), "std": std.contiguous()}, str(tmp))
    except InputError:  # only a cache: a run goes on without it (a full disk is for the model file)
        pass


@torch.no_grad()
def standardize_latent_channels(vae, shift: torch.Tensor, spread: torch.Tensor) -> None:
    """Give the VAE new latent coordinates, channel c reading (z_c - shift_c) / spread_c:
    quant_conv's mean rows and log-variance biases and post_quant_conv's input columns absorb
    the affine map, so decode(encode(x)) is unchanged (up to float rounding) and the VAE keeps
    SD1.5's layout and module names (a scalar scaling_factor of 1 then reads its latents)."""
    c = len(shift)
    quant, post = vae.quant_conv, vae.post_quant_conv
    if quant is None or post is None:
        raise ValueError("latent_norm 'channels' needs a VAE with quant_conv and post_quant_conv (SD1.5's layout)")
    quant.weight[:c] /= spread.view(-1, 1, 1, 1)
    quant.bias[:c] = (quant.bias[:c] - shift) / spread
    quant.bias[c:] -= 2 * torch.log(spread)
    post.bias += post.weight[:, :, 0, 0] @ shift
    post.weight *= spread.view(1, -1, 1, 1)


LATENT_STATS_IMAGES = 512  # true-colour images whose latents set latent_norm "channels"' shift and spread


@torch.no_grad()
def _as_stored(vae) -> None:
    """The VAE as the checkpoint stores it (fp16): the latents are the shipped VAE's, and a
    second stage that loads the checkpoint finds the same latent cache."""
    for p in vae.parameters():
        p.copy_(p.half().float())


def _standardize(run: _Run, colour: np.ndarray, mean: torch.Tensor, std: torch.Tensor, data_hash: str):
    """latent_norm "channels": measure each latent channel on true-colour images, bake the
    standardization into the VAE (as the checkpoint stores it, fp16) and map the cached
    latents of the shifted look through the same affine change (kept under the new VAE's key,
    so a resumed or second-stage run finds them)."""
    vae = run.sd.vae
    colour_mean = encode_latents(vae, colour)[0]
    shift, spread = colour_mean.mean((0, 2, 3)), colour_mean.std((0, 2, 3))
    standardize_latent_channels(vae, shift.to(vae.dtype), spread.to(vae.dtype))
    _as_stored(vae)
    view = lambda t: t.view(1, -1, 1, 1)
    mean, std = (mean - view(shift)) / view(spread), std / view(spread)
    _keep_latents(_latent_cache_path(vae, run.out, data_hash, run.cfg.resolution, len(mean)), mean, std)
    run.latent_channels = {"shift": shift.tolist(), "spread": spread.tolist(), "images": len(colour)}
    run.latent_scale = 1.0
    return mean, std


def unet_step(run: _Run, mean: torch.Tensor, std: torch.Tensor, concepts: list[str],
              encode: Callable[[list[str]], torch.Tensor], schedule, step: int) -> float:
    """One epsilon-prediction step (min-SNR weighted) on cached latents of the shifted look;
    the text encoder learns too when its learning rate is above 0."""
    cfg, sd = run.cfg, run.sd
    g = seeded_generator(cfg.seed, 2, step)
    index = torch.randint(0, len(mean), (cfg.batch_size,), generator=g)
    flip = torch.randint(0, 8, (cfg.batch_size,), generator=g)  # the square's symmetries: RS scenes have no "up"
    latents = (mean[index] + std[index] * torch.randn(mean[index].shape, generator=g)) * run.latent_scale
    latents = torch.stack([dihedral(l, int(k), axes=(-2, -1)) for l, k in zip(latents, flip)])
    device = sd.device
    templates = torch.randint(0, len(LOOK_TEMPLATES), (cfg.batch_size,), generator=g).tolist()
    drop = (torch.rand(cfg.batch_size, generator=g) < cfg.caption_dropout).tolist()
    noise = torch.randn(latents.shape, generator=g).to(device)
    timesteps = torch.randint(0, schedule.config.num_train_timesteps, (cfg.batch_size,), generator=g).to(device)
    latents = latents.to(device)
    texts = ["" if d else look_caption(concepts[i], t) for i, t, d in zip(index.tolist(), templates, drop)]
    noisy = schedule.add_noise(latents, noise, timesteps)
    with autocast(cfg.unet_precision, device):
        context = encode(texts)
        pred = sd.unet(noisy, timesteps, encoder_hidden_states=context).sample
    loss = epsilon_loss(pred, noise, timesteps, schedule, cfg.min_snr_gamma)
    if not torch.isfinite(loss):
        raise InputError("learning_rate", f"the loss became {float(loss)} at UNet step {step + 1}; lower it "
                                          f"(last good state: {run.last_state or 'none yet'})")
    optimizers = [(run.unet_opt, sd.unet, cfg.learning_rate)]
    if cfg.text_learning_rate > 0:
        optimizers.append((run.text_opt, sd.text_encoder, cfg.text_learning_rate))
    for optimizer, _, rate in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = _lr(step, rate, cfg.warmup_steps, cfg.unet_steps, cfg.lr_decay)
        optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for optimizer, model, _ in optimizers:
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    update_ema(run, step)
    return float(loss.detach())


def update_ema(run: _Run, step: int) -> None:
    """Move the EMA copies of the UNet and text encoder towards the trained weights, with
    diffusers EMAModel's warm-up (decay min(ema_decay, (1 + step) / (10 + step))).

    Not diffusers' EMAModel, by measurement and by format (bench/bench_pretrain.py --phases
    ema, one thread, mini UNet + text encoder): this loop takes 12.7-13.8 ms a step, EMAModel
    18-21 ms, all under 1 % of a 2.5-3 s UNet step, so speed decides little; but the copies
    here are modules, whose state dicts are the UNet's own keys: states resume them with
    load_state_dict and the checkpoint is written from them directly, while EMAModel keeps a
    list of tensors with its own state format (and counts its steps one later)."""
    if run.ema is None:
        return
    decay = min(run.cfg.ema_decay, (1 + step) / (10 + step))
    with torch.no_grad():
        for ema, model in ((run.ema, run.sd.unet), (run.ema_text, run.sd.text_encoder)):
            for e, p in zip(ema.parameters(), model.parameters()):
                e.lerp_(p, 1 - decay)


def pretrain(dataset: str | Path, out: str | Path, cfg: PretrainConfig, *, kb=None, resume: str | Path | None = None,
             init: str | Path | None = None, init_vae: str | Path | None = None, overwrite: bool = False,
             device: str = "cpu",
             on_progress: Callable[[PretrainProgress], None] | None = None,
             should_stop: Callable[[], bool] | None = None) -> Path:
    """Train the mini base model on `dataset` (every class, shifted look) and write it to
    `out` as one fp16 single-file checkpoint. States every cfg.save_every steps beside
    `out` (<stem>.pretrain-<vae step>-<unet step>.pt); `resume` continues one. `init` starts
    from that checkpoint's weights (and its VAE's latent scale) instead of random ones;
    `init_vae` takes the VAE and its latent scale from another checkpoint (a new VAE under an
    earlier UNet and text encoder: the UNet then learns the new latents from a warm start). The
    output folder is checked first, and one run at a time writes an output (a lock beside it).
    States record the starting checkpoints' sha256; a resume from other ones is refused.
    `should_stop` is asked after every step: when it says so, a state is written and
    TrainingInterrupted raised. If the final save fails, the checkpoint is kept beside `out` or
    in the system temp folder and the error says where."""
    cfg.check()
    out = check_safetensors(out, "checkpoints are saved as .safetensors")
    check_output(out, overwrite)
    check_writable(out.parent)
    with output_lock(out):
        return _pretrain(dataset, out, cfg, kb, resume, init, init_vae, overwrite, on_progress, training_device(device),
                         should_stop)


def training_device(name: str) -> torch.device:
    """The torch device called `name`, refused by name when it does not exist here."""
    try:
        device = torch.device(name)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as exc:
        raise InputError("device", f"{name!r} is not a device this machine has ({str(exc).splitlines()[0]}); "
                                   "use cpu, or cuda / cuda:N where a GPU is present") from None
    return device


def _starting_model(cfg: PretrainConfig, init, init_vae) -> tuple[SD15, float | None]:
    """The model a run starts from (random, or `init`'s weights with `init_vae`'s VAE) and
    the latent scale it brings (None: measured on the encoded latents)."""
    configs = mini_configs() if cfg.model == "mini" else tiny_configs()
    widths = lambda c: {part: {k: v for k, v in c[part].items() if k != "scaling_factor"}
                        for part in ("unet", "vae", "text_encoder")}
    sd = build_random(configs, cfg.seed, name=cfg.model)
    scale = None
    for path, name in ((init, "init"), (init_vae, "init_vae")):
        if path is None:
            continue
        start = load_single_file(path, input_name=name)
        if widths(start.configs) != widths(configs):
            raise InputError(name, f"{Path(path).name} is not a {cfg.model} model; pass its --model")
        parts = ("vae",) if name == "init_vae" else ("unet", "vae", "text_encoder")
        for part in parts:
            getattr(sd, part).load_state_dict(getattr(start, part).state_dict())
        scale = float(start.vae_scale)
    return sd, scale


def _started(path) -> dict | None:
    """{'file', 'sha256'} of a starting checkpoint (None: none given)."""
    return None if path is None else {"file": Path(path).name, "sha256": file_sha256(path)}


def _base(init, init_vae) -> dict:
    """What a run starts from, as states record it ({'name', 'sha256'}; states.check_base)."""
    parts = [(what, _started(p)) for what, p in (("init", init), ("init_vae", init_vae)) if p is not None]
    if not parts:
        return {"name": "random weights", "sha256": ""}
    return {"name": " + ".join(f"{what} {s['file']}" for what, s in parts),
            "sha256": hashlib.sha256(" ".join(f"{what}:{s['sha256']}" for what, s in parts).encode()).hexdigest()}


def _pretrain(dataset, out: Path, cfg: PretrainConfig, kb, resume, init, init_vae, overwrite, on_progress,
              device: torch.device, should_stop=None) -> Path:
    from diffusers import DDPMScheduler

    samples = scan_dataset(dataset, None, cfg.split, kb)
    data_hash = dataset_hash(samples)
    sd, start_scale = _starting_model(cfg, init, init_vae)
    with torch.no_grad():
        sd.text_encoder.get_input_embeddings().weight.mul_(cfg.text_token_scale)
    for model in (sd.vae, sd.unet, sd.text_encoder):
        model.requires_grad_(True).train()
    sd.to(device)  # random draws stay on the CPU's generator: the same run on any device
    run = _Run(sd, cfg, out, data_hash, _base(init, init_vae))
    run.latent_scale = start_scale
    if resume:
        run.load_state(Path(resume))
    samples, arrays, skipped = load_images(samples, cfg.resolution)
    pixels = np.stack(arrays)
    del arrays
    if cfg.latent_code_weight and run.vae_step < cfg.vae_steps:
        run.patch_code = PatchCode(pixels, seed=cfg.seed)
    t0, start = time.perf_counter(), (run.vae_step, run.unet_step)

    def report(phase, step, total, loss, begun):
        if on_progress is not None:
            elapsed = time.perf_counter() - t0
            rate = (step - begun) / elapsed if elapsed > 0 else 0.0
            on_progress(PretrainProgress(phase, step, total, loss, elapsed, (total - step) / rate if rate else 0.0))

    def checkpoint_due(step):
        return cfg.save_every and step % cfg.save_every == 0

    def stop_if_asked():  # only while work remains: a finished run saves its model
        remaining = run.vae_step < cfg.vae_steps or run.unet_step < cfg.unet_steps
        if remaining and should_stop is not None and should_stop():
            where = f"VAE step {run.vae_step}, UNet step {run.unet_step}"
            raise TrainingInterrupted(run.vae_step + run.unet_step, run.save_state(), where)

    with torch.enable_grad():
        while run.vae_step < cfg.vae_steps:
            loss = vae_step(run, pixels, run.vae_step)
            run.losses["vae"].append(loss)
            run.vae_step += 1
            report("vae", run.vae_step, cfg.vae_steps, loss, start[0])
            if checkpoint_due(run.vae_step):
                run.save_state()
            stop_if_asked()
    sd.vae.eval().requires_grad_(False)
    _as_stored(sd.vae)
    shifted = np.stack([np.asarray(old_photo(Image.fromarray(p))) for p in pixels])
    colour = pixels[np.random.default_rng(cfg.seed).permutation(len(pixels))[:LATENT_STATS_IMAGES]] \
        if cfg.latent_norm == "channels" else None
    del pixels
    mean, std = cached_latents(sd.vae, shifted, out, data_hash, cfg.resolution)
    if cfg.latent_norm == "channels" and run.latent_channels is None:
        mean, std = _standardize(run, colour, mean, std, data_hash)
    del colour
    if run.latent_scale is None:  # unit-variance latents, as SD1.5's 0.18215 gives on its own VAE
        run.latent_scale = float(1.0 / mean.std())
    sd.configs["vae"]["scaling_factor"] = run.latent_scale
    stop_if_asked()  # asked while the latents were encoded
    concepts = [s.concept for s in samples]
    tokens = caption_tokens(sd, {""} | {look_caption(c, t) for c in set(concepts) for t in range(len(LOOK_TEMPLATES))})
    if cfg.text_learning_rate == 0:
        sd.text_encoder.requires_grad_(False)
    encode = caption_encoder(sd, tokens, cfg.text_learning_rate > 0)
    schedule = DDPMScheduler.from_config(sd.configs["scheduler"])
    use_fast_attention(sd.unet, cfg.unet_precision, device)
    with torch.enable_grad():
        while run.unet_step < cfg.unet_steps:
            loss = unet_step(run, mean, std, concepts, encode, schedule, run.unet_step)
            run.losses["unet"].append(loss)
            run.unet_step += 1
            report("unet", run.unet_step, cfg.unet_steps, loss, start[1])
            if checkpoint_due(run.unet_step) and run.unet_step < cfg.unet_steps:
                run.save_state()
            stop_if_asked()
    if run.ema is not None:
        sd.unet.load_state_dict(run.ema.state_dict())
        sd.text_encoder.load_state_dict(run.ema_text.state_dict())
    for model in (sd.unet, sd.text_encoder):
        model.eval().requires_grad_(False)
    facts = {**asdict(cfg), "init": _started(init), "init_vae": _started(init_vae),
             "dataset_hash": data_hash, "images": len(samples), "skipped_images": len(skipped),
             "latent_channels": run.latent_channels,
             "look": {"templates": list(LOOK_TEMPLATES), "contrast": LOOK_CONTRAST, "blur_radius": LOOK_BLUR_RADIUS},
             "final_loss": {k: float(np.mean(v[-100:])) if v else None for k, v in run.losses.items()}}
    sd.to("cpu")
    metadata = {PRETRAIN_METADATA_KEY: json.dumps(facts)}
    return save_or_keep(out, lambda path, replace: save_single_file(sd, path, dtype=torch.float16, overwrite=replace,
                                                                    metadata=metadata), overwrite)
