"""Concept LoRA training: SD1.5 epsilon objective, LoRA through peft, devices through
accelerate. Exactly resumable: all randomness of step k comes from (seed, k), the data
order of epoch e from (seed, e), and checkpoints carry LoRA, optimizer and scheduler state.
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..concepts.file import Concept, ConceptInfo, DEFAULT_TRIGGER_WORDS, LoraWeights, save_concept, TrainingFacts
from ..models.sd15 import SD15, text_layout_prefix
from ..scenes.pipeline import make_scene
from ..scenes.sampling import encode_prompt, join_contexts, SamplingSettings
from ..concepts import keys as lora_keys
from ..datasets import dataset_hash, load_images, Sample, scan_dataset, training_captions
from ..errors import InputError, named_inputs
from .states import check_base, check_resumable, check_within, prune_states, read_state, TrainingInterrupted
from .draws import caption_choice, epoch_order, seeded_generator, StepDraws, step_draws
from ..settings import INTEGERS, REPEATED, SPLIT, WORDS, check_ranges, option
from ..files import atomic_path, check_output, check_writable, output_lock, safe_relative_name, save_or_keep
from ..imagery import dihedral, save_png

UNET_TARGETS = {"attention": ["to_q", "to_k", "to_v", "to_out.0"],
                "kohya": ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2"]}
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]
AUGMENTS = {"none": 1, "flip": 2, "dihedral": 8}
STATE_FORMAT = "word2scene-train-state"


class TrainingError(RuntimeError):
    """Training stopped (non-finite loss): the message names the step; the last good
    checkpoint is kept."""


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in checkpoints and the concept file).
    Each field states its default, help, range and flag once: the CLI's `train` options and
    the Train Concept node's inputs are derived from it (settings.py)."""

    concepts: list[str] = option(default_factory=list, flag="--concept", kind=REPEATED, metavar="WORD",
                                 help="concept word(s): restricts class folders to these, or names a flat folder's "
                                      "concept; empty: every class")
    trigger_words: list[str] = option(default_factory=lambda: list(DEFAULT_TRIGGER_WORDS), kind=WORDS,
                                      help="comma-separated trigger words put before the concept word "
                                           "(the paper: gs, geographic scene)")
    steps: int = option(0, min=0, max=1_000_000, help="optimizer steps; 0 = train whole epochs (--epochs)")
    epochs: int = option(10, min=0, max=10_000, help="whole epochs when steps is 0 (the paper's study: 10)")
    rank: int = option(16, min=1, max=256, help="LoRA rank r")
    alpha: float = option(16.0, min=0.01, max=1024.0, help="LoRA alpha (scale alpha / rank)")
    rslora: bool = option(False, help="rank-stabilised scaling alpha / sqrt(rank)")
    module_set: str = option("attention", flag="--modules", choices=tuple(UNET_TARGETS),
                             help="attention: to_q/k/v/out (the paper, 128 modules); kohya: + proj_in/out and ff (192)")
    text_encoder: bool = option(False, help="also train a text-encoder LoRA")
    learning_rate: float = option(1e-4, flag="--lr", min=1e-7, max=0.1, help="AdamW learning rate")
    lr_scheduler: str = option("constant", choices=("constant", "constant_with_warmup", "linear", "cosine",
                                                    "cosine_with_restarts", "polynomial"),
                               help="learning-rate schedule (diffusers' get_scheduler)")
    warmup_steps: int = option(0, flag="--warmup", min=0, max=1_000_000, help="warm-up steps of the schedule")
    batch_size: int = option(1, flag="--batch", min=1, max=256, help="images per step and process")
    grad_accumulation: int = option(1, min=1, max=1024, help="micro-batches per optimizer step")
    max_grad_norm: float = option(1.0, min=0.0, max=1e6, help="gradient clipping norm; 0 = off")
    min_snr_gamma: float = option(0.0, min=0.0, max=100.0, help="min-SNR loss weighting gamma (e.g. 5); 0 = off")
    noise_offset: float = option(0.0, min=0.0, max=1.0, help="noise offset (darker and brighter scenes)")
    caption_dropout: float = option(0.0, min=0.0, max=0.99, help="fraction of captions replaced by the empty prompt")
    resolution: int = option(512, min=64, max=4096, help="training image side in pixels, a multiple of 64")
    augment: str = option("none", choices=tuple(AUGMENTS),
                          help="none (the paper), flip, or dihedral (the 8 symmetries of the square: RS scenes have "
                               "no 'up')")
    bands: tuple[int, ...] = option((1, 2, 3), kind=INTEGERS, help="1-based bands of multi-band images as R,G,B")
    split: str | None = option("train", kind=SPLIT, help="captions.jsonl split to use; 'all' for every row")
    seed: int = option(0, min=0, max=2**32 - 1, help="seed of every random draw (data order, noise, timesteps)")
    save_every: int = option(0, min=0, max=1_000_000, help="write a resumable state every N steps beside the "
                                                             "output; 0 = only when stopped")
    keep_states: int = option(3, min=0, max=1000, help="resumable states kept (the newest); 0 = all")
    save_every_epoch: bool = option(False, help="also write a concept file at the end of every epoch, "
                                                "<out>-epoch<NN>.safetensors (for the epoch x strength study)")
    preview_every: int = option(0, min=0, max=1_000_000, help="preview images every N steps and at the end; 0 = none")
    preview_steps: int = option(20, min=1, max=200, help="sampling steps per preview image")
    preview_size: int = option(0, min=0, max=4096, help="preview image side in pixels; 0 = the training resolution")
    gradient_checkpointing: bool = option(False, help="recompute activations in the backward pass (less memory)")
    mixed_precision: str = option("no", choices=("no", "fp16", "bf16"),
                                  help="bf16/fp16 autocast with the frozen weights in half precision "
                                       "(fp16: GPU; bf16: GPU, or CPUs with AMX/AVX512-BF16)")
    max_bad_fraction: float = option(0.1, min=0.0, max=1.0, help="largest fraction of unreadable images skipped "
                                                                 "before training refuses the dataset")

    def check(self, input_names: dict[str, str] | None = None) -> "TrainConfig":
        """Ranges and choices as the fields state them, then the rules between fields.
        Errors name `input_names[field]` where given (the flag or node input)."""
        check_ranges(self, input_names)

        def bad(name, message):
            raise InputError((input_names or {}).get(name, name), message)
        if self.resolution % 64:
            bad("resolution", f"{self.resolution} is not accepted; use a multiple of 64 (e.g. 512)")
        if self.steps == 0 and self.epochs == 0:
            bad("epochs", "0 with steps 0 trains nothing; give epochs (the paper: 10) or steps")
        if len(self.bands) != 3 or min(self.bands) < 1:
            bad("bands", f"{','.join(map(str, self.bands))}; give three 1-based band numbers like 4,3,2")
        return self

    def identity(self) -> dict:
        """The fields a resumed run must share with the run that wrote the checkpoint."""
        keep = ("rank", "alpha", "rslora", "module_set", "text_encoder", "resolution", "augment", "batch_size",
                "grad_accumulation", "seed", "concepts", "trigger_words", "learning_rate", "lr_scheduler", "warmup_steps")
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items() if k in keep}


