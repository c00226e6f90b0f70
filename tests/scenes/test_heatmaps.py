"""Heat maps of standalone runs (scenes/heatmaps.py): generation with capture, a real image
explained, the CLI."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SHARED
from word2scene.cli import main
from word2scene.errors import InputError
from word2scene.scenes.aggregation import masks
from word2scene.scenes.heatmaps import explain_image, explainable_image, generate_with_heatmaps
from word2scene.scenes.sampling import SamplingSettings

CHURCH = SHARED / "data" / "rs_scenes" / "church" / "000.jpg"
needs_data = pytest.mark.skipif(not CHURCH.is_file(), reason=f"shared data not found at {CHURCH}")


def test_generation_capture_is_bounded_and_backend_gives_maps(tiny):
    sizes = []
    for steps in (2, 5):
        image, heat, frames = generate_with_heatmaps(tiny, "gs, geographic scene, church", SamplingSettings(
            steps=steps, width=72, height=40, seed=1), every=0)
        assert image.size == (72, 40) and heat.passes == steps and len(heat.capture.sums) == 16
        sizes.append(heat.capture.nbytes())
        shown = heat.words([])
        labels, maps = shown.labels, shown.maps
        assert labels == ["gs", "geographic", "scene", "church"] and maps.shape == (1, 4, 40, 72)
        assert float(maps.min()) >= 0
    assert sizes[0] == sizes[1]  # memory does not grow with steps


@needs_data
def test_explain_real_image_and_bad_inputs(tiny):
    with Image.open(CHURCH) as im:
        image, heat = explain_image(tiny, im.convert("RGB"), "gs, geographic scene, church", [100, 500], seed=0)
    assert image.size == (144, 144) and "resized to 144 x 144" in heat.note and heat.passes == 2
    with pytest.raises(InputError, match=r"'airport' is not in the prompt; its words are: gs, geographic, scene, church"):
        heat.words(["airport"])
    with pytest.raises(InputError, match="timesteps"):
        explain_image(tiny, image, "gs, church", [1000])
    with pytest.raises(InputError, match="prompt: is empty"):
        explain_image(tiny, image, "  ", [100])
    with pytest.raises(InputError, match="threshold"):
        masks(torch.ones(1, 1, 2, 2), 1.5)


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


def test_an_explained_image_is_prepared_once_for_library_cli_and_node():
    same, note = explainable_image(Image.new("L", (64, 48)))
    assert same.mode == "RGB" and same.size == (64, 48) and note is None
    resized, note = explainable_image(Image.new("RGB", (70, 9)))
    assert resized.size == (64, 8) and note == "resized to 64 x 8 (a multiple of 8)"
    with pytest.raises(InputError, match=r"^image: 7 x 100 px is too small to explain; accepted: at least 8 px"):
        explainable_image(Image.new("RGB", (7, 100)))
