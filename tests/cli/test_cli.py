"""The standalone main job: `python -m word2scene generate WORD ...` on the tiny model."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import make_concept, model_shapes
from word2scene.cli import main
from word2scene.concepts.file import save_concept

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--model", "tiny", "--steps", "3", "--width", "64", "--height", "48"]


def _pixels(path):
    return np.asarray(Image.open(path).convert("RGB"))


def test_generate_writes_png_deterministic_for_a_seed(tmp_path, capsys):
    assert main(["generate", "airport", *FAST, "--seed", "7", "--out", str(tmp_path / "a.png")]) == 0
    assert main(["generate", "airport", *FAST, "--seed", "7", "--out", str(tmp_path / "b.png")]) == 0
    assert main(["generate", "airport", *FAST, "--seed", "8", "--out", str(tmp_path / "c.png")]) == 0
    image = Image.open(tmp_path / "a.png")
    assert image.format == "PNG" and image.size == (64, 48) and image.mode == "RGB"
    assert np.array_equal(_pixels(tmp_path / "a.png"), _pixels(tmp_path / "b.png"))
    assert not np.array_equal(_pixels(tmp_path / "a.png"), _pixels(tmp_path / "c.png"))
    params = json.loads(image.text["word2scene"])
    assert params["prompt"] == "gs, geographic scene, airport"
    assert params["steps"] == 3 and params["sampler"] == "DDIM" and params["seed"] == 7
    assert "wrote" in capsys.readouterr().out


def test_the_png_names_the_sampler_that_drew_it(tmp_path):
    assert main(["generate", "airport", *FAST, "--sampler", "dpmpp_2m", "--out", str(tmp_path / "d.png")]) == 0
    image = Image.open(tmp_path / "d.png")
    assert json.loads(image.text["word2scene"])["sampler"] == "DPM++ 2M"
    assert "Sampler: DPM++ 2M," in image.text["parameters"]  # AUTOMATIC1111's name, as other tools read it


def test_generate_with_concept_uses_its_triggers_and_strength(tiny, tmp_path):
    concept = make_concept(model_shapes(tiny), rank=4, alpha=4.0)
    concept.info.trigger_words = ["rs", "aerial view"]
    path = save_concept(concept, tmp_path / "c.safetensors")
    outs = {}
    for strength in ("0", "1.5"):
        outs[strength] = tmp_path / f"s{strength}.png"
        assert main(["generate", "dense residential", *FAST, "--concept", str(path), "--strength", strength,
                     "--out", str(outs[strength])]) == 0
    assert main(["generate", "dense residential", *FAST, "--out", str(tmp_path / "plain.png")]) == 0
    params = json.loads(Image.open(outs["0"]).text["word2scene"])
    assert params["prompt"] == "rs, aerial view, dense residential"
    assert params["concepts"][0]["strength_model"] == 0.0
    assert not np.array_equal(_pixels(outs["0"]), _pixels(outs["1.5"]))


def test_default_out_never_overwrites(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert main(["generate", "Storage Tanks", *FAST]) == 0
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == ["storage_tanks_0_00001.png", "storage_tanks_0_00002.png"]


@pytest.mark.parametrize("args, message", [
    (["--width", "63"], "width: 63"),
    (["--height", "100"], "height: 100"),
    (["--concept", "missing.safetensors"], "--concept: missing.safetensors does not exist"),
    (["--checkpoint", "missing.ckpt"], "checkpoint: missing.ckpt does not exist"),
    (["--strength", "1"], "--strength: given more often"),
])
def test_bad_input_exits_2_with_message(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    model = [] if "--checkpoint" in args else ["--model", "tiny"]
    assert main(["generate", "airport", *model, "--steps", "2", *args]) == 2
    assert message in capsys.readouterr().err


def test_existing_out_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "x.png"
    out.write_bytes(b"keep me")
    assert main(["generate", "airport", *FAST, "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == b"keep me"


def test_strength_out_of_range_from_cli(tiny, tmp_path, capsys):
    path = save_concept(make_concept(model_shapes(tiny)), tmp_path / "c.safetensors")
    assert main(["generate", "airport", *FAST, "--concept", str(path), "--strength", "5", "--out", str(tmp_path / "o.png")]) == 2
    assert "error: --strength: 5.0 is outside the accepted range" in capsys.readouterr().err
    # a cheap input is checked before the model loads: a missing checkpoint is not reached
    assert main(["generate", "airport", "--checkpoint", str(tmp_path / "none.safetensors"), "--width", "64",
                 "--concept", str(path), "--strength-clip", "-7"]) == 2
    assert "error: --strength-clip: -7.0 is outside the accepted range" in capsys.readouterr().err


def test_info_prints_metadata(tiny, tmp_path, capsys):
    path = save_concept(make_concept(model_shapes(tiny)), tmp_path / "c.safetensors")
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["trigger_words"] == ["gs", "geographic scene"] and info["modules"] == 128
    assert main(["info", str(path)]) == 0
    assert "trigger words: gs, geographic scene" in capsys.readouterr().out


def test_python_dash_m_entry_point(tmp_path):
    out = tmp_path / "m.png"
    done = subprocess.run([sys.executable, "-m", "word2scene", "generate", "beach", *FAST, "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert Image.open(out).size == (64, 48)


@pytest.mark.parametrize("args, message", [
    (["evaluate", "g", "--reference", "r", "--features", "f", "--kid-subsets", "0"], "argument --kid-subsets: 0; accepted: 1 or more"),
    (["evaluate", "g", "--reference", "r", "--features", "f", "--batch", "0"], "argument --batch: 0; accepted: 1 or more"),
    (["protocol", "c.safetensors", "--images", "0"], "argument --images: 0; accepted: 1 or more"),
    (["concepts", "mine", "d", "--top", "-1"], "argument --top: -1; accepted: 1 or more"),
    (["generate", "airport", "--seed", "-3"], "argument --seed: -3; accepted: 0 or more"),
])
def test_counts_and_seeds_are_checked_by_the_parser(capsys, args, message):
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_generate_seeds_draws_a_sheet_of_the_scenes_each_seed_draws(tmp_path, capsys):
    common = ["--model", "tiny", "--steps", "2", "--width", "64", "--height", "64"]
    sheet = tmp_path / "sheet.png"
    assert main(["generate", "airport", *common, "--seeds", "3-5,9", "--out", str(sheet)]) == 0
    grid = np.asarray(Image.open(sheet).convert("RGB"))
    assert grid.shape == (128, 128, 3)  # 4 seeds: 2 x 2 tiles of 64 px, no gaps
    for k, seed in enumerate((3, 4, 5, 9)):
        one = tmp_path / f"{seed}.png"
        assert main(["generate", "airport", *common, "--seed", str(seed), "--out", str(one)]) == 0
        tile = grid[(k // 2) * 64:(k // 2 + 1) * 64, (k % 2) * 64:(k % 2 + 1) * 64].astype(int)
        assert np.abs(tile - np.asarray(Image.open(one).convert("RGB")).astype(int)).max() <= 2
    assert json.loads(Image.open(sheet).text["word2scene"])["seeds"] == [3, 4, 5, 9]
    capsys.readouterr()
    for bad in ("5-3", "0-2000", "a", "1--2"):
        with pytest.raises(SystemExit):
            main(["generate", "airport", *common, "--seeds", bad])
        assert "--seeds" in capsys.readouterr().err
    assert main(["generate", "airport", *common, "--seeds", "1,1", "--out", str(tmp_path / "r.png")]) == 2
    assert "seeds: 2 seeds (some repeated)" in capsys.readouterr().err
