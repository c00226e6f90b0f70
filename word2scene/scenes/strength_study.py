"""The paper's epoch x strength study: the same prompt and seed across LoRA strengths
(columns) and concept files such as epoch checkpoints (rows), in one labelled grid."""
from __future__ import annotations

from typing import Callable

from PIL import Image

from ..concepts.file import check_strength, Concept
from ..concepts.patching import apply_concepts
from ..errors import InputError
from .render import labelled_grid
from .sampling import generate


PAPER_STRENGTHS = "0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1"  # the paper's study: 0-1.0 in 0.1 steps
MAX_STRENGTHS = 64  # columns of one grid: each is an image per row, and a sheet wider than this is unreadable


def parse_strengths(text: str) -> list[float]:
    """"0, 0.25, 0.5" -> [0.0, 0.25, 0.5]; each inside the accepted strength range."""
    try:
        values = [float(v) for v in str(text).replace(" ", "").split(",") if v]
    except ValueError:
        raise InputError("strengths", f"{text!r}; give comma-separated numbers like 0, 0.25, 0.5, 0.75, 1") from None
    if not values:
        raise InputError("strengths", "give at least one strength, e.g. 0, 0.5, 1")
    if len(values) > MAX_STRENGTHS:
        raise InputError("strengths", f"{len(values)} strengths; accepted: 1 to {MAX_STRENGTHS} (one column each)")
    return [check_strength("strengths", v) for v in values]


def row_label(concept: Concept) -> str:
    """A row's label: file name, plus the epochs/steps the concept was trained for."""
    facts = concept.info.training
    name = concept.path.stem if concept.path else concept.info.name
    extra = f"epoch {facts.epochs}" if facts.epochs else (f"step {facts.steps}" if facts.steps else "")
    return f"{name} ({extra})" if extra else name


def study_title(prompt: str, seed: int, steps: int, cfg: float) -> str:
    """The grid's title: the prompt and the sampling settings every cell shares."""
    return f"{prompt} | seed {seed}, {steps} steps, CFG {cfg:g}"


def study_grid(concepts: list[Concept], strengths: list[float], draw: Callable[[Concept, float], Image.Image],
               title: str = "") -> tuple[Image.Image, list[list[Image.Image]]]:
    """The study itself, whatever draws: every (concept, strength) cell made by
    `draw(concept, strength)` (the same prompt and seed throughout), and the labelled grid of
    them (rows = concepts, columns = strengths). Returns (grid, cells as rows x columns)."""
    if not concepts:
        raise InputError("concept", "give at least one concept file (e.g. one per epoch)")
    cells = [[draw(concept, s) for s in strengths] for concept in concepts]
    grid = labelled_grid(cells, [row_label(c) for c in concepts], [f"strength {s:g}" for s in strengths], title)
    return grid, cells


def strength_grid(sd, prompt: str, concepts: list[Concept], strengths: list[float], settings):
    """The study on a diffusers model (the standalone path): each cell generated with the
    concept applied at that strength; the model is left unpatched. Returns the labelled grid
    image and the cells (rows x columns PIL images)."""

    def draw(concept: Concept, strength: float) -> Image.Image:
        apply_concepts(sd, [(concept, strength, strength)])
        return generate(sd, prompt, settings)
    try:
        return study_grid(concepts, strengths, draw, study_title(prompt, settings.seed, settings.steps, settings.cfg))
    finally:
        apply_concepts(sd, [])
