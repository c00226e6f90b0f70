"""File helpers: atomic writes, and user-given names that cannot escape their folder."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import InputError


@contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`.

    A crash or an error (disk full, interrupt) leaves any existing file untouched and no
    truncated file behind. Without `overwrite`, an existing file is an error.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError("out", f"{path} already exists; pass overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(path: str | os.PathLike, text: str, overwrite: bool = False) -> Path:
    """Write UTF-8 text to `path` atomically (atomic_path)."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def safe_relative_name(input_name: str, name: str) -> str:
    """Check a user-given relative file name (may contain '/' subfolders, never '..').

    Returns the name with '/' separators. Absolute paths, '..', empty parts and NUL are
    refused, so joining the result onto a folder never leaves that folder.
    """
    if not isinstance(name, str) or not name.strip():
        raise InputError(input_name, "a file name is required")
    norm = name.replace("\\", "/")
    parts = norm.split("/")
    if norm.startswith("/") or "\0" in norm or any(p in ("", ".", "..") for p in parts) or ":" in parts[0]:
        raise InputError(input_name, f"{name!r} is not a plain relative file name (no absolute paths, '..' or empty parts)")
    return "/".join(parts)
