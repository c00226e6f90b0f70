"""File helpers: atomic and exclusive writes, output locks, kept copies of weights that could
not be saved, YAML files read without alias expansion, and user-given names that cannot
escape their folder."""
from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import stat
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from .errors import InputError

T = TypeVar("T")

# Temporary files and folders are named .<name>.<pid>-<8 characters>.tmp: a leftover of a run
# that was killed (kill -9, power loss) is recognised by its dead process and removed later.
_LEFTOVER = re.compile(r"^\..+\.(\d+)-[a-z0-9_]{8}\.tmp$")
LEFTOVER_AGE = 60.0  # seconds without a change before a dead process's temp file is removed


class ExistingOutput(InputError):
    """The output exists (or was made by another run meanwhile) and may not be replaced."""


class WriteFailed(InputError):
    """A file could not be written (a full or read-only disk, a folder that cannot be made);
    `reason` says why, as the system does."""
    def __init__(self, input_name: str, message: str, reason: str):
        super().__init__(input_name, message)
        self.reason = reason


def _not_regular(mode: int) -> str | None:
    """What a file system entry is, when it is not a regular file."""
    for test, kind in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return None if stat.S_ISREG(mode) else "not a regular file"


def check_output(path: str | os.PathLike, overwrite: bool = False, input_name: str = "out",
                 overwrite_input: str = "overwrite") -> Path:
    """Refuse an output path that holds something other than a regular file (a symbolic link,
    FIFO, device or folder: replacing it would replace, say, /dev/null), even with
    `overwrite`; and an existing file without it."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except OSError:  # absent, or its folder is not one: the write says so
        return path
    kind = _not_regular(st.st_mode)
    if kind:
        raise InputError(input_name, f"{path} is {kind}, not a regular file; outputs are written only as regular "
                                     f"files (never through links or onto devices): choose another path")
    if not overwrite:
        raise ExistingOutput(input_name, f"{path} exists; pass {overwrite_input} to replace it")
    return path


def check_safetensors(path: str | os.PathLike, what: str, input_name: str = "out") -> Path:
    """`path` when it ends in .safetensors (any case), else an error naming the input, the
    file and what such files are (`what`, e.g. "concept files are safetensors"): the one
    check of every weights file the project writes (concepts, checkpoints, classifiers) and of
    the concept reader, which never unpickles a .ckpt or .pt."""
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise InputError(input_name, f"{path.name} is not a .safetensors file; {what}")
    return path


def check_output_folder(folder: str | os.PathLike, input_name: str = "out") -> Path:
    """Refuse an output folder path that holds something other than a folder (a file, FIFO,
    device)."""
    folder = Path(folder)
    if os.path.lexists(folder) and not folder.is_dir():
        kind = _not_regular(os.stat(folder).st_mode) if folder.exists() else "a broken symbolic link"
        raise InputError(input_name, f"{folder} is {kind or 'a file'}, not a folder; choose a folder for the output")
    return folder


@contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False, input_name: str = "out") -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success move it onto `path`.

    A crash or an error (disk full, interrupt) leaves any existing file untouched and no
    truncated file behind. Without `overwrite` the file is created exclusively (a hard link,
    which fails if the name exists): of several writers of one new name exactly one
    succeeds, the others get ExistingOutput. What is not a regular file is never replaced.
    """
    path = Path(path)
    check_output(path, overwrite, input_name)
    made = _missing_folders(path.parent)
    tmp_path = _new_file(path.parent, path.name, input_name=input_name)
    written = False
    try:
        try:
            yield tmp_path
            with open(tmp_path, "rb+") as f:
                os.fsync(f.fileno())
            os.chmod(tmp_path, 0o666 & ~current_umask())  # mkstemp makes 0600; written files follow the umask
            _publish(tmp_path, path, overwrite, input_name)
            written = True
        except InputError:
            raise
        except Exception as exc:  # a full disk comes as safetensors' own error, or torch.save's RuntimeError
            full = _disk_full(path.parent)
            if full or isinstance(exc, OSError) or type(exc).__name__ == "SafetensorError":
                reason = _reason(exc, full)
                raise WriteFailed(input_name, f"could not write {path}: {reason}; any previous file there is intact",
                                  reason) from exc
            raise
    finally:
        tmp_path.unlink(missing_ok=True)
        if not written:
            _remove_empty(made)


def _reason(exc: BaseException, full: bool) -> str:
    return "No space left on device" if full else getattr(exc, "strerror", None) or str(exc)


# errors of file systems without hard links (FAT, some network and FUSE file systems)
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS, errno.EXDEV}


def _publish(tmp: Path, path: Path, overwrite: bool, input_name: str) -> None:
    """Put the finished temporary file at `path`: a rename when replacing is allowed, else an
    exclusive creation (never a check followed by a rename, which two writers can both pass)."""
    if overwrite:
        check_output(path, True, input_name)
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
        return
    except FileExistsError:
        pass
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        try:  # no hard links here: reserve the name exclusively, then move the file in
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            os.replace(tmp, path)
            return
        except FileExistsError:
            pass
    raise ExistingOutput(input_name, f"{path} was written meanwhile by another run; pass overwrite to replace it, "
                                     "or choose another name")


