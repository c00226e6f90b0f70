"""Resumable training states: torch.save'd dicts read back with weights_only=True, checked
against the run that wants to continue them, and pruned to the newest few; and how a run
stops, failed or interrupted, naming the state it leaves."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import InputError


def read_state(path: Path, format_name: str) -> dict:
    """A state file of the given format; anything else (or a pickle with code) is refused."""
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError("resume", f"{path} is not a readable training state ({exc})") from None
    if not isinstance(state, dict) or state.get("format") != format_name:
        raise InputError("resume", f"{path} is not a {format_name}")
    return state


def check_resumable(state: dict, path: Path, identity: dict, data_hash: str, defaults: dict | None = None) -> None:
    """Refuse a state written with other settings or on other data. `defaults` fill options
    that did not exist when the state was written; options the state records that no longer
    define a run (a precision, once) are not compared."""
    saved = {k: v for k, v in {**(defaults or {}), **state["config"]}.items() if k in identity}
    if saved != identity:
        diff = {k: (saved.get(k), v) for k, v in identity.items() if saved.get(k) != v}
        raise InputError("resume", f"{path} was written with other settings: {diff}")
    if state["dataset_hash"] != data_hash:
        raise InputError("resume", f"{path} was trained on other data (dataset changed since)")


class TrainingError(RuntimeError):
    """Training stopped (non-finite loss): the message names the step; the last good
    checkpoint is kept."""


class TrainingInterrupted(RuntimeError):
    """Stopped on request (Ctrl-C, ComfyUI's Cancel); `state_path` is a resumable state."""
    def __init__(self, step: int, state_path: Path | None, where: str | None = None):
        self.step, self.state_path, self.where = step, state_path, where or f"step {step}"
        super().__init__(f"training interrupted at {self.where}; resume from {state_path}")


def check_base(state: dict, path: Path, base: dict) -> None:
    """Refuse a state trained on another base model ({'name', 'sha256'}), naming both: its
    weights would not fit (a size-mismatch traceback) or, worse, fit a same-shaped other
    model silently. The files are compared by sha256 where both have one (a renamed copy is
    the same model), else by name. States written before the base was recorded pass."""
    saved = state.get("base_model")
    if not isinstance(saved, dict):
        return
    same = saved.get("sha256") == base.get("sha256") if saved.get("sha256") and base.get("sha256") \
        else saved.get("name") == base.get("name")
    if not same:
        raise InputError("resume", f"{path.name} was trained on the base model {_described(saved)}, not on "
                                   f"{_described(base)}; resume it with the base it was trained on")


def _described(base: dict) -> str:
    sha = base.get("sha256") or ""
    return f"{base.get('name')}" + (f" (sha256 {sha[:12]})" if sha else "")


def check_within(path: Path, counter: str, done: int, goal: int) -> None:
    """Refuse a state that is already past this run's length: its weights would be saved
    labelled with fewer steps than they have."""
    if done > goal:
        raise InputError("resume", f"{path.name} is at {counter} {done}, past this run's {goal} steps; give at least "
                                   f"{done} steps (or enough epochs), or start afresh")


def prune_states(states: list[Path], keep: int) -> None:
    """Delete all but the newest `keep` of `states` (sorted oldest first); keep 0 = all."""
    for old in states[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