@dataclass
class Progress:
    step: int
    total: int
    loss: float
    lr: float
    elapsed: float
    eta: float
    images_per_second: float


@dataclass
class TrainResult:
    concept: Concept
    path: Path
    losses: list[float]
    previews: list  # [(step, [PIL images])]
    summary: dict
    main_process: bool = True  # False on the other processes of a multi-process run: they write nothing


@dataclass
class _Cache:
    """Per-image latents (mean, std) per augmentation variant and per-caption embeddings."""
    mean: torch.Tensor  # N x V x 4 x h x w
    std: torch.Tensor
    captions: list[list[str]]  # per sample: every training caption it has (one drawn per epoch)
    embeddings: dict  # caption -> 1 x (77 * chunks) x D (frozen text encoder only)


@torch.no_grad()
def build_cache(sd: SD15, samples: list[Sample], arrays: list[np.ndarray], cfg: TrainConfig, device) -> _Cache:
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
        with torch.no_grad():
            for text in sorted({t for texts in captions for t in texts} | {""}):
                embeddings[text] = encode_prompt(sd, text, weighted=False).cpu()
    return _Cache(torch.stack(means), torch.stack(stds), captions, embeddings)


def add_lora(sd: SD15, cfg: TrainConfig) -> None:
    """Attach trainable LoRA adapters (peft) to the UNet (and text encoder)."""
    from peft import LoraConfig

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        sd.unet.add_adapter(LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, use_rslora=cfg.rslora,
                                       init_lora_weights="gaussian", target_modules=UNET_TARGETS[cfg.module_set]))
        if cfg.text_encoder:
            from peft import inject_adapter_in_model
            inject_adapter_in_model(LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, use_rslora=cfg.rslora,
                                               init_lora_weights="gaussian", target_modules=TEXT_TARGETS), sd.text_encoder)
    for model in (sd.unet, sd.text_encoder):
        for name, p in model.named_parameters():
            p.requires_grad_("lora_" in name)


