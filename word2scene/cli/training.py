"""Commands that train: train (a concept LoRA), pretrain (the Word2Scene-mini base model)."""
from __future__ import annotations

import signal
import sys
from contextlib import contextmanager
from typing import Callable, Iterator

from ..models.sd15 import load_sd15
from ..training.base_model import pretrain, PretrainConfig
from ..scenes.render import loss_curve
from ..training.config import TrainConfig
from ..training.lora import train
from ..training.states import TrainingError, TrainingInterrupted
from ..files import check_output
from ..imagery import save_png
from ..settings import add_arguments, flags, from_arguments
from .common import TrainBar, add_model_args, knowledge


def add_commands(sub) -> None:
    """Register this group's commands on the top-level subparsers."""
    t = sub.add_parser("train", help="train a concept LoRA on a folder of RS images",
                       description="Train a concept LoRA. Several GPUs or machines: "
                       "accelerate launch -m word2scene train DATASET ... (same options).")
    t.add_argument("dataset", help="captions.jsonl folder, kohya '10_name' folders, class folders, or a flat folder")
    add_model_args(t)
    t.add_argument("--out", required=True, help="concept .safetensors to write (never overwritten without --overwrite)")
    t.add_argument("--overwrite", action="store_true")
    t.add_argument("--resume", help="a state file written by --save-every")
    t.add_argument("--deterministic", action="store_true",
                   help="bit-reproducible runs: deterministic kernels and one CPU thread (slower)")
    add_arguments(t, TrainConfig)
    t.set_defaults(handler=cmd_train)

    pt = sub.add_parser("pretrain", help="train the Word2Scene-mini base model from scratch on a scene dataset",
                        description="Fit the VAE, then train the UNet on every class in the shifted 'old aerial "
                        "photograph' look (the base model the concept LoRA then corrects).")
    pt.add_argument("dataset", help="captions.jsonl folder, kohya '10_name' folders or class folders (every class is used)")
    pt.add_argument("--out", required=True, help="checkpoint .safetensors to write (fp16 single file)")
    pt.add_argument("--overwrite", action="store_true")
    pt.add_argument("--resume", help="a state file written by --save-every")
    pt.add_argument("--init", help="start from this checkpoint's weights (a model of the same --model) instead of "
                                   "random ones; with --vae-steps 0 its VAE is kept as it is")
    pt.add_argument("--init-vae", help="take the VAE (and its latent scale) from this checkpoint instead (with "
                                       "--init: a new VAE under an earlier UNet and text encoder)")
    pt.add_argument("--device", default="cpu", help="torch device to train on (cpu, cuda, cuda:1, ...); the random "
                                                    "draws come from the CPU's generator on every device")
    add_arguments(pt, PretrainConfig)
    pt.set_defaults(handler=cmd_pretrain)


@contextmanager
def stop_on_ctrl_c() -> Iterator[Callable[[], bool]]:
    """Ctrl-C asks training to stop after its current step and write a resumable state: yields
    the should_stop the trainers ask after every step."""
    stop = []
    previous = signal.signal(signal.SIGINT, lambda *_: stop.append(True))
    try:
        yield lambda: bool(stop)
    finally:
        signal.signal(signal.SIGINT, previous)


def stopped(exc: TrainingInterrupted) -> int:
    print(f"word2scene: stopped at {exc.where}; resume with --resume {exc.state_path}", file=sys.stderr)
    return 130


def cmd_train(args) -> int:
    cfg = from_arguments(TrainConfig, args).check(flags(TrainConfig))
    out = check_output(args.out, args.overwrite, "--out", "--overwrite")
    import torch

    if args.deterministic:
        torch.use_deterministic_algorithms(True)
        if args.device == "cpu":
            torch.set_num_threads(1)
    # frozen weights straight in half precision for mixed-precision training (one copy in memory)
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.mixed_precision, torch.float32)
    sd = load_sd15(args.checkpoint, args.model, half)
    bar = TrainBar()
    previews = out.with_name(out.stem + ".previews")

    def on_preview(step, images):
        for n, image in enumerate(images):
            save_png(image, previews / f"step_{step:06d}_{n}.png", overwrite=True)

    try:
        with stop_on_ctrl_c() as should_stop:
            result = train(sd, args.dataset, out, cfg, kb=knowledge(), resume=args.resume, overwrite=args.overwrite,
                           device=args.device, on_progress=bar.update, on_preview=on_preview,
                           release_unused=True, should_stop=should_stop)
    except TrainingInterrupted as exc:
        bar.close()
        return stopped(exc)
    except TrainingError as exc:
        print(f"word2scene: error: {exc}", file=sys.stderr)
        return 1
    finally:
        bar.close()
    if not result.main_process:  # one process of several: the main one writes and reports
        return 0
    save_png(loss_curve(result.losses), out.with_name(out.stem + ".loss.png"), overwrite=True)
    skipped = result.summary["skipped_images"]
    print(f"wrote {out}: {result.summary['steps']} steps on {result.summary['images']} images, final loss "
          f"{result.summary['final_loss']:.4f}" + (f"; skipped {len(skipped)} images: {', '.join(skipped)}" if skipped else ""))
    return 0


def cmd_pretrain(args) -> int:
    cfg = from_arguments(PretrainConfig, args).check(flags(PretrainConfig))
    out = check_output(args.out, args.overwrite, "--out", "--overwrite")
    bar = TrainBar()
    try:
        with stop_on_ctrl_c() as should_stop:
            pretrain(args.dataset, out, cfg, kb=knowledge(), resume=args.resume, init=args.init,
                     init_vae=args.init_vae, device=args.device, overwrite=args.overwrite,
                     on_progress=bar.update, should_stop=should_stop)
    except TrainingInterrupted as exc:
        bar.close()
        return stopped(exc)
    finally:
        bar.close()
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)")
    return 0
