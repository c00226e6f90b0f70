"""Rendering for people: heat maps as colour-mapped overlays with labels, grids, masks,
animations of the denoising process, labelled study grids, and a training's loss curve."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..errors import InputError
from ..files import atomic_path, check_output, check_writable

# "turbo"-like colour map anchors (blue -> cyan -> green -> yellow -> red)
_ANCHORS = np.array([[48, 18, 59], [40, 110, 230], [30, 200, 200], [120, 240, 90], [240, 220, 40], [240, 110, 20],
                     [122, 4, 3]], dtype=np.float32)


def colormap(values: np.ndarray) -> np.ndarray:
    """H x W values in 0-1 -> H x W x 3 uint8 colours."""
    x = np.clip(values, 0, 1) * (len(_ANCHORS) - 1)
    i = np.minimum(x.astype(int), len(_ANCHORS) - 2)
    t = (x - i)[..., None]
    return (_ANCHORS[i] * (1 - t) + _ANCHORS[i + 1] * t).astype(np.uint8)


def overlay(image: Image.Image, heat: np.ndarray | torch.Tensor, label: str = "", alpha: float = 0.55) -> Image.Image:
    """Blend a normalised H x W heat map over the image (resized to it) and write the label."""
    heat = heat.detach().cpu().numpy() if isinstance(heat, torch.Tensor) else np.asarray(heat)
    image = image.convert("RGB")
    if heat.shape != (image.height, image.width):
        heat = np.asarray(Image.fromarray((np.clip(heat, 0, 1) * 255).astype(np.uint8)).resize(image.size, Image.BICUBIC)) / 255.0
    blended = (np.asarray(image, dtype=np.float32) * (1 - alpha) + colormap(heat) * alpha).astype(np.uint8)
    out = Image.fromarray(blended)
    if label:
        draw = ImageDraw.Draw(out)
        box = draw.textbbox((0, 0), label)
        draw.rectangle([2, 2, box[2] + 8, box[3] + 8], fill=(0, 0, 0))
        draw.text((5, 4), label, fill=(255, 255, 255))
    return out


def grid(images: list[Image.Image], columns: int | None = None, pad: int = 4) -> Image.Image:
    """Tile same-size images into a grid (white gaps)."""
    if not images:
        raise ValueError("no images to tile")
    columns = columns or min(len(images), 4)
    rows = -(-len(images) // columns)
    w, h = images[0].size
    sheet = Image.new("RGB", (columns * w + (columns - 1) * pad, rows * h + (rows - 1) * pad), "white")
    for i, im in enumerate(images):
        sheet.paste(im.convert("RGB").resize((w, h)), ((i % columns) * (w + pad), (i // columns) * (h + pad)))
    return sheet


def mask_image(mask: np.ndarray | torch.Tensor) -> Image.Image:
    m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    return Image.fromarray((m > 0.5).astype(np.uint8) * 255, mode="L")


ANIMATION_FORMATS = {".webp": "WEBP", ".gif": "GIF"}


def check_animation_path(path: str | os.PathLike, input_name: str = "process") -> Path:
    """Before sampling: an animation path ends in .webp or .gif, is not something other than
    a regular file, and its folder can be written."""
    path = Path(path)
    if path.suffix.lower() not in ANIMATION_FORMATS:
        raise InputError(input_name, f"{path.name}: use a .webp or .gif file")
    check_output(path, True, input_name)
    check_writable(path.parent, input_name)
    return path


def save_animation(frames: list[Image.Image], path: str | os.PathLike, ms_per_frame: int = 200, overwrite: bool = True,
                   input_name: str = "process") -> Path:
    """Animated WebP or GIF (by suffix), written atomically."""
    path = check_animation_path(path, input_name)
    with atomic_path(path, overwrite=overwrite, input_name=input_name) as tmp:
        frames[0].save(tmp, format=ANIMATION_FORMATS[path.suffix.lower()], save_all=True, append_images=frames[1:],
                       duration=ms_per_frame, loop=0)
    return path


def labelled_grid(cells: list[list[Image.Image]], row_labels: list[str], column_labels: list[str],
                  title: str = "") -> Image.Image:
    """rows x columns images with a header row (column labels), a left column (row labels)
    and an optional title: the paper's epoch x strength figure."""
    rows, columns = len(cells), len(cells[0])
    w, h = cells[0][0].size
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = max([probe.textbbox((0, 0), t)[2] for t in row_labels] + [0]) + 12
    top = 20 + (16 if title else 0)
    sheet = Image.new("RGB", (left + columns * (w + 2), top + rows * (h + 2)), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((4, 2), title, fill="black")
    for c, label in enumerate(column_labels):
        draw.text((left + c * (w + 2) + 2, top - 16), label, fill="black")
    for r, label in enumerate(row_labels):
        draw.text((4, top + r * (h + 2) + h // 2 - 6), label, fill="black")
        for c in range(columns):
            sheet.paste(cells[r][c].convert("RGB"), (left + c * (w + 2), top + r * (h + 2)))
    return sheet


def loss_curve(losses: list[float], size: tuple[int, int] = (512, 256)) -> Image.Image:
    """A line chart of the loss per step, raw and smoothed, with axis labels: width x height
    `size` pixels."""
    width, height = size
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    left, right, top, bottom = 48, width - 10, 10, height - 24
    draw.rectangle([left, top, right, bottom], outline=(160, 160, 160))
    if losses:
        values = np.asarray(losses, dtype=np.float64)
        lo, hi = float(values.min()), float(values.max())
        hi = hi if hi > lo else lo + 1e-6
        k = max(1, len(values) // 20)
        smooth = np.convolve(values, np.ones(k) / k, mode="valid") if len(values) >= k else values

        def xy(i, v, n):
            x = left + (right - left) * (i / max(1, n - 1))
            return x, bottom - (bottom - top) * (v - lo) / (hi - lo)
        draw.line([xy(i, v, len(values)) for i, v in enumerate(values)], fill=(170, 190, 230), width=1)
        draw.line([xy(i + (k - 1) / 2, v, len(values)) for i, v in enumerate(smooth)], fill=(20, 60, 160), width=2)
        draw.text((4, top), f"{hi:.3f}", fill="black")
        draw.text((4, bottom - 10), f"{lo:.3f}", fill="black")
        draw.text((left, bottom + 6), f"step 1 .. {len(values)}   loss (blue: smoothed)", fill="black")
    return image
