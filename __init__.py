"""Word2Scene node pack for ComfyUI.

ComfyUI imports this folder as a package under a name made from its path. The core library
beside it is imported as the top-level package `word2scene`, so that what ComfyUI shows
of it reads as users and the docs name it (an error's type is
`word2scene.errors.InputError`, not a path); the nodes import it by that name.
"""
import importlib.util
import os
import sys


def _import_core() -> None:
    core = os.path.join(os.path.dirname(os.path.abspath(__file__)), "word2scene")
    loaded = sys.modules.get("word2scene")
    if loaded is not None:
        where = os.path.dirname(os.path.abspath(getattr(loaded, "__file__", "") or ""))
        if os.path.realpath(where) != os.path.realpath(core):
            raise ImportError(f"another word2scene package is already imported ({where}); the Word2Scene nodes need "
                              f"their own ({core}): uninstall the other one from ComfyUI's Python")
        return
    spec = importlib.util.spec_from_file_location("word2scene", os.path.join(core, "__init__.py"),
                                                  submodule_search_locations=[core])
    module = importlib.util.module_from_spec(spec)
    sys.modules["word2scene"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["word2scene"]
        raise


_import_core()

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402  (needs the core imported)

WEB_DIRECTORY = "./js"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
