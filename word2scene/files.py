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
    made = _missing_folders(path.parent)
    tmp_path = _new_file(path.parent, f".{path.name}.", ".tmp")
    written = False
    try:
        try:
            yield tmp_path
            with open(tmp_path, "rb+") as f:
                os.fsync(f.fileno())
            os.chmod(tmp_path, 0o666 & ~current_umask())  # mkstemp makes 0600; written files follow the umask
            os.replace(tmp_path, path)
            written = True
        except Exception as exc:  # a full disk comes as safetensors' own error, or torch.save's RuntimeError
            full = _disk_full(path.parent)
            if full or isinstance(exc, OSError) or type(exc).__name__ == "SafetensorError":
                reason = "No space left on device" if full else getattr(exc, "strerror", None) or exc
                raise InputError("out", f"could not write {path}: {reason}; any previous file there is "
                                        "intact") from exc
            raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
        if not written:
            _remove_empty(made)


def _missing_folders(folder: Path) -> list[Path]:
    """`folder` and its ancestors that do not exist yet, deepest first."""
    return [p for p in (folder, *folder.parents) if not p.exists()]


def _remove_empty(folders: list[Path]) -> None:
    """Remove these folders (deepest first) while they are empty."""
    for p in folders:
        try:
            p.rmdir()
        except OSError:
            return


def _disk_full(folder: Path) -> bool:
    """Under 64 KiB left for this user in `folder`'s file system."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 64 * 1024


def _new_file(folder: Path, prefix: str, suffix: str = "", input_name: str = "out") -> Path:
    """A new empty file (mode 0600) in `folder`, made if needed; a folder that cannot take
    one is an error naming it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
    except OSError as exc:
        raise InputError(input_name, f"cannot write in {folder}: {exc.strerror or exc}") from None
    os.close(fd)
    return Path(tmp)


def check_writable(folder: str | os.PathLike, input_name: str = "out") -> None:
    """Prove a file can be written in `folder` (made if needed), before long work starts."""
    made = _missing_folders(Path(folder))
    _new_file(Path(folder), ".w2s-check.", input_name=input_name).unlink()
    _remove_empty(made)  # no empty folders left behind: the real write makes them again


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextmanager
def output_lock(path: str | os.PathLike, input_name: str = "out") -> Iterator[Path]:
    """One writer per output: `<path>.lock` holds the writer's process id while it runs. A
    lock whose process is gone (a killed run) is stale and taken over."""
    path = Path(path)
    lock = path.with_name(path.name + ".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(input_name, f"cannot write in {path.parent}: {exc.strerror or exc}") from None
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            break
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and _running(pid):
                raise InputError(input_name, f"{path} is being written by another run (process {pid}, lock "
                                             f"{lock.name}); wait for it to end, or choose another output") from None
            lock.unlink(missing_ok=True)  # stale: the process that took it is gone
    else:
        raise InputError(input_name, f"could not take the lock {lock}")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
    except OSError as exc:
        lock.unlink(missing_ok=True)
        raise InputError(input_name, f"cannot write the lock {lock}: {exc.strerror or exc}") from None
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)


def current_umask() -> int:
    """The process umask (read by setting it and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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