def write_numbered(name: Callable[[int], Path], save: Callable[[Path], T]) -> T:
    """save(name(n)) for the first n = 1, 2, ... whose file does not exist when it is written.
    `save` must write exclusively (overwrite=False), so that runs choosing names at the same
    time never pick the same one."""
    n = 1
    while os.path.lexists(name(n)):  # skip to the first free name at once
        n += 1
    while True:
        try:
            return save(name(n))
        except ExistingOutput:
            n += 1


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


def temp_name(folder: Path, name: str) -> Path:
    """A new temporary name (not created) in `folder` for writing `name`; see _LEFTOVER."""
    return folder / f".{name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"


def _new_file(folder: Path, name: str, input_name: str = "out") -> Path:
    """A new empty temporary file (mode 0600) for `name` in `folder`, made if needed, after
    removing what killed runs left there; a folder that cannot take one is an error naming it."""
    try:
        fd, tmp = _made_in(folder, lambda: tempfile.mkstemp(prefix=f".{name}.{os.getpid()}-", suffix=".tmp",
                                                            dir=folder))
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise WriteFailed(input_name, f"cannot write in {folder}: {reason}", reason) from None
    os.close(fd)
    return Path(tmp)


def _made_in(folder: Path, make: Callable[[], T]) -> T:
    """make() a new entry in `folder`, made if needed, after removing what killed runs left
    there. Another run may remove the folder (empty, made by it) between our mkdir and our
    make: then again."""
    for attempt in range(10):
        folder.mkdir(parents=True, exist_ok=True)
        if attempt == 0:
            remove_leftovers(folder)
        try:
            return make()
        except FileNotFoundError:
            continue
    return make()


def remove_leftovers(folder: Path) -> list[Path]:
    """Remove the temporary files and folders (see _LEFTOVER) of processes that are gone and
    that have not changed for LEFTOVER_AGE seconds (a writer in another process namespace
    still changes its file). Returns what was removed."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        match = _LEFTOVER.match(entry.name)
        if not match or _running(int(match[1])):
            continue
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime < LEFTOVER_AGE:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def check_writable(folder: str | os.PathLike, input_name: str = "out") -> None:
    """Prove a file can be written in `folder` (made if needed), before long work starts."""
    made = _missing_folders(Path(folder))
    _new_file(Path(folder), "w2s-check", input_name=input_name).unlink()
    _remove_empty(made)  # no empty folders left behind: the real write makes them again


@contextmanager
def file_set(folder: str | os.PathLike, earlier: list[Path], input_name: str = "out") -> Iterator[Path]:
    """Write a set of files (heat maps: image, overlays, masks, scores) into `folder` as one:
    yield a hidden staging folder inside it; on success its files replace the `earlier` set
    as a whole. On an error nothing of the new set stays and the earlier set is intact."""
    folder = Path(folder)
    made = _missing_folders(folder)
    try:
        staging = Path(_made_in(folder, lambda: tempfile.mkdtemp(prefix=f".{folder.name}.{os.getpid()}-", suffix=".tmp",
                                                                  dir=folder)))
    except OSError as exc:
        raise InputError(input_name, f"cannot write in {folder}: {exc.strerror or exc}") from None
    done = False
    try:
        try:
            yield staging
        except (WriteFailed, OSError) as exc:
            reason = exc.reason if isinstance(exc, WriteFailed) else _reason(exc, _disk_full(folder))
            raise WriteFailed(input_name, f"could not write the set in {folder}: {reason}; nothing of it was kept, any "
                                          f"earlier set there is intact", reason) from exc
        new = sorted(p.name for p in staging.iterdir())
        moved = []
        try:
            for name in new:
                os.replace(staging / name, folder / name)
                moved.append(name)
        except OSError as exc:
            raise InputError(input_name, f"could not move the new set into {folder} ({exc.strerror or exc}); "
                                         f"{len(moved)} of its {len(new)} files are there: "
                                         f"{', '.join(moved) or 'none'}") from None
        for old in earlier:
            if old.name not in new:
                old.unlink(missing_ok=True)
        done = True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not done:
            _remove_empty(made)


def save_or_keep(out: Path, save: Callable[[Path, bool], T], overwrite: bool, input_name: str = "out") -> T:
    """save(out, overwrite): trained weights. If that fails, save them exclusively under a new
    name beside `out`, else in the system temp folder (keep_elsewhere), and raise naming the
    output and where the weights are: hours of training are never lost to a full disk."""
    try:
        return save(out, overwrite)
    except InputError as exc:
        if exc.input_name != input_name:
            raise
        kept = keep_elsewhere(out, lambda path: save(path, False))
        raise InputError(input_name, f"{exc.message}; {kept}") from exc


def keep_elsewhere(out: Path, save: Callable[[Path], Any]) -> str:
    """After `out` could not be written: save(path) the weights under a new name beside `out`
    (<stem>.kept-N<suffix>), else in the system temp folder. Returns a sentence saying where
    they are, or that they could not be kept anywhere and why."""
    failed = []
    for folder in dict.fromkeys((out.parent, Path(tempfile.gettempdir()))):
        try:
            kept = write_numbered(lambda n: folder / f"{out.stem}.kept-{n}{out.suffix}", save)
            return f"the trained weights are kept in {kept}; move it to {out} when there is room"
        except InputError as exc:
            failed.append(f"{folder}: {exc.message}")
    return f"the trained weights could not be kept either ({'; '.join(failed)})"


def _running(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:
        return False
    return True


def _try_lock(fd: int) -> bool:
    """Take the kernel's exclusive lock on an open file without waiting; it goes with the
    process however that ends (kill -9 included), so a lock is never stale."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise


