"""The paper's epoch x strength study: the same prompt and seed across LoRA strengths
(columns) and concept files such as epoch checkpoints (rows), in one labelled grid."""
from __future__ import annotations

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


def strength_grid(sd, prompt: str, concepts: list[Concept], strengths: list[float], settings):
    """Generate every (concept, strength) cell with the same prompt and seed; returns the
    labelled grid image and the cells (rows x columns PIL images)."""

    if not concepts:
        raise InputError("concept", "give at least one concept file (e.g. one per epoch)")
    cells = []
    try:
        for concept in concepts:
            row = []
            for s in strengths:
                apply_concepts(sd, [(concept, s, s)])
                row.append(generate(sd, prompt, settings))
            cells.append(row)
    finally:
        apply_concepts(sd, [])
    title = f"{prompt} | seed {settings.seed}, {settings.steps} steps, CFG {settings.cfg:g}"
    return labelled_grid(cells, [row_label(c) for c in concepts], [f"strength {s:g}" for s in strengths], title), cells
