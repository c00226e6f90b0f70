"""The concept trainer's config, apart from the code that applies it (as peft keeps LoraConfig):
every field of a run, each stating its default, help, range and flag once, and the names of
what the fields choose (adapted modules, augmentations, optimizer)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from ..concepts.file import DEFAULT_TRIGGER_WORDS, TrainingFacts
from ..errors import InputError
from ..settings import INTEGERS, REPEATED, SPLIT, WORDS, check_ranges, option

UNET_TARGETS = {"attention": ["to_q", "to_k", "to_v", "to_out.0"],
                "kohya": ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2"]}
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]
AUGMENTS = {"none": 1, "flip": 2, "dihedral": 8}  # augmentation -> variants of each image (symmetries of the square)
OPTIMIZER = torch.optim.AdamW  # the one optimizer (learning_rate is its rate); concept files name it


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

    def recorded(self) -> dict:
        """Every field as states and concept files record it (JSON: tuples as lists)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    def identity(self) -> dict:
        """The fields a resumed run must share with the run that wrote the checkpoint."""
        keep = ("rank", "alpha", "rslora", "module_set", "text_encoder", "resolution", "augment", "batch_size",
                "grad_accumulation", "seed", "concepts", "trigger_words", "learning_rate", "lr_scheduler", "warmup_steps")
        return {k: v for k, v in self.recorded().items() if k in keep}

    def facts(self, steps: int, epochs: int, images: int, data_hash: str) -> TrainingFacts:
        """How a concept trained with this config was trained, as concept files state it
        (kohya's ss_* keys): after `steps` optimizer steps (`epochs` whole epochs) on
        `images` images of the data whose dataset_hash is `data_hash`."""
        return TrainingFacts(steps=steps, epochs=epochs, resolution=self.resolution, dataset_size=images,
                             dataset_hash=data_hash, learning_rate=self.learning_rate, seed=self.seed,
                             optimizer=f"{OPTIMIZER.__module__}.{OPTIMIZER.__name__}", lr_scheduler=self.lr_scheduler,
                             warmup_steps=self.warmup_steps, batch_size=self.batch_size,
                             gradient_accumulation=self.grad_accumulation, mixed_precision=self.mixed_precision,
                             noise_offset=self.noise_offset, min_snr_gamma=self.min_snr_gamma,
                             max_grad_norm=self.max_grad_norm, caption_dropout=self.caption_dropout)

    @property
    def file_alpha(self) -> float:
        """alpha as a concept file states it, for the scale alpha / rank every reader applies:
        alpha x sqrt(rank) under rsLoRA (whose scale is alpha / sqrt(rank))."""
        return self.alpha * math.sqrt(self.rank) if self.rslora else self.alpha
