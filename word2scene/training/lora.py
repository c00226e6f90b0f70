"""Concept LoRA training, the paper's method: `train` runs the loop over a dataset.

The loop reads as its steps: read the data, plan the steps over it, encode it once, attach
the adapters, then optimizer steps, each followed by what the run writes along the way
(epoch files, resumable states, previews), and at the end the concept. Exactly resumable:
all randomness of step k comes from (seed, k), the data order of epoch e from (seed, e),
and states carry LoRA, optimizer and scheduler state. Its parts: config.py (TrainConfig),
data.py (images and captions encoded once), adapters.py (peft LoRA in, a Concept out),
objective.py (the loss), outputs.py (what a run writes and where).
"""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..concepts.file import Concept
from ..errors import InputError, named_inputs
from ..files import atomic_path, check_writable, output_lock
from ..models.diffusion import use_fast_attention
from ..models.sd15 import SD15
from .adapters import add_lora, extract_concept, lora_parameters
from .config import OPTIMIZER, TrainConfig
from .data import build_cache, LatentCache, read_data, TrainingData
from .draws import epoch_order, step_draws
# denoising_loss: the trainer's measure of a model on a dataset, used beside train (bench/bench_training.py)
from .objective import denoising_loss, micro_batch_loss  # noqa: F401
from .outputs import (check_destination, concept_info, earlier_epochs, preview_images, save_epoch_concept,
                      save_trained)
from .states import (check_base, check_resumable, check_within, prune_states, read_state, TrainingError,
                     TrainingInterrupted)

STATE_FORMAT = "word2scene-train-state"


@dataclass
class Progress:
    step: int
    total: int
    loss: float
    lr: float
    elapsed: float  # seconds
    eta: float  # seconds
    images_per_second: float


@dataclass
class TrainResult:
    concept: Concept
    path: Path
    losses: list[float]
    previews: list  # [(step, [PIL images])]
    summary: dict
    main_process: bool = True  # False on the other processes of a multi-process run: they write nothing


# --- resumable states ---------------------------------------------------------------------

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


def _resumable(path: Path, sd: SD15, cfg: TrainConfig, data_hash: str, total: int) -> dict:
    """The state at `path`, checked against this run (settings, data, base model, length)
    before any work is done."""
    state = read_state(path, STATE_FORMAT)
    check_resumable(state, path, cfg.identity(), data_hash)
    check_base(state, path, base_model(sd))
    check_within(path, "step", int(state["step"]), total)
    return state


# --- the run ------------------------------------------------------------------------------

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
        out = check_destination(out, overwrite)
        check_writable(out.parent)
        # one lock per run: on several processes (torchrun, accelerate launch) the main one holds it
        with output_lock(out) if os.environ.get("RANK", "0") == "0" else contextlib.nullcontext():
            return _train(sd, dataset, out, cfg, kb, resume, overwrite, device, on_progress, on_preview, should_stop,
                          release_unused)


@dataclass
class _Plan:
    """How the run's optimizer steps fall on the data."""
    per_step: int  # images of one micro-batch over all processes (batch size x processes)
    batches_per_epoch: int  # micro-batches
    total: int  # optimizer steps
    grad_accumulation: int

    def epochs_after(self, steps: int) -> int:
        """Whole epochs done after `steps` optimizer steps."""
        return steps * self.grad_accumulation // self.batches_per_epoch


@dataclass
class _Run:
    """A run in progress: the model and its optimizer, the data it reads, what it has done."""
    sd: SD15
    cfg: TrainConfig
    data: TrainingData
    out: Path
    accelerator: object
    plan: _Plan
    kb: object = None
    cache: LatentCache | None = None
    params: list = field(default_factory=list)  # the trainable LoRA weights
    optimizer: object = None
    scheduler: object = None  # the learning-rate schedule
    noise_schedule: object = None  # the DDPM schedule of the objective
    unet: object = None  # as accelerate prepared them
    text_encoder: object = None
    prepared_optimizer: object = None
    losses: list[float] = field(default_factory=list)  # per optimizer step
    previews: list = field(default_factory=list)  # [(step, [PIL images])]
    last_state: Path | None = None
    stale_epochs: list[Path] = field(default_factory=list)  # an earlier run's epoch files, removed at our first
    order: tuple[int, object] = (-1, None)  # (epoch, its data order): drawn once an epoch

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process


