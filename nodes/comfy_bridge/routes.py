"""HTTP routes for the frontend: concept metadata and preview thumbnails."""
from __future__ import annotations

from pathlib import Path

from word2scene.concepts.file import load_concept
from word2scene.errors import InputError
from .folders import concept_path, public_text


PREVIEW_SUFFIXES = (".preview.png", ".preview.jpg", ".png", ".jpg", ".jpeg", ".webp")


def concept_preview(path) -> Path | None:
    """An image beside a concept file (name.preview.png, name.png, ...), as training writes one."""

    path = Path(path)
    stem = path.with_suffix("")
    return next((Path(str(stem) + s) for s in PREVIEW_SUFFIXES if Path(str(stem) + s).is_file()), None)


def register_routes() -> None:
    """GET /word2scene/concept?name=NAME (metadata as JSON) and /word2scene/concept_preview?name=NAME."""
    from dataclasses import asdict

    from aiohttp import web
    from server import PromptServer


    routes = PromptServer.instance.routes

    @routes.get("/word2scene/concept")
    async def concept_info(request):
        try:
            path = concept_path(request.query.get("name", ""))
            concept = load_concept(path, "concept_name")
        except InputError as exc:  # shown on the node as text; not an HTTP failure in the console
            return web.json_response({"error": public_text(str(exc))})
        info = asdict(concept.info)
        return web.json_response({**info, "modules": len(concept.lora), "text": concept.describe(),
                                  "has_preview": concept_preview(path) is not None})

    @routes.get("/word2scene/concept_preview")
    async def concept_preview_image(request):
        try:
            preview = concept_preview(concept_path(request.query.get("name", "")))
        except InputError as exc:
            return web.json_response({"error": public_text(str(exc))}, status=400)
        if preview is None:
            return web.json_response({"error": "no preview image beside this concept"}, status=404)
        return web.FileResponse(preview)
