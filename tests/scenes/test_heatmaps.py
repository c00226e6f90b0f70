"""Cross-attention heat maps: capture, aggregation, word alignment, rendering, CLI."""
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SHARED
from word2scene.cli import main
from word2scene.errors import InputError
from word2scene.scenes.heatmaps import (AttentionCapture, DiffusersTracer, HeatMaps, conditional_rows, cross_attention,
                                        explain_image, generate_with_heatmaps, layer_shape, masks, normalize)
from word2scene.scenes.sampling import SamplingSettings
from word2scene.models.sd15 import load_tokenizer
from word2scene.prompts.tokens import PromptLayout, chunk_tokens, strip_weights

CHURCH = SHARED / "data" / "rs_scenes" / "church" / "000.jpg"
needs_data = pytest.mark.skipif(not CHURCH.is_file(), reason=f"shared data not found at {CHURCH}")

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
    labels, maps = heat.word_maps(words)
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
    _, word = heat.word_maps(["xyzzyplugh"])
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


def test_conditional_rows_for_cond_uncond_together_or_apart():
    assert conditional_rows([1, 0], 4).tolist() == [2, 3]
    assert conditional_rows([0, 1], 6).tolist() == [0, 1, 2]
    assert conditional_rows([0], 2).tolist() == [0, 1]
    assert conditional_rows([1], 2) is None


def test_cross_attention_matches_sdpa_and_captures_only_cond_rows():
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(4, 16, 32, generator=g), torch.randn(4, 77, 32, generator=g), torch.randn(4, 77, 32, generator=g)
    capture = AttentionCapture((4, 4))
    out = cross_attention(q, k, v, 4, capture, "input_1", torch.tensor([2, 3]))
    ref = torch.nn.functional.scaled_dot_product_attention(q.view(4, 16, 4, 8).transpose(1, 2),
                                                           k.view(4, 77, 4, 8).transpose(1, 2),
                                                           v.view(4, 77, 4, 8).transpose(1, 2))
    torch.testing.assert_close(out, ref.transpose(1, 2).reshape(4, 16, 32), rtol=1e-4, atol=1e-5)
    assert capture.sums["input_1"].shape == (2, 77, 4, 4) and capture.counts["input_1"] == 4
    # each position's probabilities over the 77 columns sum to 1 per head: 4 heads -> 4
    torch.testing.assert_close(capture.sums["input_1"].sum(1), torch.full((2, 4, 4), 4.0))


def test_batch_above_one_keeps_images_apart(tok):
    layout = _layout(tok, "gs, river")
    capture = AttentionCapture((2, 2))
    probs = torch.zeros(2, 1, 4, 77)
    col = layout.resolve("river")[0]
    probs[0, 0, 0, col] = 1.0  # image 0: top-left
    probs[1, 0, 3, col] = 1.0  # image 1: bottom-right
    capture.add("middle_0", probs)
    _, maps = HeatMaps(capture, layout, (16, 16)).word_maps(["river"])
    assert maps.shape == (2, 1, 16, 16)
    assert maps[0, 0, :8, :8].mean() > maps[0, 0, 8:, 8:].mean()
    assert maps[1, 0, 8:, 8:].mean() > maps[1, 0, :8, :8].mean()


def test_layer_shapes_for_any_multiple_of_8():
    assert layer_shape(9, 5, 45) == (9, 5) and layer_shape(9, 5, 15) == (5, 3) and layer_shape(9, 5, 2) == (2, 1)
    with pytest.raises(InputError, match="attn2 layout"):
        layer_shape(8, 8, 7)


def test_generation_capture_is_bounded_and_backend_gives_maps(tiny):
    sizes = []
    for steps in (2, 5):
        image, heat, frames = generate_with_heatmaps(tiny, "gs, geographic scene, church", SamplingSettings(
            steps=steps, width=72, height=40, seed=1), every=0)
        assert image.size == (72, 40) and heat.passes == steps and len(heat.capture.sums) == 16
        sizes.append(heat.capture.nbytes())
        labels, maps = heat.word_maps([])
        assert labels == ["gs", "geographic", "scene", "church"] and maps.shape == (1, 4, 40, 72)
        assert float(maps.min()) >= 0
    assert sizes[0] == sizes[1]  # memory does not grow with steps