def _train(sd, dataset, out: Path, cfg: TrainConfig, kb, resume, overwrite, device, on_progress, on_preview,
           should_stop, release_unused) -> TrainResult:
    data = read_data(dataset, cfg, kb)
    accelerator = _accelerator(cfg, device)
    plan = _plan(cfg, data, accelerator.num_processes)
    state = _resumable(Path(resume), sd, cfg, data.hash, plan.total) if resume else None
    run = _Run(sd, cfg, data, out, accelerator, plan, kb)
    if run.main:
        run.stale_epochs = earlier_epochs(out, cfg, overwrite, plan.epochs_after(int(state["step"])) if state else 0)
    _encode_data(run)
    _prepare_model(run, release_unused)
    start = _resume(run, state) if state else 0
    _distribute(run)
    t0 = time.perf_counter()
    run.unet.train()
    with torch.enable_grad():  # callers may run under no_grad (ComfyUI: inference mode, see the node)
        for step in range(start, plan.total):
            run.losses.append(_optimizer_step(run, step))
            done = step + 1
            if on_progress is not None and run.main:
                on_progress(_progress(run, done, start, time.perf_counter() - t0))
            if run.main:
                _write_along(run, done, on_preview)
            if should_stop is not None and should_stop() and done < plan.total:
                raise TrainingInterrupted(done, _save_state(run, done))
    run.unet.eval()
    return _finish(run, overwrite, time.perf_counter() - t0)


def _accelerator(cfg: TrainConfig, device: str):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    # accelerate keeps one global state per process; a later run (ComfyUI, tests) may want other settings
    AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(cpu=device == "cpu", gradient_accumulation_steps=cfg.grad_accumulation,
                       mixed_precision=cfg.mixed_precision)


