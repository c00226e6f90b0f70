"""What several commands share: model and concept options, progress bars, output names."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from ..concepts.file import check_strength, load_concept
from ..models.sd15 import BUILT_IN_MODELS, MINI_CONCEPT, MINI_SAMPLING, native_resolution
from ..prompts.knowledge import load_knowledge
from ..scenes.sampling import MAX_SEED, SAMPLERS, SamplingSettings
from ..errors import InputError


def _integer(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"{value}; accepted: {least} or more")
    return value


def whole_number(text: str) -> int:
    """0, 1, 2, ... (seeds, steps where 0 means none)."""
    return _integer(text, 0)


def seed_list(text: str) -> list[int]:
    """'0-8' (a range, both ends included) or '1,5,9' (a list) -> seeds, each 0 to 2**32 - 1."""
    seeds: list[int] = []
    for part in text.split(","):
        ends = part.strip().split("-")
        if len(ends) > 2 or not all(e.strip() for e in ends):
            raise argparse.ArgumentTypeError(f"{text!r}: give seeds as 0-8 or 1,5,9")
        low, high = (whole_number(e.strip()) for e in (ends[0], ends[-1]))
        if high < low or high > MAX_SEED:
            raise argparse.ArgumentTypeError(f"{part.strip()!r}: give a rising range of seeds 0 to {MAX_SEED}")
        if high - low >= 1000:
            raise argparse.ArgumentTypeError(f"{part.strip()!r} holds {high - low + 1} seeds; a sheet takes at most 64")
        seeds += range(low, high + 1)
    return seeds


def count(text: str) -> int:
    """1, 2, 3, ... (how many images, subsets, phrases, a batch size)."""
    return _integer(text, 1)


DEFAULT_MODEL = "mini"


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--checkpoint", help="SD1.x checkpoint: .safetensors/.ckpt single file or a diffusers folder")
    g.add_argument("--model", default=DEFAULT_MODEL, choices=BUILT_IN_MODELS,
                   help=f"built-in model when no checkpoint is given: mini (Word2Scene-mini, trained here on AID; "
                        f"scenes use its shipped concept unless --concept is given) or tiny (random, for tests) "
                        f"(default: {DEFAULT_MODEL})")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1 (default: cpu)")
    p.add_argument("--half", action="store_true", help="run the model in float16 (GPU)")


def add_size_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--width", type=whole_number, default=None,
                   help="image width in pixels (default: the model's own: 512 for SD1.x, 128 for mini, 64 for tiny, "
                        "the trained resolution of a checkpoint made by pretrain)")
    p.add_argument("--height", type=whole_number, default=None, help="image height in pixels (default: as --width)")


def image_size(args) -> dict[str, int]:
    """{'width', 'height'} from --width/--height, else the model's native resolution (a given
    0 stays 0, and is refused by the sampling settings)."""
    native = native_resolution(args.checkpoint, args.model)
    width = native if args.width is None else args.width
    return {"width": width, "height": width if args.height is None else args.height}


def built_in_mini(args) -> bool:
    """The command draws on the built-in Word2Scene-mini (no --checkpoint, --model mini)."""
    return not args.checkpoint and args.model == "mini"


def add_sampling_args(p: argparse.ArgumentParser, sampler: bool = True) -> None:
    p.add_argument("--steps", type=whole_number, default=None,
                   help=f"sampling steps (default: {MINI_SAMPLING['steps']} on the built-in --model mini, chosen by "
                        f"measurement; the paper's 30 for tiny and any --checkpoint)")
    p.add_argument("--cfg", type=float, default=None,
                   help=f"classifier-free guidance scale (default: {MINI_SAMPLING['cfg']:g} on the built-in --model mini; "
                        f"the paper's 7 otherwise)")
    if sampler:
        mini = MINI_SAMPLING["sampler"]
        p.add_argument("--sampler", default=None, choices=tuple(SAMPLERS),
                       help="ddim (the paper's) or dpmpp_2m (DPM-Solver++(2M), good in fewer steps) (default: ddim"
                            + ("" if mini == "ddim" else f"; {mini} on the built-in --model mini") + ")")


def sampling_options(args) -> dict:
    """{'sampler', 'steps', 'cfg'}: each one given on the command line, else the model's default:
    mini's measured MINI_SAMPLING on the built-in mini, the paper's (SamplingSettings) otherwise."""
    paper = SamplingSettings()
    defaults = MINI_SAMPLING if built_in_mini(args) else {}
    return {name: getattr(args, name) if getattr(args, name, None) is not None else defaults.get(name, getattr(paper, name))
            for name in ("sampler", "steps", "cfg")}


def name_inputs(p: argparse.ArgumentParser, **names: str) -> None:
    """Tell errors about core input `name` as this command's option (see cli.input_flag)."""
    p.set_defaults(input_names={**(p.get_default("input_names") or {}), **names})


