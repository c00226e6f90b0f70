"""Resumable training states: torch.save'd dicts read back with weights_only=True, checked
against the run that wants to continue them, and pruned to the newest few."""
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
    that did not exist when the state was written."""
    saved = {**(defaults or {}), **state["config"]}
    if saved != identity:
        diff = {k: (saved.get(k), v) for k, v in identity.items() if saved.get(k) != v}
        raise InputError("resume", f"{path} was written with other settings: {diff}")
    if state["dataset_hash"] != data_hash:
        raise InputError("resume", f"{path} was trained on other data (dataset changed since)")


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