def lora_parameters(sd: SD15) -> list[tuple[str, torch.nn.Parameter]]:
    out = []
    for prefix, model in (("unet.", sd.unet), ("text_encoder.", sd.text_encoder)):
        out += [(prefix + n, p) for n, p in model.named_parameters() if p.requires_grad]
    return out


def extract_concept(sd: SD15, cfg: TrainConfig, info: ConceptInfo) -> Concept:
    """The trained adapters as a Concept in kohya names (alpha adjusted for rsLoRA)."""
    file_alpha = cfg.alpha * math.sqrt(cfg.rank) if cfg.rslora else cfg.alpha
    parts: dict[str, dict[str, torch.Tensor]] = {}
    text_prefix = text_layout_prefix(sd.text_encoder)
    for name, p in lora_parameters(sd):
        component, rest = name.split(".", 1)
        module_path, _, tail = rest.partition(".lora_")
        part = "down" if tail.startswith("A") else "up"
        if component == "text_encoder":
            module_path = text_prefix + module_path
        parts.setdefault(lora_keys.kohya_name(component, module_path), {})[part] = p.detach().float().cpu().clone()
    lora = {n: LoraWeights(v["down"], v["up"], file_alpha) for n, v in parts.items()}
    return Concept(info, lora)


def _schedule(optimizer, cfg: TrainConfig, total: int):
    from diffusers.optimization import get_scheduler

    return get_scheduler(cfg.lr_scheduler, optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=total)


def state_path_for(out: Path, step: int) -> Path:
    return out.with_name(f"{out.stem}.state-{step:06d}.pt")


def list_states(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f"{out.stem}.state-*.pt"))


def base_model(sd: SD15) -> dict:
    """{'name', 'sha256'} of the base checkpoint a LoRA trains on (states record it)."""
    name, sha = sd.identity()
    return {"name": name, "sha256": sha}


