"""Image files: reading RS imagery of any depth and band count as 8-bit RGB, fitting it to
the model's square, and writing PNGs with their generation parameters, atomically."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from .errors import InputError
from .files import atomic_path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
MIN_IMAGE_SIDE = 8  # pixels: one latent pixel; a smaller image (1 x 1, 1 x 1000) carries no scene to learn


def save_png(image: Image.Image, path: str | os.PathLike, parameters: dict | None = None, overwrite: bool = False,
             input_name: str = "out") -> Path:
    """Write a PNG with its parameters in a 'word2scene' text chunk (JSON) and an
    AUTOMATIC1111-style 'parameters' chunk, so other tools show how it was made."""
    info = PngImagePlugin.PngInfo()
    if parameters:
        info.add_text("word2scene", json.dumps(parameters, ensure_ascii=False))
        p = parameters
        a1111 = (f"{p.get('prompt', '')}\nNegative prompt: {p.get('negative', '')}\nSteps: {p.get('steps')}, Sampler: "
                 f"{p.get('sampler', 'DDIM')}, CFG scale: {p.get('cfg')}, Seed: {p.get('seed')}, "
                 f"Size: {p.get('width')}x{p.get('height')}, Model: {p.get('model')}")
        info.add_text("parameters", a1111)
    with atomic_path(path, overwrite=overwrite, input_name=input_name) as tmp:
        image.save(tmp, format="PNG", pnginfo=info)
    return Path(path)


def read_image(path: Path, bands: tuple[int, ...] = (1, 2, 3), stretch: tuple[float, float] = (2.0, 98.0)) -> Image.Image:
    """Any PIL-readable image as 8-bit RGB. Grayscale is repeated to three bands, alpha is
    dropped, 16-bit/float data and multi-band TIFFs (chosen `bands`, 1-based) are
    percentile-stretched to 8 bits."""
    with Image.open(path) as im:
        im.load()
        if im.mode in ("RGB", "L", "P", "RGBA", "LA", "CMYK", "YCbCr", "1"):
            return im.convert("RGB")
        frames = []
        for i in range(getattr(im, "n_frames", 1)):
            im.seek(i)
            frames.append(np.asarray(im))
    array = np.stack(frames, axis=-1) if len(frames) > 1 else frames[0]
    if array.ndim == 2:
        array = array[..., None]
    if array.shape[-1] < 3:  # one band (or band + alpha): grayscale
        chosen = np.repeat(array[..., :1], 3, axis=-1)
    elif max(bands) > array.shape[-1]:
        raise InputError("bands", f"{path.name} has {array.shape[-1]} bands; asked for band {max(bands)}")
    else:
        chosen = array[..., [b - 1 for b in bands]]
    return Image.fromarray(stretch_to_uint8(chosen, stretch))


def open_image(path: str | os.PathLike, input_name: str, bands: tuple[int, ...] = (1, 2, 3)) -> Image.Image:
    """read_image for a file the user named: missing or unreadable is an error naming the input."""
    path = Path(path)
    if not path.is_file():
        raise InputError(input_name, f"{path} does not exist or is not a file")
    try:
        return read_image(path, bands)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for corrupt files
        raise InputError(input_name, f"{path} cannot be read as an image ({type(exc).__name__}); "
                                     "give a PNG, JPEG, TIFF, BMP or WebP file") from None


def stretch_to_uint8(array: np.ndarray, percentiles: tuple[float, float] = (2.0, 98.0)) -> np.ndarray:
    """Per-band percentile stretch of any numeric H x W x C array to uint8."""
    out = np.empty(array.shape, dtype=np.uint8)
    for c in range(array.shape[-1]):
        band = array[..., c].astype(np.float64)
        finite = band[np.isfinite(band)]
        lo, hi = (np.percentile(finite, percentiles) if finite.size else (0.0, 1.0))
        if hi <= lo:
            hi = lo + 1.0
        out[..., c] = np.clip((np.nan_to_num(band, nan=lo) - lo) / (hi - lo) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return out


def fit_square(image: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to `size` (bicubic) and centre-crop to size x size."""
    w, h = image.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    image = image.resize((nw, nh), Image.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return image.crop((left, top, left + size, top + size))


def dihedral(x, k: int, axes: tuple[int, int] = (0, 1)):
    """One of the 8 symmetries of the square (k in 0-7): k % 4 quarter turns from the first of
    `axes` towards the second, then for k >= 4 a mirror along the second. An H x W (x C)
    numpy array by default (a contiguous array back), or, with axes (-2, -1), a torch tensor
    ... x H x W such as latents B x 4 x H/8 x W/8 (a tensor back): images and latents turn
    the same way."""
    if isinstance(x, np.ndarray):
        out = np.rot90(x, k % 4, axes=axes)
        return np.ascontiguousarray(np.flip(out, axes[1]) if k >= 4 else out)
    out = x.rot90(k % 4, axes)
    return out.flip(axes[1]) if k >= 4 else out
