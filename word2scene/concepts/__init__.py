"""Concept files (a LoRA with its trigger words, concepts and training facts), their key
mapping onto SD1.5's modules, and patching a model with them at a strength."""
from .file import Concept, ConceptInfo, load_concept, read_concept, save_concept
from .patching import apply_concepts

__all__ = ["Concept", "ConceptInfo", "apply_concepts", "load_concept", "read_concept", "save_concept"]
