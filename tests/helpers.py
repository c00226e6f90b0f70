"""Test helpers shared by the test modules (plain functions, no fixtures)."""
from __future__ import annotations

import torch

from word2scene.concepts import keys as lora_keys
from word2scene.concepts.file import Concept, ConceptInfo, LoraWeights, TrainingFacts


def model_shapes(sd) -> dict[str, tuple]:
    """Canonical LoRA name -> weight shape of a loaded diffusers SD15 bundle."""
    from word2scene.concepts.patching import lora_modules

    return {name: tuple(m.weight.shape) for name, m in lora_modules(sd).items()}


def sd15_full_shapes() -> dict[str, tuple]:
    from word2scene.models.sd15 import sd15_module_shapes

    return {lora_keys.kohya_name(c, p): s for c, paths in sd15_module_shapes().items() for p, s in paths.items()}


def make_concept(shapes: dict[str, tuple], rank: int = 4, alpha: float = 2.0, seed: int = 0,
                 module_set: str = "attention", text_encoder: bool = False, name: str = "test_concept") -> Concept:
    """A concept with random (non-zero) down and up weights for the chosen modules."""
    gen = torch.Generator().manual_seed(seed)
    suffixes = {"attention": lora_keys.ATTENTION_SUFFIXES,
                "kohya": lora_keys.ATTENTION_SUFFIXES + lora_keys.KOHYA_EXTRA_SUFFIXES}[module_set]
    targets = lora_keys.sd15_targets()
    lora = {}
    for name_, shape in sorted(shapes.items()):
        component, path = targets.get(name_, (None, ""))
        chosen = (component == "unet" and path.endswith(suffixes)) or (
            text_encoder and component == "text_encoder" and path.endswith(("q_proj", "k_proj", "v_proj", "out_proj")))
        if not chosen:
            continue
        out, inp = shape[0], shape[1]
        kernel = tuple(shape[2:])
        down = torch.randn((rank, inp) + kernel, generator=gen) * 0.1
        up = torch.randn((out, rank) + (1,) * len(kernel), generator=gen) * 0.1
        lora[name_] = LoraWeights(down, up, alpha)
    info = ConceptInfo(name=name, concepts=["airport", "dense residential"], rank=rank, alpha=alpha,
                       training=TrainingFacts(steps=100, epochs=2, resolution=64, dataset_size=20,
                                              dataset_hash="abc123", learning_rate=1e-4, seed=seed),
                       recommended_strength=0.8, base_model_hash="deadbeef")
    return Concept(info, lora)