def add_concept_args(p: argparse.ArgumentParser) -> None:
    name_inputs(p, strength_model="--strength", strength_clip="--strength-clip")
    p.add_argument("--concept", action="append", default=[], metavar="FILE",
                   help="concept (LoRA) .safetensors; repeat to stack concepts")
    p.add_argument("--strength", action="append", type=float, default=[], metavar="S",
                   help="model strength per --concept (default: the file's recommended strength)")
    p.add_argument("--strength-clip", action="append", type=float, default=[], metavar="S",
                   help="text-encoder strength per --concept (default: same as --strength)")


def load_concepts(args) -> list:
    """(concept, strength_model, strength_clip) per --concept. On the built-in mini model
    without --concept, its shipped default concept (Word2Scene-C, all 30 AID classes) at
    --strength (default 1)."""
    applied = []
    paths, input_name = args.concept, "--concept"
    if not paths and built_in_mini(args):
        paths, input_name = [MINI_CONCEPT], "--model"  # the user gave no concept: the model brought it
    for n, path in enumerate(paths):
        concept = load_concept(path, input_name)
        strength = check_strength("--strength", args.strength[n]) if n < len(args.strength) \
            else concept.info.recommended_strength
        strength_clip = check_strength("--strength-clip", args.strength_clip[n]) if n < len(args.strength_clip) \
            else strength
        applied.append((concept, strength, strength_clip))
    for flag, given in (("--strength", args.strength), ("--strength-clip", args.strength_clip)):
        if len(given) > len(paths):
            raise InputError(flag, "given more often than --concept; give one per concept")
    return applied


DEFAULT_FOLDER = Path("outputs")


def default_name(word: str, seed: int | str) -> Callable[[int], Path]:
    """n -> outputs/<word>_<seed>_<n, 5 digits>.png: generate's names when --out is not given
    (the first free one is taken when the image is written: files.write_numbered)."""
    stem = "".join(c if c.isalnum() else "_" for c in word.strip().lower()).strip("_") or "scene"
    return lambda n: DEFAULT_FOLDER / f"{stem}_{seed}_{n:05d}.png"


def sampling_progress(total: int):
    def on_step(step: int, _total: int, *_latents) -> None:
        if sys.stderr.isatty() or step == total:
            print(f"\rsampling {step}/{total}", end="\n" if step == total else "", file=sys.stderr, flush=True)
    return on_step


def safe_stem(text: str) -> str:
    return "_".join("".join(c if c.isalnum() else " " for c in text.lower()).split()) or "word"


def knowledge():
    kb = load_knowledge()
    for problem in kb.problems:
        print(f"word2scene: warning: skipped a user knowledge file: {problem}", file=sys.stderr)
    return kb


class TrainBar:
    """tqdm bar with step, loss and ETA."""
    def __init__(self):
        self.bar, self.phase = None, None

    def update(self, p) -> None:
        from tqdm import tqdm

        phase = getattr(p, "phase", None)  # pretraining has two phases, each with its own bar
        if self.bar is not None and phase != self.phase:
            self.close()
        if self.bar is None:
            self.bar, self.phase = tqdm(total=p.total, initial=p.step - 1, unit="step", dynamic_ncols=True, desc=phase), phase
        self.bar.update(p.step - self.bar.n)
        if hasattr(p, "lr"):
            self.bar.set_postfix(loss=f"{p.loss:.4f}", lr=f"{p.lr:.2e}", img_s=f"{p.images_per_second:.2f}")
        else:
            self.bar.set_postfix(loss=f"{p.loss:.4f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def split_arg(value: str) -> str | None:
    return None if value == "all" else value