@contextmanager
def output_lock(path: str | os.PathLike, input_name: str = "out") -> Iterator[Path]:
    """One writer per output: `<path>.lock`, held with the kernel's file lock (released when
    the process ends, however it ends) and holding the writer's process id for messages."""
    path = Path(path)
    lock = path.with_name(path.name + ".lock")
    while True:
        try:
            fd = _made_in(path.parent, lambda: os.open(lock, os.O_RDWR | os.O_CREAT, 0o666))
        except OSError as exc:
            raise InputError(input_name, f"cannot write the lock {lock}: {exc.strerror or exc}") from None
        if not _try_lock(fd):
            owner = _lock_owner(fd)
            os.close(fd)
            raise InputError(input_name, f"{path} is being written by another run ({owner}lock {lock.name}); wait "
                                         "for it to end, or choose another output")
        try:  # the last holder may have removed the file between our open and our lock: lock the file at the name
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except OSError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        try:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
        except OSError as exc:
            raise InputError(input_name, f"cannot write the lock {lock}: {exc.strerror or exc}") from None
        yield lock
    finally:
        try:
            lock.unlink(missing_ok=True)  # while still holding it: the next writer locks a new file
        except OSError:  # Windows keeps an open file: it stays, and the next writer locks it again
            pass
        os.close(fd)


def _lock_owner(fd: int) -> str:
    """'process N, ' from a held lock file ('' while its holder has not written it yet)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 32).decode().strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f"process {text}, " if text.isdigit() else ""


def current_umask() -> int:
    """The process umask (read by setting it and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike, text: str, overwrite: bool = False, input_name: str = "out") -> Path:
    """Write UTF-8 text to `path` atomically (atomic_path)."""
    with atomic_path(path, overwrite=overwrite, input_name=input_name) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


YAML_MAX_BYTES = 64 * 2**20  # a review of 10,000 images is about 15 MiB


def read_yaml_text(path: str | os.PathLike, input_name: str, max_bytes: int = YAML_MAX_BYTES) -> str:
    """The text of a YAML file a user gave, checked before it is loaded: at most `max_bytes`,
    UTF-8, and without aliases (`*name` repeats an anchored node: a few lines of them expand
    to billions of entries). Errors name the input and the file."""
    import yaml

    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise InputError(input_name, f"{path}: {size / 2**20:.1f} MiB; accepted: YAML files up to "
                                         f"{max_bytes / 2**20:.0f} MiB (split it)")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(input_name, f"{path}: cannot be read ({exc})") from None
    if "*" in text:  # only then can there be an alias
        try:
            for event in yaml.parse(text, Loader=_yaml_loader()):
                if isinstance(event, yaml.AliasEvent):
                    line = event.start_mark.line + 1 if event.start_mark else "?"
                    raise InputError(input_name, f"{path}:{line}: the alias *{event.anchor} is not accepted (aliases "
                                                 "can expand without bound); write the entries out")
        except yaml.YAMLError as exc:
            raise InputError(input_name, f"{path}: cannot be read as YAML ({exc})") from None
    return text


def load_yaml(path: str | os.PathLike, input_name: str, max_bytes: int = YAML_MAX_BYTES) -> Any:
    """A YAML file a user gave, as plain data (safe_load: no Python objects), read through
    read_yaml_text's checks."""
    import yaml

    text = read_yaml_text(path, input_name, max_bytes)
    try:
        return yaml.load(text, Loader=_yaml_loader())
    except yaml.YAMLError as exc:
        raise InputError(input_name, f"{path}: cannot be read as YAML ({exc})") from None


def _yaml_loader():
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C parser where installed: same data, faster


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


def first_link(root: Path, name: str) -> Path | None:
    """The first part of root/name below `root` that is a symbolic link (None when none is:
    the path cannot lead outside `root`). `name` must have passed safe_relative_name."""
    path = root
    for part in name.split("/"):
        path = path / part
        try:
            if stat.S_ISLNK(os.lstat(path).st_mode):
                return path
        except OSError:  # missing (nothing further to follow), or a file where a folder should be
            return None
    return None
