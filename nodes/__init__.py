"""Word2Scene's ComfyUI nodes: a thin layer over the core in ../word2scene.

Node ids are prefixed W2S_ and never change: saved workflows refer to them.
"""
from .concept_nodes import ApplyConcept, ConceptLoader
from .prompt_nodes import ScenePrompt
from .evaluation_nodes import Evaluate
from .grid_nodes import StrengthGrid
from .heatmap_nodes import ExplainImage, Heatmap, KSamplerHeatmaps
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
}


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