def _plan(cfg: TrainConfig, data: TrainingData, processes: int) -> _Plan:
    """The run's length: cfg.steps, or cfg.epochs whole epochs of the data with its repeats."""
    per_step = cfg.batch_size * processes
    if per_step > len(data.expanded):
        raise InputError("batch_size", f"{cfg.batch_size} x {processes} processes is larger than the dataset "
                                       f"({len(data.expanded)} images with repeats)")
    batches_per_epoch = len(data.expanded) // per_step
    total = cfg.steps or max(1, cfg.epochs * batches_per_epoch // cfg.grad_accumulation)
    return _Plan(per_step, batches_per_epoch, total, cfg.grad_accumulation)


def _encode_data(run: _Run) -> None:
    """Move the model to the run's device and encode the data once; the images are let go."""
    run.sd.to(run.accelerator.device)
    run.cache = build_cache(run.sd, run.data.samples, run.data.arrays, run.cfg, run.accelerator.device)
    run.data.arrays = []


def _prepare_model(run: _Run, release_unused: bool) -> None:
    """Free what training does not need, set precisions, attach the adapters (fp32 LoRA
    weights over frozen, possibly half-precision, base weights), and make their optimizer
    and both schedules."""
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler

    sd, cfg = run.sd, run.cfg
    if release_unused and not cfg.preview_every:
        sd.vae.to("meta")
        if not cfg.text_encoder:
            sd.text_encoder.to("meta")
    if cfg.mixed_precision != "no":
        half = torch.bfloat16 if cfg.mixed_precision == "bf16" else torch.float16
        sd.unet.to(half)
        if cfg.text_encoder:
            sd.text_encoder.to(half)
        use_fast_attention(sd.unet, cfg.mixed_precision, run.accelerator.device)
    add_lora(sd, cfg)
    for _, p in lora_parameters(sd):
        p.data = p.data.float()
    if cfg.gradient_checkpointing:
        sd.unet.enable_gradient_checkpointing()
    run.params = [p for _, p in lora_parameters(sd)]
    run.optimizer = OPTIMIZER(run.params, lr=cfg.learning_rate)
    run.scheduler = get_scheduler(cfg.lr_scheduler, run.optimizer, num_warmup_steps=cfg.warmup_steps,
                                  num_training_steps=run.plan.total)
    run.noise_schedule = DDPMScheduler.from_config(sd.configs["scheduler"])


def _resume(run: _Run, state: dict) -> int:
    """Load a checked state into the run; the step it continues from."""
    named = dict(lora_parameters(run.sd))
    with torch.no_grad():
        for n, t in state["lora"].items():
            named[n].copy_(t)
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.losses = list(state["losses"])
    return int(state["step"])


def _distribute(run: _Run) -> None:
    """Hand the UNet (and a trained text encoder) and the optimizer to accelerate. The
    schedule stays ours: accelerate's wrapper steps it once per process, which would run the
    schedule N times too fast on N processes (plan.total already counts the global batch)."""
    run.unet, run.prepared_optimizer = run.accelerator.prepare(run.sd.unet, run.optimizer)
    run.text_encoder = run.accelerator.prepare(run.sd.text_encoder) if run.cfg.text_encoder else run.sd.text_encoder
    states = list_states(run.out)
    run.last_state = states[-1] if states else None


def _optimizer_step(run: _Run, step: int) -> float:
    """One optimizer step of cfg.grad_accumulation micro-batches; the loss of the whole
    global batch, as one process taking it all would log it."""
    cfg, accelerator, optimizer = run.cfg, run.accelerator, run.prepared_optimizer
    step_loss = 0.0
    for micro in range(cfg.grad_accumulation):
        with accelerator.accumulate(run.unet):
            loss = _micro_batch_loss(run, step * cfg.grad_accumulation + micro)
            if not torch.isfinite(loss):
                raise TrainingError(f"loss became {float(loss)} at step {step + 1}; training stopped. "
                                    f"The last good checkpoint is kept: {run.last_state or 'none was written yet'}. "
                                    "Lower the learning rate or check the data.")
            accelerator.backward(loss)
            if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                accelerator.clip_grad_norm_(run.params, cfg.max_grad_norm)
            optimizer.step()
            if accelerator.sync_gradients and not optimizer.step_was_skipped:
                run.scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step_loss += float(accelerator.reduce(loss.detach(), "mean")) / cfg.grad_accumulation
    return step_loss


def _micro_batch_loss(run: _Run, global_batch: int) -> torch.Tensor:
    """The loss of micro-batch `global_batch` of the run: this process's share of the
    epoch's data order, with the draws of its place in the global batch."""
    cfg, cache, plan = run.cfg, run.cache, run.plan
    epoch, slot = divmod(global_batch, plan.batches_per_epoch)
    if run.order[0] != epoch:
        run.order = (epoch, epoch_order(cfg.seed, epoch, len(run.data.expanded)))
    rank = run.accelerator.process_index
    picks = run.order[1][slot * plan.per_step:(slot + 1) * plan.per_step].tolist()
    picks = picks[rank * cfg.batch_size:(rank + 1) * cfg.batch_size]
    index = torch.tensor([run.data.expanded[i] for i in picks])
    draws = step_draws(cfg.seed, global_batch, rank * cfg.batch_size, len(index), cache.mean.shape[1],
                       tuple(cache.mean.shape[2:]), run.noise_schedule.config.num_train_timesteps, cfg.noise_offset,
                       cfg.caption_dropout)
    return micro_batch_loss(run.sd, run.unet, run.text_encoder, cache, draws, index, cfg, run.noise_schedule,
                            run.accelerator, epoch)


def _progress(run: _Run, done: int, start: int, elapsed: float) -> Progress:
    rate = (done - start) / elapsed if elapsed > 0 else 0.0
    return Progress(done, run.plan.total, run.losses[-1], run.scheduler.get_last_lr()[0], elapsed,
                    (run.plan.total - done) / rate if rate else 0.0,
                    rate * run.plan.per_step * run.cfg.grad_accumulation)


def _write_along(run: _Run, done: int, on_preview) -> None:
    """What the main process writes after step `done`: the concept of an epoch just finished
    (save_every_epoch), a resumable state (save_every), previews (preview_every)."""
    cfg, plan = run.cfg, run.plan
    finished = plan.epochs_after(done)
    if cfg.save_every_epoch and finished > plan.epochs_after(done - 1):
        for old in run.stale_epochs:  # the earlier run's set goes as this run's begins: never mixed
            old.unlink(missing_ok=True)
        run.stale_epochs = []
        save_epoch_concept(run.sd, cfg, run.out, run.data, done, finished, plan.per_step)
    if cfg.save_every and done % cfg.save_every == 0 and done < plan.total:
        run.last_state = _save_state(run, done)
        prune_states(list_states(run.out), cfg.keep_states)
    if cfg.preview_every and (done % cfg.preview_every == 0 or done == plan.total):
        images = preview_images(run.sd, cfg, run.data.samples, run.kb)
        run.previews.append((done, images))
        if on_preview is not None:
            on_preview(done, images)


def _save_state(run: _Run, done: int) -> Path:
    return save_state(state_path_for(run.out, done), run.sd, run.optimizer, run.scheduler, done, run.cfg, run.losses,
                      run.data.hash)


def _finish(run: _Run, overwrite: bool, seconds: float) -> TrainResult:
    """The trained concept, saved by the main process, and the run's summary."""
    total = run.plan.total
    concept = extract_concept(run.sd, run.cfg, concept_info(run.sd, run.cfg, run.out, run.data, total, run.plan.per_step))
    summary = {"steps": total, "images": len(run.data.samples), "skipped_images": run.data.skipped,
               "final_loss": run.losses[-1] if run.losses else None, "seconds": round(seconds, 2), "out": str(run.out)}
    if run.main:
        save_trained(concept, run.out, overwrite, run.previews)
    return TrainResult(concept, run.out, run.losses, run.previews, summary, run.main)
