"""Configuration objects that describe themselves (peft's `field(metadata={"help": ...})`).

A config dataclass states each option once: its default, help text, accepted range or
choices, and its command-line flag. The CLI's options (`add_arguments`), the values read
back from them (`from_arguments`), the range checks (`check_ranges`) and the ComfyUI node
inputs (`node_input`) are all derived from that one statement.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import MISSING, field, fields
from typing import Any

from .errors import InputError

# how a value is written on the command line, beyond plain int/float/str/bool
WORDS = "words"  # list[str] as "a, b, c"
INTEGERS = "integers"  # tuple[int, ...] as "1,2,3"
SPLIT = "split"  # str | None, where "all" means None (every row of a captions.jsonl)
REPEATED = "repeated"  # list[str], the flag given once per item


def option(default: Any = MISSING, *, help: str, flag: str | None = None, min: float | None = None,
           max: float | None = None, choices: tuple | None = None, kind: str | None = None, metavar: str | None = None,
           default_factory: Any = MISSING, cli: bool = True) -> Any:
    """A dataclass field with what the CLI and the nodes need to offer it."""
    metadata = {"help": help, "flag": flag, "min": min, "max": max, "choices": choices, "kind": kind,
                "metavar": metavar, "cli": cli}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def default_of(f) -> Any:
    return f.default_factory() if f.default_factory is not MISSING else f.default


def flag_of(f) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _described(cls) -> list:
    return [f for f in fields(cls) if "help" in f.metadata]


def _text(value: Any, kind: str | None) -> Any:
    if kind == WORDS:
        return ", ".join(value)
    if kind == INTEGERS:
        return ",".join(str(v) for v in value)
    if kind == SPLIT:
        return "all" if value is None else value
    return value


def add_arguments(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """One option per described field of `cls` (dest = the field name), with its default,
    range or choices in the help text."""
    for f in _described(cls):
        m = f.metadata
        if not m["cli"] or f.name in skip:
            continue
        default = default_of(f)
        text = m["help"]
        if m["min"] is not None or m["max"] is not None:
            text += f"; {m['min'] if m['min'] is not None else '-inf'} to {m['max'] if m['max'] is not None else 'inf'}"
        kwargs: dict[str, Any] = {"dest": f.name}
        if isinstance(default, bool):
            parser.add_argument(flag_of(f), action="store_true", help=text, **kwargs)
            continue
        if m["kind"] == REPEATED:
            parser.add_argument(flag_of(f), action="append", default=list(default), metavar=m["metavar"], help=text,
                                **kwargs)
            continue
        kwargs["metavar"] = m["metavar"] or flag_of(f)[2:].upper().replace("-", "_")
        shown = _text(default, m["kind"])
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            kwargs["type"] = type(default)
        if m["choices"]:
            kwargs["choices"] = m["choices"]
        parser.add_argument(flag_of(f), default=shown, help=f"{text} (default: {shown})", **kwargs)


def flags(cls) -> dict[str, str]:
    """field name -> its command-line flag, for errors that name what the user typed."""
    return {f.name: flag_of(f) for f in _described(cls)}


def _parsed(f, value: Any) -> Any:
    kind = f.metadata["kind"]
    if kind == WORDS:
        return [w.strip() for w in str(value).split(",") if w.strip()]
    if kind == INTEGERS:
        try:
            return tuple(int(v) for v in str(value).split(","))
        except ValueError:
            raise InputError(flag_of(f), f"{value!r}; give comma-separated integers like 1,2,3") from None
    if kind == SPLIT:
        return None if value == "all" else value
    return value


def from_arguments(cls, args: argparse.Namespace, **extra: Any):
    """The config from parsed arguments (options `add_arguments` made), plus `extra` fields."""
    values = {f.name: _parsed(f, getattr(args, f.name)) for f in _described(cls)
              if f.metadata["cli"] and hasattr(args, f.name)}
    return cls(**{**values, **extra})


def check_ranges(config, input_names: dict[str, str] | None = None) -> None:
    """Raise InputError for a field outside its stated range or choices; the error names
    `input_names[field]` when given (the flag or node input the user set), else the field."""
    for f in _described(type(config)):
        m, value = f.metadata, getattr(config, f.name)
        name = (input_names or {}).get(f.name, f.name)
        if m["choices"] and value not in m["choices"]:
            raise InputError(name, f"{value!r} is not accepted; accepted: {', '.join(map(str, m['choices']))}")
        if m["min"] is None and m["max"] is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InputError(name, f"{value!r} is not a number")
        if (m["min"] is not None and value < m["min"]) or (m["max"] is not None and value > m["max"]):
            raise InputError(name, f"{value} is not accepted; use {m['min']} to {m['max']}")


def node_input(cls, name: str, **overrides: Any) -> tuple:
    """A ComfyUI input spec for one field: ("INT" | "FLOAT" | "BOOLEAN" | "STRING" | [choices], options)."""
    f = next(f for f in _described(cls) if f.name == name)
    m, default = f.metadata, default_of(f)
    spec: dict[str, Any] = {"default": _text(default, m["kind"]), "tooltip": m["help"]}
    if m["choices"]:
        return list(m["choices"]), {**spec, **overrides}
    if isinstance(default, bool):
        kind = "BOOLEAN"
    elif isinstance(default, int):
        kind = "INT"
    elif isinstance(default, float):
        kind = "FLOAT"
        spec["round"] = False
    else:
        kind = "STRING"
    for key in ("min", "max"):
        if m[key] is not None:
            spec[key] = m[key]
    return kind, {**spec, **overrides}
