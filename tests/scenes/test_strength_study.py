"""The epoch x strength grid (the paper's figure)."""
import numpy as np
import torch
import pytest
from PIL import Image

from helpers import make_concept, model_shapes
from word2scene.cli import main
from word2scene.concepts.file import save_concept
from word2scene.errors import InputError
from word2scene.scenes.sampling import SamplingSettings
from word2scene.scenes.strength_study import parse_strengths, strength_grid


def test_grid_cells_follow_strength_and_restore_the_model(fresh_tiny, tmp_path):
    from word2scene.concepts.patching import lora_modules

    a = make_concept(model_shapes(fresh_tiny), seed=1, alpha=8.0)
    b = make_concept(model_shapes(fresh_tiny), seed=2, alpha=8.0)
    a.info.training.epochs, b.info.training.epochs = 1, 2
    before = {n: m.weight.detach().clone() for n, m in lora_modules(fresh_tiny).items()}
    settings = SamplingSettings(steps=2, width=32, height=32, seed=4)
    image, cells = strength_grid(fresh_tiny, "gs, geographic scene, airport", [a, b], [0.0, 1.0], settings)
    assert len(cells) == 2 and len(cells[0]) == 2 and image.width > 2 * 32 and image.height > 2 * 32
    pixels = [[np.asarray(c) for c in row] for row in cells]
    assert np.array_equal(pixels[0][0], pixels[1][0])  # strength 0 = the base model, whatever the concept
    assert not np.array_equal(pixels[0][1], pixels[1][1]) and not np.array_equal(pixels[0][0], pixels[0][1])
    assert all(np.array_equal(before[n], m.weight.detach()) for n, m in lora_modules(fresh_tiny).items())


def test_strength_parsing():
    assert parse_strengths("0, 0.5,1") == [0.0, 0.5, 1.0]
    for bad in ("", "a,b", "0,9"):
        with pytest.raises(InputError, match="strengths"):
            parse_strengths(bad)


def test_cli_grid(tiny, tmp_path, capsys):
    paths = [str(save_concept(make_concept(model_shapes(tiny), seed=s), tmp_path / f"epoch_{s}.safetensors")) for s in (1, 2)]
    out = tmp_path / "grid.png"
    args = ["grid", "airport", "--model", "tiny", "--concept", paths[0], "--concept", paths[1], "--strengths", "0,0.5,1", "--steps", "2",
            "--width", "32", "--height", "32", "--out", str(out)]
    assert main(args) == 0
    with Image.open(out) as im:
        assert im.width >= 3 * 32 and im.height >= 2 * 32
    assert "2 concept(s) x 3 strengths" in capsys.readouterr().out
    assert main(args) == 2 and "exists" in capsys.readouterr().err


def test_a_batch_of_prompts_draws_what_one_by_one_sampling_draws(tiny):
    from word2scene.scenes.sampling import sample

    settings = SamplingSettings(steps=3, width=32, height=32, seed=0)
    prompts = ["gs, geographic scene, airport", "gs, geographic scene, forest"]
    batch = sample(tiny, prompts, settings, seeds=[5, 9])
    alone = [sample(tiny, p, SamplingSettings(steps=3, width=32, height=32, seed=s)) for p, s in zip(prompts, (5, 9))]
    assert batch.shape == (2, 4, 4, 4)
    for k in range(2):
        assert torch.allclose(batch[k:k + 1], alone[k], atol=1e-4)
    assert not torch.allclose(alone[0], alone[1], atol=1e-2)
    with pytest.raises(InputError, match="seeds"):
        sample(tiny, prompts, settings, seeds=[1])


def test_make_scenes_draws_what_make_scene_draws_for_each_word_and_seed(tiny):
    from word2scene.scenes.pipeline import make_scene, make_scenes

    settings = SamplingSettings(steps=3, width=32, height=32, seed=0)
    jobs = [("airport", 5), ("forest", 9), ("airport", 6)]
    scenes = make_scenes(tiny, jobs, settings, parameters={"strength": 0.5})
    for (word, seed), scene in zip(jobs, scenes):
        alone = make_scene(tiny, word, SamplingSettings(steps=3, width=32, height=32, seed=seed),
                           parameters={"strength": 0.5})
        assert scene.prompt == alone.prompt and scene.settings == alone.settings
        assert scene.parameters == alone.parameters and scene.parameters["seed"] == seed
        assert np.abs(np.asarray(scene.image, dtype=int) - np.asarray(alone.image, dtype=int)).max() <= 1
    assert not np.array_equal(np.asarray(scenes[0].image), np.asarray(scenes[2].image))


def test_the_study_takes_any_drawing_function_as_the_node_passes_its_sampler(tiny):
    from word2scene.scenes.strength_study import study_grid, study_title

    concepts = [make_concept(model_shapes(tiny), name="e1"), make_concept(model_shapes(tiny), name="e2")]
    drawn = []

    def draw(concept, strength):
        drawn.append((concept.info.name, strength))
        return Image.new("RGB", (16, 16), (int(255 * strength), 0, 0))
    grid, cells = study_grid(concepts, [0.0, 1.0], draw, study_title("gs, church", 3, 20, 7.0))
    assert drawn == [("e1", 0.0), ("e1", 1.0), ("e2", 0.0), ("e2", 1.0)]
    assert [[c.getpixel((0, 0)) for c in row] for row in cells] == [[(0, 0, 0), (255, 0, 0)]] * 2
    assert grid.width > 2 * 16 and grid.height > 2 * 16
    assert study_title("gs, church", 3, 20, 7.0) == "gs, church | seed 3, 20 steps, CFG 7"
