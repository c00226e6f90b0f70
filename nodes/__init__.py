"""Word2Scene's ComfyUI nodes: a thin layer over the core in ../word2scene.

Node ids are prefixed W2S_ and never change: saved workflows refer to them.
"""
from .concept_nodes import ApplyConcept, ConceptLoader
from .prompt_nodes import ScenePrompt
from .training_nodes import TrainConcept

NODE_CLASS_MAPPINGS = {
    "W2S_ConceptLoader": ConceptLoader,
    "W2S_ApplyConcept": ApplyConcept,
    "W2S_ScenePrompt": ScenePrompt,
    "W2S_TrainConcept": TrainConcept,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "W2S_ConceptLoader": "Word2Scene Concept Loader",
    "W2S_ApplyConcept": "Word2Scene Apply Concept",
    "W2S_ScenePrompt": "Word2Scene Scene Prompt",
    "W2S_TrainConcept": "Word2Scene Train Concept",
}


def _register_folders() -> None:
    try:
        import folder_paths  # noqa: F401  (present only inside ComfyUI)
    except ImportError:
        return
    from .comfy_bridge import register_knowledge_folder

    register_knowledge_folder()


_register_folders()