def save_state(path: Path, sd: SD15, optimizer, scheduler, step: int, cfg: TrainConfig, losses: list[float],
               data_hash: str) -> Path:
    """A resumable checkpoint: LoRA, optimizer and scheduler state, step, config, losses and
    the base model's name and sha256. Written atomically; read back with
    torch.load(weights_only=True)."""
    state = {"format": STATE_FORMAT, "version": 1, "step": step, "config": cfg.identity(),
             "dataset_hash": data_hash, "losses": list(losses), "base_model": base_model(sd),
             "lora": {n: p.detach().cpu().clone() for n, p in lora_parameters(sd)},
             "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
    with atomic_path(path, overwrite=True) as tmp:
        torch.save(state, tmp)
    return path


@dataclass
class _Data:
    samples: list[Sample]
    arrays: list[np.ndarray]
    skipped: list[str]
    expanded: list[int]  # sample index per slot, with repeats
    hash: str


def _check_destination(out: str | Path, overwrite: bool) -> Path:
    out = Path(out)
    if out.suffix.lower() != ".safetensors":
        raise InputError("out", f"{out.name}: concept files end in .safetensors")
    return check_output(out, overwrite)


def _read_data(dataset, cfg: TrainConfig, kb) -> _Data:
    samples = scan_dataset(dataset, cfg.concepts or None, cfg.split, kb)
    samples, arrays, bad = load_images(samples, cfg.resolution, cfg.bands, cfg.max_bad_fraction)
    expanded = [i for i, s in enumerate(samples) for _ in range(s.repeats)]
    return _Data(samples, arrays, bad, expanded, dataset_hash(samples))


def _accelerator(cfg: TrainConfig, device: str):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    # accelerate keeps one global state per process; a later run (ComfyUI, tests) may want other settings
    AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(cpu=device == "cpu", gradient_accumulation_steps=cfg.grad_accumulation,
                       mixed_precision=cfg.mixed_precision)


def _prepare_model(sd: SD15, cfg: TrainConfig, release_unused: bool) -> list[torch.nn.Parameter]:
    """Free what training does not need, set precisions, attach the adapters: the trainable
    parameters (fp32 LoRA weights over frozen, possibly half-precision, base weights)."""
    if release_unused and not cfg.preview_every:
        sd.vae.to("meta")
        if not cfg.text_encoder:
            sd.text_encoder.to("meta")
    if cfg.mixed_precision != "no":
        half = torch.bfloat16 if cfg.mixed_precision == "bf16" else torch.float16
        sd.unet.to(half)
        if cfg.text_encoder:
            sd.text_encoder.to(half)
    add_lora(sd, cfg)
    for _, p in lora_parameters(sd):
        p.data = p.data.float()
    if cfg.gradient_checkpointing:
        sd.unet.enable_gradient_checkpointing()
    return [p for _, p in lora_parameters(sd)]


def _resumable(path: Path, sd: SD15, cfg: TrainConfig, data_hash: str, total: int) -> dict:
    """The state at `path`, checked against this run (settings, data, base model, length)
    before any work is done."""
    state = read_state(path, STATE_FORMAT)
    check_resumable(state, path, cfg.identity(), data_hash)
    check_base(state, path, base_model(sd))
    check_within(path, "step", int(state["step"]), total)
    return state


def _resume(state: dict, sd: SD15, optimizer, scheduler) -> tuple[int, list[float]]:
    named = dict(lora_parameters(sd))
    with torch.no_grad():
        for n, t in state["lora"].items():
            named[n].copy_(t)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return int(state["step"]), list(state["losses"])


def epsilon_loss(pred: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor, noise_schedule,
                 min_snr_gamma: float = 0.0) -> torch.Tensor:
    """SD1.5's objective, shared by the concept trainer and pretraining: the mean over the
    batch of each sample's epsilon MSE, min-SNR-gamma weighted when gamma > 0."""
    loss = F.mse_loss(pred.float(), noise.float(), reduction="none").mean(dim=(1, 2, 3))
    if min_snr_gamma > 0:
        alphas_cumprod = noise_schedule.alphas_cumprod.to(timesteps.device)[timesteps]
        snr = alphas_cumprod / (1 - alphas_cumprod)
        loss = loss * torch.clamp(snr, max=min_snr_gamma) / snr
    return loss.mean()


def pixels_to_tensor(arrays: np.ndarray) -> torch.Tensor:
    """B x H x W x 3 uint8 -> B x 3 x H x W floats in [-1, 1], the VAE's input."""
    return torch.from_numpy(np.ascontiguousarray(arrays)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def _micro_batch_loss(sd: SD15, unet, text_encoder, cache: _Cache, draws: StepDraws, index: torch.Tensor,
                      cfg: TrainConfig, noise_schedule, accelerator, epoch: int) -> torch.Tensor:
    """The (min-SNR weighted) epsilon-prediction loss of one micro-batch; each image trains
    with the caption drawn for it this epoch."""
    device = accelerator.device
    mean, std = cache.mean[index, draws.variant], cache.std[index, draws.variant]
    latents = ((mean + std * draws.latent_eps) * sd.vae_scale).to(device)
    noise, timesteps = draws.noise.to(device), draws.timesteps.to(device)
    texts = ["" if d else cache.captions[i][caption_choice(cfg.seed, epoch, i, len(cache.captions[i]))]
             for d, i in zip(draws.drop_caption, index.tolist())]
    noisy = noise_schedule.add_noise(latents, noise, timesteps)
    if cfg.text_encoder:
        context = join_contexts([encode_prompt(sd, t, False, text_encoder) for t in texts])
    else:
        context = join_contexts([cache.embeddings[t] for t in texts]).to(device)
    with accelerator.autocast():
        pred = unet(noisy.to(sd.unet.dtype), timesteps, encoder_hidden_states=context.to(sd.unet.dtype)).sample
    return epsilon_loss(pred, noise, timesteps, noise_schedule, cfg.min_snr_gamma)


def _concept_info(sd: SD15, cfg: TrainConfig, out: Path, data: _Data, total: int, per_step: int) -> ConceptInfo:
    epochs_done = total * cfg.grad_accumulation * per_step / len(data.expanded)
    base_name, base_hash = sd.identity()
    return ConceptInfo(name=out.stem, concepts=sorted({s.concept for s in data.samples}),
                       trigger_words=list(cfg.trigger_words), base_model_name=base_name, base_model_hash=base_hash,
                       rank=cfg.rank, alpha=cfg.alpha * math.sqrt(cfg.rank) if cfg.rslora else cfg.alpha,
                       module_set=cfg.module_set,
                       training=TrainingFacts(steps=total, epochs=max(1, round(epochs_done)), resolution=cfg.resolution,
                                              dataset_size=len(data.samples), dataset_hash=data.hash,
                                              learning_rate=cfg.learning_rate, seed=cfg.seed),
                       training_config={k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()})


def epoch_concept_path(out: Path, epoch: int) -> Path:
    return out.with_name(f"{out.stem}-epoch{epoch:02d}{out.suffix}")


def epoch_concepts(out: Path) -> dict[int, Path]:
    """The epoch concept files beside `out` (<stem>-epochNN.safetensors), by epoch."""
    pattern = re.compile(rf"^{re.escape(out.stem)}-epoch(\d+){re.escape(out.suffix)}$")
    found = (pattern.match(p.name) for p in out.parent.iterdir()) if out.parent.is_dir() else ()
    return {int(m[1]): out.with_name(m[0]) for m in found if m}


def _earlier_epochs(out: Path, cfg: TrainConfig, overwrite: bool, epochs_done: int) -> list[Path]:
    """The epoch files of an earlier run beside `out` that this run's would mix with (those past
    the epochs a resumed state has done): refused without `overwrite`; with it, returned, to
    be removed when this run writes its first epoch file (the whole set is replaced)."""
    if not cfg.save_every_epoch:
        return []
    earlier = [p for e, p in sorted(epoch_concepts(out).items()) if e > epochs_done]
    if earlier and not overwrite:
        names = ", ".join(p.name for p in earlier[:3]) + (", ..." if len(earlier) > 3 else "")
        raise InputError("out", f"{out.parent} holds epoch files of an earlier run ({names}); pass overwrite to replace "
                                "the whole set, or choose another name")
    return earlier


def save_epoch_concept(sd: SD15, cfg: TrainConfig, out: Path, data: _Data, done: int, epoch: int, per_step: int) -> Path:
    """The adapters as they are at the end of `epoch`, as a concept file beside `out`."""
    info = _concept_info(sd, cfg, out, data, done, per_step)
    info.name, info.training.epochs = epoch_concept_path(out, epoch).stem, epoch
    return save_concept(extract_concept(sd, cfg, info), epoch_concept_path(out, epoch), overwrite=True)


def train(sd: SD15, dataset: str | Path, out: str | Path, cfg: TrainConfig, *, kb=None, resume: str | Path | None = None,
          overwrite: bool = False, device: str = "cpu",
          on_progress: Callable[[Progress], None] | None = None,
          on_preview: Callable[[int, list], None] | None = None,
          should_stop: Callable[[], bool] | None = None, release_unused: bool = False,
          input_names: dict[str, str] | None = None) -> TrainResult:
    """Train a concept LoRA on `dataset` and save it to `out` (a .safetensors concept file).

    Checkpoints every cfg.save_every steps beside `out` (<stem>.state-<step>.pt, the last
    cfg.keep_states kept); `resume` continues one (same final LoRA as an uninterrupted run).
    release_unused frees the VAE (and a frozen text encoder) once cached, when no previews
    need them. The concept records the base checkpoint's file name and sha256 (sd.identity()).
    The output folder is checked before training starts, and one training at a time writes
    an output (a lock beside it). A state from another base model, or epoch files of an
    earlier run beside `out` (save_every_epoch, without `overwrite`), are refused before any
    work. If the final save fails, the concept is kept beside `out` or in the system temp
    folder and the error says where. `input_names` gives the caller's names for the core's
    inputs in errors (a node: {"out": "save_name"}).
    """
    with named_inputs(input_names):
        cfg.check()
        out = _check_destination(out, overwrite)
        check_writable(out.parent)
        # one lock per run: on several processes (torchrun, accelerate launch) the main one holds it
        with output_lock(out) if os.environ.get("RANK", "0") == "0" else contextlib.nullcontext():
            return _train(sd, dataset, out, cfg, kb, resume, overwrite, device, on_progress, on_preview, should_stop,
                          release_unused)


def _train(sd, dataset, out: Path, cfg: TrainConfig, kb, resume, overwrite, device, on_progress, on_preview,
           should_stop, release_unused) -> TrainResult:
    from diffusers import DDPMScheduler

    data = _read_data(dataset, cfg, kb)
    accelerator = _accelerator(cfg, device)
    world = accelerator.num_processes
    per_step = cfg.batch_size * world
    if per_step > len(data.expanded):
        raise InputError("batch_size", f"{cfg.batch_size} x {world} processes is larger than the dataset "
                                       f"({len(data.expanded)} images with repeats)")
    batches_per_epoch = len(data.expanded) // per_step
    total = cfg.steps or max(1, cfg.epochs * batches_per_epoch // cfg.grad_accumulation)
    state = _resumable(Path(resume), sd, cfg, data.hash, total) if resume else None
    epochs_done = int(state["step"]) * cfg.grad_accumulation // batches_per_epoch if state else 0
    stale_epochs = _earlier_epochs(out, cfg, overwrite, epochs_done) if accelerator.is_main_process else []
    device = accelerator.device
    sd.to(device)
    cache = build_cache(sd, data.samples, data.arrays, cfg, device)
    data.arrays = []
    params = _prepare_model(sd, cfg, release_unused)
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate)
    scheduler = _schedule(optimizer, cfg, total)
    noise_schedule = DDPMScheduler.from_config(sd.configs["scheduler"])
    start, losses = _resume(state, sd, optimizer, scheduler) if state else (0, [])
    # the scheduler stays ours: accelerate's wrapper steps it once per process, which would run the
    # schedule N times too fast on N processes (total already counts the global batch)
    unet, optimizer_p = accelerator.prepare(sd.unet, optimizer)
    text_encoder = accelerator.prepare(sd.text_encoder) if cfg.text_encoder else sd.text_encoder

    last_state = list_states(out)[-1] if list_states(out) else None
    previews: list = []
    t0 = time.perf_counter()
    order_epoch, order = -1, None
    rank = accelerator.process_index
    unet.train()
    with torch.enable_grad():  # callers may run under no_grad (ComfyUI: inference mode, see the node)
        for step in range(start, total):
            step_loss = 0.0
            for micro in range(cfg.grad_accumulation):
                with accelerator.accumulate(unet):
                    global_batch = step * cfg.grad_accumulation + micro
                    epoch, slot = divmod(global_batch, batches_per_epoch)
                    if epoch != order_epoch:  # drawn once an epoch, not once a step
                        order_epoch, order = epoch, epoch_order(cfg.seed, epoch, len(data.expanded))
                    picks = order[slot * per_step:(slot + 1) * per_step].tolist()
                    picks = picks[rank * cfg.batch_size:(rank + 1) * cfg.batch_size]
                    index = torch.tensor([data.expanded[i] for i in picks])
                    draws = step_draws(cfg.seed, global_batch, rank * cfg.batch_size, len(index), cache.mean.shape[1],
                                       tuple(cache.mean.shape[2:]), noise_schedule.config.num_train_timesteps,
                                       cfg.noise_offset, cfg.caption_dropout)
                    loss = _micro_batch_loss(sd, unet, text_encoder, cache, draws, index, cfg, noise_schedule, accelerator,
                                             epoch)
                    if not torch.isfinite(loss):
                        raise TrainingError(f"loss became {float(loss)} at step {step + 1}; training stopped. "
                                            f"The last good checkpoint is kept: {last_state or 'none was written yet'}. "
                                            "Lower the learning rate or check the data.")
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                        accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
                    optimizer_p.step()
                    if accelerator.sync_gradients and not optimizer_p.step_was_skipped:
                        scheduler.step()
                    optimizer_p.zero_grad(set_to_none=True)
                    # the loss of the whole global batch, as one process taking it all would log it
                    step_loss += float(accelerator.reduce(loss.detach(), "mean")) / cfg.grad_accumulation
            losses.append(step_loss)
            done = step + 1
            if on_progress is not None and accelerator.is_main_process:
                elapsed = time.perf_counter() - t0
                rate = (done - start) / elapsed if elapsed > 0 else 0.0
                on_progress(Progress(done, total, step_loss, scheduler.get_last_lr()[0], elapsed,
                                     (total - done) / rate if rate else 0.0, rate * per_step * cfg.grad_accumulation))
            if accelerator.is_main_process:
                finished = done * cfg.grad_accumulation // batches_per_epoch
                if cfg.save_every_epoch and finished > (done - 1) * cfg.grad_accumulation // batches_per_epoch:
                    for old in stale_epochs:  # the earlier run's set goes as this run's begins: never mixed
                        old.unlink(missing_ok=True)
                    stale_epochs = []
                    save_epoch_concept(sd, cfg, out, data, done, finished, per_step)
                if cfg.save_every and done % cfg.save_every == 0 and done < total:
                    last_state = save_state(state_path_for(out, done), sd, optimizer, scheduler, done, cfg, losses, data.hash)
                    prune_states(list_states(out), cfg.keep_states)
                if cfg.preview_every and (done % cfg.preview_every == 0 or done == total):
                    images = preview_images(sd, cfg, data.samples, kb)
                    previews.append((done, images))
                    if on_preview is not None:
                        on_preview(done, images)
            if should_stop is not None and should_stop() and done < total:
                path = save_state(state_path_for(out, done), sd, optimizer, scheduler, done, cfg, losses, data.hash)
                raise TrainingInterrupted(done, path)

    unet.eval()
    concept = extract_concept(sd, cfg, _concept_info(sd, cfg, out, data, total, per_step))
    summary = {"steps": total, "images": len(data.samples), "skipped_images": data.skipped,
               "final_loss": losses[-1] if losses else None, "seconds": round(time.perf_counter() - t0, 2), "out": str(out)}
    if accelerator.is_main_process:
        save_or_keep(out, lambda path, replace: save_concept(concept, path, overwrite=replace), overwrite)
        if previews:  # the thumbnail concept browsers show beside the file
            save_png(previews[-1][1][0], out.with_suffix(".preview.png"), overwrite=True)
    return TrainResult(concept, out, losses, previews, summary, accelerator.is_main_process)


def blank_preview(cfg: TrainConfig):
    """What stands for the previews of a run that drew none (preview_every = 0): one black
    image of the preview size."""
    from PIL import Image

    size = cfg.preview_size or cfg.resolution
    return Image.new("RGB", (size, size))


@torch.no_grad()
def preview_images(sd: SD15, cfg: TrainConfig, samples: list[Sample], kb=None) -> list:
    """One scene per concept word with a fixed seed, using the adapters as they are now
    (the scene pipeline in the paper's prompt form: "gs, geographic scene, <word>")."""
    size = cfg.preview_size or cfg.resolution
    settings = SamplingSettings(steps=cfg.preview_steps, seed=cfg.seed, width=size, height=size)
    was_training = sd.unet.training
    sd.unet.eval()
    images = [make_scene(sd, word, settings, trigger_words=cfg.trigger_words, kb=kb).image
              for word in sorted({s.concept for s in samples})]
    sd.unet.train(was_training)
    return images


@torch.no_grad()
def denoising_loss(sd: SD15, dataset: str | Path, cfg: TrainConfig, kb=None, split: str | None = "train",
                   concepts: list[str] | None = None, noise_draws: int = 4, seed: int = 1234) -> float:
    """Mean epsilon-prediction MSE over a dataset with fixed noise and timesteps (the same
    for every call with the same seed): a learning signal comparable before and after
    training, and across classes."""
    from diffusers import DDPMScheduler

    samples = scan_dataset(dataset, concepts, split, kb)
    samples, arrays, _ = load_images(samples, cfg.resolution, cfg.bands, cfg.max_bad_fraction)
    cache = build_cache(sd, samples, arrays, TrainConfig(**{**asdict(cfg), "augment": "none", "text_encoder": False}), sd.device)
    schedule = DDPMScheduler.from_config(sd.configs["scheduler"])
    total, n = 0.0, 0
    for i in range(len(samples)):
        g = seeded_generator(seed, i)
        latents = cache.mean[i:i + 1, 0] * sd.vae_scale
        context = cache.embeddings[cache.captions[i][0]].to(sd.device, sd.unet.dtype)
        for _ in range(noise_draws):
            noise = torch.randn(latents.shape, generator=g)
            t = torch.randint(50, 950, (1,), generator=g)
            noisy = schedule.add_noise(latents, noise, t)
            pred = sd.unet(noisy.to(sd.device, sd.unet.dtype), t.to(sd.device), encoder_hidden_states=context).sample
            total += float(F.mse_loss(pred.float().cpu(), noise))
            n += 1
    return total / n


def concept_output_path(folder: str | Path, save_name: str) -> Path:
    """<folder>/<save_name>.safetensors for a user-given name (subfolders allowed, no '..')."""
    name = safe_relative_name("save_name", save_name)
    if not name.lower().endswith(".safetensors"):
        name += ".safetensors"
    return Path(folder) / name


def loss_curve(losses: list[float], width: int = 512, height: int = 256):
    """A PIL line chart of the loss per step (raw and smoothed), with axis labels."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    left, right, top, bottom = 48, width - 10, 10, height - 24
    draw.rectangle([left, top, right, bottom], outline=(160, 160, 160))
    if losses:
        values = np.asarray(losses, dtype=np.float64)
        lo, hi = float(values.min()), float(values.max())
        hi = hi if hi > lo else lo + 1e-6
        k = max(1, len(values) // 20)
        smooth = np.convolve(values, np.ones(k) / k, mode="valid") if len(values) >= k else values

        def xy(i, v, n):
            x = left + (right - left) * (i / max(1, n - 1))
            return x, bottom - (bottom - top) * (v - lo) / (hi - lo)
        draw.line([xy(i, v, len(values)) for i, v in enumerate(values)], fill=(170, 190, 230), width=1)
        draw.line([xy(i + (k - 1) / 2, v, len(values)) for i, v in enumerate(smooth)], fill=(20, 60, 160), width=2)
        draw.text((4, top), f"{hi:.3f}", fill="black")
        draw.text((4, bottom - 10), f"{lo:.3f}", fill="black")
        draw.text((left, bottom + 6), f"step 1 .. {len(values)}   loss (blue: smoothed)", fill="black")
    return image
