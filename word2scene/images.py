"""Image files: PNG writing with generation parameters, atomically."""
from __future__ import annotations

import json
import os
from pathlib import Path

from PIL import Image, PngImagePlugin

from .files import atomic_path


def save_png(image: Image.Image, path: str | os.PathLike, parameters: dict | None = None, overwrite: bool = False) -> Path:
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
    with atomic_path(path, overwrite=overwrite) as tmp:
        image.save(tmp, format="PNG", pnginfo=info)
    return Path(path)
