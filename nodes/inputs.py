"""Checks ComfyUI runs before queueing a prompt (VALIDATE_INPUTS), so that a value no node
accepts is refused at once and never stored in the history (where a NaN is invalid JSON
and breaks the browser's history view)."""
from __future__ import annotations

import math


def check_numbers(cls, **values) -> bool | str:
    """VALIDATE_INPUTS for number widgets: each value finite and inside its input's min/max.
    Naming an input in VALIDATE_INPUTS turns off ComfyUI's own min/max check for it, and that
    check lets NaN through (every comparison with NaN is false), so both happen here.
    None is a linked input, checked by the node when its value arrives."""
    spec = cls.INPUT_TYPES()
    spec = {**spec.get("required", {}), **spec.get("optional", {})}
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{name}: {value!r} is not a number"
        if not math.isfinite(value):
            return f"{name}: {value} is not accepted; give a finite number"
        options = spec[name][1] if len(spec[name]) > 1 else {}
        low, high = options.get("min"), options.get("max")
        if (low is not None and value < low) or (high is not None and value > high):
            return f"{name}: {value:g} is outside {low:g} to {high:g}"
    return True
