"""Word2Scene's ComfyUI nodes: a thin layer over the core library `word2scene`.

Node ids are prefixed W2S_ and never change: saved workflows refer to them.
"""
import functools

from word2scene.errors import InputError
from . import comfy_bridge
from .concept_nodes import ApplyConcept, ConceptLoader
from .evaluation_nodes import Evaluate
from .grid_nodes import StrengthGrid
from .heatmap_nodes import ExplainImage, Heatmap, KSamplerHeatmaps
from .model_nodes import MiniLoader
from .prompt_nodes import ScenePrompt
from .training_nodes import TrainConcept

# Each node's identity (NODE_ID, DISPLAY_NAME, outputs) is on its class; these mappings, the
# workflow builder and the node tables of README.md and docs/nodes.md read it there.
NODES = (ConceptLoader, ApplyConcept, ScenePrompt, TrainConcept, KSamplerHeatmaps, Heatmap, ExplainImage, StrengthGrid,
         Evaluate, MiniLoader)
NODE_CLASS_MAPPINGS = {cls.NODE_ID: cls for cls in NODES}
NODE_DISPLAY_NAME_MAPPINGS = {cls.NODE_ID: cls.DISPLAY_NAME for cls in NODES}


def _user_errors(cls) -> None:
    """Errors from a node's run read as its user knows things: the node's input names for
    the core's (a class's CORE_INPUTS, e.g. out -> save_name) and paths by their ComfyUI folder."""
    run = getattr(cls, cls.FUNCTION)
    if getattr(run, "w2s_user_errors", False):
        return

    @functools.wraps(run)
    def wrapped(self, *args, **kwargs):
        try:
            return run(self, *args, **kwargs)
        except InputError as exc:
            raise comfy_bridge.user_error(exc, getattr(cls, "CORE_INPUTS", {})) from None

    wrapped.w2s_user_errors = True
    setattr(cls, cls.FUNCTION, wrapped)


for _cls in NODE_CLASS_MAPPINGS.values():
    _user_errors(_cls)


def _register_folders() -> None:
    try:
        import folder_paths  # noqa: F401  (present only inside ComfyUI)
    except ImportError:
        return
    from .comfy_bridge import register_knowledge_folder, register_routes

    register_knowledge_folder()
    try:
        register_routes()
    except (ImportError, AttributeError):  # ComfyUI used as a library: no server to serve the frontend
        pass


_register_folders()