@needs_data
def test_explain_real_image_and_bad_inputs(tiny):
    with Image.open(CHURCH) as im:
        image, heat = explain_image(tiny, im.convert("RGB"), "gs, geographic scene, church", [100, 500], seed=0)
    assert image.size == (144, 144) and "resized to 144 x 144" in heat.note and heat.passes == 2
    with pytest.raises(InputError, match=r"'airport' is not in the prompt; its words are: gs, geographic, scene, church"):
        heat.word_maps(["airport"])
    with pytest.raises(InputError, match="timesteps"):
        explain_image(tiny, image, "gs, church", [1000])
    with pytest.raises(InputError, match="prompt: is empty"):
        explain_image(tiny, image, "  ", [100])
    with pytest.raises(InputError, match="threshold"):
        masks(torch.ones(1, 1, 2, 2), 1.5)


def test_model_without_sd15_attn2_layout_is_refused():
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(block_out_channels=(8, 16), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=8,
                                attention_head_dim=2, norm_num_groups=4, layers_per_block=1, sample_size=8)
    with pytest.raises(InputError, match="SD1.5 has 16"):
        with DiffusersTracer(unet, (8, 8)):
            pass


@needs_data
def test_cli_heatmap_generate_and_explain(tmp_path, capsys):
    out = tmp_path / "gen"
    assert main(["heatmap", "--model", "tiny", "gs, geographic scene, a church with a (blue roof:1.2)", "--steps", "4", "--width", "64",
                 "--height", "64", "--out", str(out), "--process", str(tmp_path / "p.gif"), "--process-every", "2"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert "grid.png" in names and "scores.json" in names and "image.png" in names
    assert len([n for n in names if n.startswith("overlay_")]) == 6 and len([n for n in names if n.startswith("mask_")]) == 6
    scores = json.loads((out / "scores.json").read_text())
    assert scores["words"] == ["gs", "geographic", "scene", "church", "blue", "roof"] and scores["passes"] == 4
    with Image.open(tmp_path / "p.gif") as gif:
        assert gif.n_frames == 2 and gif.size[0] == 7 * 64 + 6 * 4
    with Image.open(out / "mask_03_church.png") as mask:
        assert mask.mode == "L" and set(np.unique(np.asarray(mask))) <= {0, 255}
    real = CHURCH
    assert main(["heatmap", "--model", "tiny", "gs, geographic scene, church", "--image", str(real), "--words", "church,geographic scene",
                 "--out", str(tmp_path / "real")]) == 0
    assert "resized to 144 x 144" in capsys.readouterr().out
    assert len(list((tmp_path / "real").glob("overlay_*.png"))) == 2
    # an earlier run's folder: refused without --overwrite, replaced as a whole with it
    again = ["heatmap", "--model", "tiny", "gs, church", "--image", str(real), "--words", "church", "--out", str(out)]
    assert main(again) == 2
    assert "--out: " in capsys.readouterr().err and len(list(out.glob("overlay_*.png"))) == 6
    (out / "notes.txt").write_text("mine")
    assert main([*again, "--overwrite"]) == 0
    assert sorted(p.name for p in out.glob("overlay_*.png")) == ["overlay_00_church.png"]
    assert len(list(out.glob("mask_*.png"))) == 1 and (out / "notes.txt").read_text() == "mine"
    assert main(["heatmap", "--model", "tiny", "gs, church", "--words", "airport", "--steps", "2", "--width", "64", "--height", "64",
                 "--out", str(tmp_path / "bad")]) == 2
    assert "'airport' is not in the prompt; its words are: gs, church" in capsys.readouterr().err


def test_generate_process_animation(tmp_path):
    assert main(["generate", "--model", "tiny", "airport", "--steps", "4", "--width", "64", "--height", "64", "--out", str(tmp_path / "a.png"),
                 "--process", str(tmp_path / "a.webp"), "--process-every", "1"]) == 0
    with Image.open(tmp_path / "a.webp") as anim:
        assert 2 <= anim.n_frames <= 4 and anim.size == (64, 64)  # identical frames may be merged


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
