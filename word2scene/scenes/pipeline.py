"""The one scene pipeline: word(s) -> expanded prompt -> sampling -> image with its parameters.

The CLI's generate and grid, the protocol and training previews all make their scenes
here, so a prompt, a seed and a model give the same image whichever of them asks.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from PIL import Image

from ..concepts.file import DEFAULT_TRIGGER_WORDS
from ..errors import InputError
from ..imagery import save_png
from ..prompts.expander import Expansion, expand
from ..prompts.knowledge import KnowledgeBase
from .render import grid
from .sampling import decode, sample, SAMPLER_NAMES, SamplingSettings


@dataclass
class Scene:
    """One generated scene and everything that made it."""
    image: Image.Image
    word: str
    prompt: str
    settings: SamplingSettings  # the negative prompt included
    parameters: dict  # what its PNG records (prompt, sampling, model, style, ...)

    def save(self, path: str | os.PathLike, overwrite: bool = False, input_name: str = "out") -> Path:
        return save_png(self.image, path, self.parameters, overwrite=overwrite, input_name=input_name)


def sampling_record(settings: SamplingSettings) -> dict:
    """What a scene's PNG records of its sampling: the settings, the sampler under the name
    AUTOMATIC1111's parameters give it."""
    return {**settings.as_dict(), "sampler": SAMPLER_NAMES[settings.sampler]}


def check_drawn_with(paths: list[Path], settings: SamplingSettings, strength: float) -> None:
    """Scenes already in an output folder must have been drawn with this run's sampling
    settings and strength (their PNGs record them): a resumed run never mixes two settings in
    one report. An InputError names the first image that differs and how."""
    wanted = {k: v for k, v in sampling_record(settings).items() if k in ("sampler", "steps", "cfg", "width", "height")}
    wanted["strength"] = strength
    for path in paths:
        if not path.is_file():
            continue
        with Image.open(path) as image:
            recorded = json.loads(image.text.get("word2scene", "{}"))
        differ = {k: (recorded.get(k), v) for k, v in wanted.items() if recorded.get(k) != v}
        if differ:
            then = ", ".join(f"{k} {a}" for k, (a, _) in differ.items())
            now = ", ".join(f"{k} {b}" for k, (_, b) in differ.items())
            raise InputError("out", f"{path} was drawn with {then}; this run draws {now}. Resume with the same "
                                    f"settings, or choose another output folder")


def scene_prompt(sd, words: str, *, style: str = "word2scene", detail: int = 1, seed: int = 0,
                 trigger_words: list[str] | None = None, kb: KnowledgeBase | None = None) -> Expansion:
    """The expanded prompt of `words`, counted with the model's own tokenizer."""
    triggers = list(trigger_words) if trigger_words is not None else list(DEFAULT_TRIGGER_WORDS)
    return expand(words, style, detail, seed, triggers, kb, sd.tokenizer)


def make_scene(sd, words: str, settings: SamplingSettings, *, style: str = "word2scene", detail: int = 1,
               trigger_words: list[str] | None = None, kb: KnowledgeBase | None = None, negative: str | None = None,
               on_step: Callable | None = None, parameters: dict | None = None) -> Scene:
    """One scene for `words`: expanded, sampled with `settings` (its seed also picks the
    expander's details), decoded. `negative` replaces the expander's negative prompt;
    `parameters` adds entries to what the PNG records."""
    return make_scenes(sd, [(words, settings.seed)], settings, style=style, detail=detail, trigger_words=trigger_words,
                       kb=kb, negative=negative, on_step=on_step, parameters=parameters)[0]


def make_scenes(sd, jobs: list[tuple[str, int]], settings: SamplingSettings, *, style: str = "word2scene",
                detail: int = 1, trigger_words: list[str] | None = None, kb: KnowledgeBase | None = None,
                negative: str | None = None, on_step: Callable | None = None,
                parameters: dict | None = None) -> list[Scene]:
    """make_scene for each (words, seed) job, sampled as one batch per negative prompt: each
    scene is the one make_scene draws for those words and seed (up to float rounding)."""
    expansions = [scene_prompt(sd, w, style=style, detail=detail, seed=seed, trigger_words=trigger_words, kb=kb)
                  for w, seed in jobs]
    negatives = [e.negative if negative is None else negative for e in expansions]
    scenes: list[Scene | None] = [None] * len(jobs)
    for neg in dict.fromkeys(negatives):
        batch = [k for k, n in enumerate(negatives) if n == neg]
        shared = replace(settings, negative=neg).check()
        latents = sample(sd, [expansions[k].positive for k in batch], shared, on_step=on_step,
                         seeds=[jobs[k][1] for k in batch])
        for k, image in zip(batch, decode(sd, latents)):
            own = replace(shared, seed=jobs[k][1])
            recorded = {"prompt": expansions[k].positive, **sampling_record(own), "model": sd.source,
                        "style": style, **(parameters or {})}
            scenes[k] = Scene(image, jobs[k][0], expansions[k].positive, own, recorded)
    return scenes


MAX_SHEET_SEEDS = 64


def make_seed_sheet(sd, words: str, settings: SamplingSettings, seeds: list[int], **options) -> Scene:
    """The scenes of `words` for each of `seeds` (each as make_scene draws it), tiled row by
    row in a near-square grid without gaps: how varied and how stable the model is for one
    prompt. The sheet's PNG records the seeds in order."""
    if not seeds or len(seeds) > MAX_SHEET_SEEDS or len(set(seeds)) != len(seeds):
        raise InputError("seeds", f"{len(seeds)} seeds{' (some repeated)' if len(set(seeds)) != len(seeds) else ''}; "
                                  f"give 1 to {MAX_SHEET_SEEDS} different seeds")
    scenes = make_scenes(sd, [(words, seed) for seed in seeds], settings, **options)
    columns = math.ceil(math.sqrt(len(seeds)))
    first = scenes[0]
    recorded = {**first.parameters, "seed": None, "seeds": list(seeds), "columns": columns}
    return Scene(grid([s.image for s in scenes], columns, pad=0), first.word, first.prompt, first.settings, recorded)
