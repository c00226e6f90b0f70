"""Word2Scene's ComfyUI nodes: a thin layer over the core in ../word2scene.

Node ids are prefixed W2S_ and never change: saved workflows refer to them.
"""
from .concept_nodes import ApplyConcept, ConceptLoader

NODE_CLASS_MAPPINGS = {
    "W2S_ConceptLoader": ConceptLoader,
    "W2S_ApplyConcept": ApplyConcept,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "W2S_ConceptLoader": "Word2Scene Concept Loader",
    "W2S_ApplyConcept": "Word2Scene Apply Concept",
}
