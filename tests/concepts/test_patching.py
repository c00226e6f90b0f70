"""Strength math on the standalone path: W' = W + s * (alpha / rank) * up @ down."""
import pytest
import torch

from helpers import make_concept, model_shapes
from word2scene.errors import InputError
from word2scene.concepts.patching import apply_concepts, lora_modules


def _weights(sd):
    return {n: m.weight.detach().clone() for n, m in lora_modules(sd).items()}


@pytest.mark.parametrize("strength", [0.0, 0.5, 1.0, -1.0, 2.5])
def test_strength_matches_explicit_formula(fresh_tiny, strength):
    concept = make_concept(model_shapes(fresh_tiny), rank=4, alpha=2.0, module_set="kohya", text_encoder=True)
    before = _weights(fresh_tiny)
    apply_concepts(fresh_tiny, [(concept, strength, strength / 2)])
    after = _weights(fresh_tiny)
    for name, w in concept.lora.items():
        s = strength if name.startswith("lora_unet_") else strength / 2
        up = w.up.flatten(1)
        down = w.down.flatten(1)
        expected = before[name] + s * (2.0 / 4) * (up @ down).reshape(before[name].shape)
        torch.testing.assert_close(after[name], expected, rtol=0, atol=1e-6)
    untouched = [n for n in before if n not in concept.lora]
    assert untouched and all(torch.equal(before[n], after[n]) for n in untouched)
    if strength == 0:
        assert all(torch.equal(before[n], after[n]) for n in before)


def test_changing_strength_and_removing_restore_exactly(fresh_tiny):
    concept = make_concept(model_shapes(fresh_tiny))
    before = _weights(fresh_tiny)
    for s in (1.0, 0.3, -0.7, 1.0):
        apply_concepts(fresh_tiny, [(concept, s, s)])
    once = _weights(fresh_tiny)
    apply_concepts(fresh_tiny, [])
    assert all(torch.equal(before[n], w) for n, w in _weights(fresh_tiny).items())
    apply_concepts(fresh_tiny, [(concept, 1.0, 1.0)])
    assert all(torch.equal(once[n], w) for n, w in _weights(fresh_tiny).items())


def test_two_concepts_stack(fresh_tiny):
    a = make_concept(model_shapes(fresh_tiny), seed=1)
    b = make_concept(model_shapes(fresh_tiny), seed=2, rank=8, alpha=8.0)
    before = _weights(fresh_tiny)
    apply_concepts(fresh_tiny, [(a, 0.5, 0.5), (b, 1.0, 1.0)])
    after = _weights(fresh_tiny)
    name = next(iter(a.lora))
    expected = before[name] + 0.5 * (a.lora[name].alpha / 4) * a.lora[name].diff() + 1.0 * (8.0 / 8) * b.lora[name].diff()
    torch.testing.assert_close(after[name], expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("strength", [3.5, -10, float("nan"), "strong"])
def test_strength_outside_range(fresh_tiny, strength):
    with pytest.raises(InputError, match="strength_model"):
        apply_concepts(fresh_tiny, [(make_concept(model_shapes(fresh_tiny)), strength, 1.0)])
