"""Reading weight files: the one reader (`read_state_dict`) that every checkpoint, concept and
classifier goes through, with what it checks first: a .safetensors header (read without the
safetensors package), a file cut short or left as a git LFS / annex pointer, the shipped
files' recorded sha256; and a file's sha256 (kohya's and A1111's model hash), computed once
per version of the file. Nothing here builds a model (sd15.py does)."""
from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import torch

from ..errors import InputError

# The files shipped with the pack (Word2Scene-mini and its concepts) and their sums.
MINI_FOLDER = Path(__file__).resolve().parents[1] / "assets" / "mini"
SHIPPED_SUMS = "SHA256SUMS"  # in MINI_FOLDER: `sha256  file name` per shipped file (sha256sum's format)


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (kohya's ss_new_sd_model_hash, A1111's full model hash),
    computed once per (path, mtime, size)."""
    path = Path(path)
    st = path.stat()
    return _file_sha256(os.path.realpath(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=16)
def _file_sha256(real: str, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(real, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
                       "BOOL": torch.bool}


def _safetensors_header(path: Path) -> dict:
    """The JSON header of a .safetensors file (8-byte little-endian length, then JSON)."""
    import struct

    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError("file shorter than a safetensors header")
        (size,) = struct.unpack("<Q", raw)
        if size > 100 * 1024 * 1024:
            raise ValueError(f"header of {size} bytes")
        header = json.loads(f.read(size))
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    header["__header_size__"] = size
    return header


def _read_safetensors_converting(path: Path, header: dict, dtype: torch.dtype) -> tuple[dict, dict]:
    """Read tensor by tensor with plain reads (not mmap) and convert each to `dtype` as it
    arrives: a memory map would keep every page of the file resident until closed, so
    converting an fp32 file to bf16 would peak at the file plus the copy (5 GiB for SD1.5)."""
    base = 8 + header.pop("__header_size__")
    metadata = dict(header.pop("__metadata__", None) or {})
    tensors = {}
    with open(path, "rb") as f:
        for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            begin, end = info["data_offsets"]
            stored = _SAFETENSORS_DTYPES.get(info["dtype"])
            if stored is None:
                raise ValueError(f"tensor {name} has dtype {info['dtype']}, which this reader does not convert")
            buffer = bytearray(end - begin)
            f.seek(base + begin)
            if f.readinto(buffer) != len(buffer):
                raise ValueError(f"tensor {name} is cut short")
            t = (torch.frombuffer(buffer, dtype=stored) if buffer else torch.empty(0, dtype=stored)).reshape(info["shape"])
            tensors[name] = t.to(dtype) if t.is_floating_point() else t
    return tensors, metadata


POINTER_STUBS = (b"version https://git-lfs", b"/annex/objects/", b"../.git/annex/")


def _check_complete(path: Path, input_name: str) -> None:
    """Refuse, naming the file, a git LFS / git-annex pointer left where the weights should
    be, and a file cut short (a broken download or copy): the header says how long it is."""
    with open(path, "rb") as f:
        start = f.read(200)
    if any(marker in start for marker in POINTER_STUBS):
        raise InputError(input_name, f"{path} is a git LFS/annex pointer ({path.stat().st_size} bytes), not the weights; "
                                     "fetch the real file (git lfs pull, or copy it from where it was made)")
    try:
        header = _safetensors_header(path)
    except (ValueError, UnicodeDecodeError):
        return  # not a safetensors header at all: the reader says so
    ends = [v["data_offsets"][1] for k, v in header.items() if isinstance(v, dict) and "data_offsets" in v]
    expected = 8 + header["__header_size__"] + max(ends, default=0)
    size = path.stat().st_size
    if size < expected:
        raise InputError(input_name, f"{path} is truncated: {size} bytes of the {expected} its header describes "
                                     "(an interrupted download or copy); fetch or copy it again")


def read_state_dict(path: str | os.PathLike, input_name: str = "checkpoint", dtype: torch.dtype | None = None) -> tuple[dict, dict]:
    """Tensors and metadata of a .safetensors file, or tensors of a .ckpt/.pt read with
    torch.load(weights_only=True) (never unpickles arbitrary objects). With `dtype`, floating
    tensors are converted one by one as they are read, so the file's copy never piles up."""
    path = Path(path)
    if not path.is_file():
        raise InputError(input_name, f"{path} does not exist or is not a file")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import safe_open
        _check_complete(path, input_name)
        check_shipped(path, input_name)
        try:
            header = _safetensors_header(path)
            if dtype is not None and any(_SAFETENSORS_DTYPES.get(v.get("dtype")) not in (dtype, None)
                                         and _SAFETENSORS_DTYPES[v["dtype"]].is_floating_point
                                         for k, v in header.items() if isinstance(v, dict) and k != "__metadata__"):
                return _read_safetensors_converting(path, header, dtype)
            with safe_open(str(path), framework="pt") as f:
                tensors = {}
                for k in f.keys():
                    t = f.get_tensor(k)
                    tensors[k] = t.to(dtype) if dtype is not None and t.is_floating_point() else t
                return tensors, dict(f.metadata() or {})
        except Exception as exc:  # safetensors raises several error types for bad headers
            raise InputError(input_name, f"{path} is not a readable safetensors file ({exc})") from None
    if suffix in (".ckpt", ".pt", ".pth", ".bin"):
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise InputError(input_name, f"{path} could not be read as a weights-only torch file ({exc}); "
                                         "only plain tensors are loaded, never pickled code") from None
        for key in ("state_dict", "model", "model_state_dict"):  # training scripts' wrappers
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
        if not isinstance(state, dict):
            raise InputError(input_name, f"{path} holds no state dict")
        return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}, {}
    raise InputError(input_name, f"{path} has suffix {suffix!r}; accepted: .safetensors, .ckpt, .pt, .pth, "
                                 "or a diffusers folder with model_index.json")


def shipped_sums(folder: Path | None = None) -> dict[str, str]:
    """{file name: sha256} as the shipped folder's SHA256SUMS records them."""
    manifest = (folder or MINI_FOLDER) / SHIPPED_SUMS
    sums = {}
    for line in manifest.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            digest, _, name = line.strip().partition(" ")
            sums[name.strip().lstrip("*")] = digest.lower()
    return sums


def check_shipped(path: str | os.PathLike, input_name: str) -> None:
    """A file in the shipped mini folder (reached directly or through a link) must have the
    sha256 its SHA256SUMS records: a copy damaged byte for byte at the right length would
    still load and draw. The hash is computed once per version of the file (file_sha256)."""
    real = Path(os.path.realpath(path))
    if real.parent != MINI_FOLDER.resolve():
        return
    try:
        recorded = shipped_sums(real.parent).get(real.name)
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(input_name, f"{real.parent / SHIPPED_SUMS} cannot be read ({exc}); the shipped files cannot "
                                     "be checked: reinstall the pack") from None
    if recorded is None:
        raise InputError(input_name, f"{real.name} is not listed in {real.parent / SHIPPED_SUMS}; a shipped file "
                                     "must be recorded there (sha256sum's format)")
    actual = file_sha256(real)
    if actual != recorded:
        raise InputError(input_name, f"{real} is damaged: its sha256 is {actual[:16]}..., not the {recorded[:16]}... "
                                     f"{SHIPPED_SUMS} records; reinstall the pack (or fetch the file again)")
