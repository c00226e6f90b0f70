"""One word to a full prompt: the RS knowledge base, the scene prompt expander, prompt
tokens (chunks, weights, word positions), and the caption mining and expert review cycle."""
from .expander import expand
from .knowledge import KnowledgeBase, load_knowledge

__all__ = ["KnowledgeBase", "expand", "load_knowledge"]
