"""Heat maps, aggregation (scenes/aggregation.py): from captured attention and the prompt's word
layout to word maps, their masks, and overlays."""
import re

import numpy as np
import pytest
import torch
from PIL import Image

from word2scene.errors import InputError
from word2scene.models.sd15 import load_tokenizer
from word2scene.prompts.tokens import PromptLayout, chunk_tokens, strip_weights
from word2scene.scenes.aggregation import HeatMaps, masks, normalize
from word2scene.scenes.capture import AttentionCapture

# SD1.5's 16 attn2 sites and their grid relative to the latent (1 = full, 2 = half, ...)
SITES = [("input_1", 1), ("input_2", 1), ("input_4", 2), ("input_5", 2), ("input_7", 4), ("input_8", 4), ("middle_0", 8),
         ("output_3", 4), ("output_4", 4), ("output_5", 4), ("output_6", 2), ("output_7", 2), ("output_8", 2),
         ("output_9", 1), ("output_10", 1), ("output_11", 1)]


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def _layout(tok, prompt):
    return PromptLayout(prompt, chunk_tokens(tok, prompt), tok)


def _iou(a, b):
    return float((a & b).sum()) / float((a | b).sum())


def test_synthetic_regions_are_recovered(tok):
    """Token k attends to quadrant k at every layer: each word's thresholded map finds it."""
    prompt = "gs, river, forest, farmland, airport"
    layout = _layout(tok, prompt)
    words = ["river", "forest", "farmland", "airport"]
    latent = (16, 16)
    capture = AttentionCapture(latent)
    heads = 8
    for layer, factor in SITES:
        h, w = latent[0] // factor, latent[1] // factor
        probs = torch.full((1, heads, h * w, 77), 0.1 / 76)
        quadrant = torch.zeros(4, h, w, dtype=torch.bool)
        quadrant[0, : h // 2, : w // 2] = True
        quadrant[1, : h // 2, w // 2:] = True
        quadrant[2, h // 2:, : w // 2] = True
        quadrant[3, h // 2:, w // 2:] = True
        for k, word in enumerate(words):
            col = layout.resolve(word)[0]
            probs[0, :, quadrant[k].flatten(), col] = 0.9
        capture.add(layer, probs)
    heat = HeatMaps(capture, layout, (128, 128), passes=1)
    shown = heat.words(words)
    labels, maps = shown.labels, shown.maps
    m = masks(maps, 0.4)[0].bool()
    truth = torch.zeros(4, 128, 128, dtype=torch.bool)
    truth[0, :64, :64] = truth[1, :64, 64:] = truth[2, 64:, :64] = truth[3, 64:, 64:] = True
    for k in range(4):
        assert _iou(m[k], truth[k]) >= 0.9, (labels[k], _iou(m[k], truth[k]))


def test_word_map_is_the_mean_of_its_sub_tokens_and_bos_is_skipped(tok):
    prompt = "gs, xyzzyplugh tower"
    layout = _layout(tok, prompt)
    cols = layout.resolve("xyzzyplugh")
    assert len(cols) >= 2 and layout.words[0].columns == [1]  # BOS is column 0, "gs" is column 1
    capture = AttentionCapture((4, 4))
    probs = torch.rand(1, 2, 16, 77, generator=torch.Generator().manual_seed(0))
    for layer, _ in SITES[:2]:
        capture.add(layer, probs)
    heat = HeatMaps(capture, layout, (32, 32))
    word = heat.words(["xyzzyplugh"]).maps
    torch.testing.assert_close(word[0, 0], heat.token_maps(cols)[0].mean(0))


def test_multi_chunk_prompts_weights_and_repeated_words(tok):
    long = "gs, geographic scene, " + ", ".join(["dense residential with trees"] * 18) + ", church"
    cols = chunk_tokens(tok, long)
    assert len(cols) == 154 and cols[77] == 49406
    layout = PromptLayout(long, cols, tok)
    assert layout.resolve("church")[0] > 77
    assert len(layout.resolve("trees")) == 18 and layout.resolve("trees#18") == [layout.resolve("trees")[-1]]
    weighted = "gs, (blue roof:1.3), ((church)), \\(note\\)"
    assert strip_weights(weighted) == "gs, blue roof, church, (note)"
    a, b = _layout(tok, weighted), _layout(tok, "gs, blue roof, church, (note)")
    assert a.resolve("blue roof") == b.resolve("blue roof") and a.labels() == b.labels()
    with pytest.raises(KeyError):
        a.resolve("airport")


def test_batch_above_one_keeps_images_apart(tok):
    layout = _layout(tok, "gs, river")
    capture = AttentionCapture((2, 2))
    probs = torch.zeros(2, 1, 4, 77)
    col = layout.resolve("river")[0]
    probs[0, 0, 0, col] = 1.0  # image 0: top-left
    probs[1, 0, 3, col] = 1.0  # image 1: bottom-right
    capture.add("middle_0", probs)
    maps = HeatMaps(capture, layout, (16, 16)).words(["river"]).maps
    assert maps.shape == (2, 1, 16, 16)
    assert maps[0, 0, :8, :8].mean() > maps[0, 0, 8:, 8:].mean()
    assert maps[1, 0, 8:, 8:].mean() > maps[1, 0, :8, :8].mean()


def test_normalize_and_overlay():
    from word2scene.scenes.render import overlay

    maps = torch.tensor([[[[1.0, 3.0], [2.0, 5.0]]]])
    n = normalize(maps)
    assert float(n.min()) == 0.0 and float(n.max()) == 1.0
    im = overlay(Image.new("RGB", (32, 32), "gray"), n[0, 0], "church")
    assert im.size == (32, 32) and np.asarray(im)[0:10, 0:10].mean() < 60  # the label box


@pytest.mark.parametrize("prompt, code", [("gs, church\x00)", "U+0000"), ("gs, \x01church", "U+0001"), ("gs\x1b[31m", "U+001B")])
def test_control_characters_in_a_prompt_are_named(tok, prompt, code):
    with pytest.raises(InputError, match="^prompt: holds the control character " + re.escape(code)):
        _layout(tok, prompt)
    assert [w.text for w in _layout(tok, "gs,\tchurch\nroof").words] == ["gs", "church", "roof"]
