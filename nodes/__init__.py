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

NODE_CLASS_MAPPINGS = {
    "W2S_ConceptLoader": ConceptLoader,
    "W2S_ApplyConcept": ApplyConcept,
    "W2S_ScenePrompt": ScenePrompt,
    "W2S_TrainConcept": TrainConcept,
    "W2S_KSamplerHeatmaps": KSamplerHeatmaps,
    "W2S_Heatmap": Heatmap,
    "W2S_ExplainImage": ExplainImage,
    "W2S_StrengthGrid": StrengthGrid,
    "W2S_Evaluate": Evaluate,
    "W2S_MiniLoader": MiniLoader,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "W2S_ConceptLoader": "Word2Scene Concept Loader",
    "W2S_ApplyConcept": "Word2Scene Apply Concept",
    "W2S_ScenePrompt": "Word2Scene Scene Prompt",
    "W2S_TrainConcept": "Word2Scene Train Concept",
    "W2S_KSamplerHeatmaps": "Word2Scene KSampler (Heat Maps)",
    "W2S_Heatmap": "Word2Scene Heat Map",
    "W2S_ExplainImage": "Word2Scene Explain Image",
    "W2S_StrengthGrid": "Word2Scene Strength Grid",
    "W2S_Evaluate": "Word2Scene Evaluate",
    "W2S_MiniLoader": "Word2Scene Mini Loader",
}


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
