"""Bad input through the CLI: each error names the option the user set, and inputs that used to
pass and give wrong results (a 16-bit TIFF, a plain class folder's default split, text that is
not UTF-8, malformed review files, tiny images) are read right or refused with a reason."""
import json
import shutil

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import SHARED
from word2scene.cli import main
from word2scene.imagery import read_image

SCENES = SHARED / "data" / "rs_scenes"


@pytest.mark.parametrize("args, message", [
    (["protocol", "--model", "tiny", "--size", "5000", "--out", "p"], "error: --size: 5000 is not accepted; use 8 to 4096"),
    (["protocol", "--model", "tiny", "--size", "60", "--out", "p"], "error: --size: 60 is not accepted"),
    (["protocol", "--model", "tiny", "--strength", "9", "--out", "p"], "error: --strength: 9.0 is outside"),
    (["protocol", "--model", "tiny", "--grid-strengths", "0, 7", "--out", "p"], "error: --grid-strengths: "),
    (["grid", "airport", "--model", "tiny", "--concept", "c.safetensors", "--strengths", "", "--out", "g.png"],
     "error: --strengths: give at least one strength"),
    (["generate", "airport", "--model", "tiny", "--width", "5000"], "error: --width: 5000 is not accepted"),
    (["train", "data", "--model", "tiny", "--out", "c.safetensors", "--preview-every", "5", "--preview-steps", "0"],
     "error: --preview-steps: 0 is not accepted"),
    (["train", "data", "--model", "tiny", "--out", "c.safetensors", "--resolution", "100032"],
     "error: --resolution: 100032 is not accepted"),
    (["pretrain", "data", "--model", "tiny", "--out", "m.safetensors", "--resolution", "8192"],
     "error: --resolution: 8192 is not accepted"),
    (["grid", "airport", "--model", "tiny", "--concept", "c.safetensors", "--width", "100000", "--out", "g.png"],
     "error: --width: 100000 is not accepted; use 8 to 4096"),
    (["generate", "airport", "--model", "tiny", "--width", "0"], "error: --width: 0 is not accepted; use 8 to 4096"),
    (["generate", "airport", "--model", "tiny", "--height", "0"], "error: --height: 0 is not accepted; use 8 to 4096"),
    (["heatmap", "airport", "--model", "tiny", "--width", "0", "--out", "m"], "error: --width: 0 is not accepted"),
    (["generate", "airport", "--model", "tiny", "--seed", "4294967296"],
     "error: --seed: 4294967296 is not accepted; use 0 to 4294967295"),
    (["heatmap", "airport", "--model", "tiny", "--seed", str(2**40), "--out", "m"], "error: --seed: 1099511627776 is "),
    (["grid", "airport", "--model", "tiny", "--concept", "c.safetensors", "--strengths", ",".join(["0.5"] * 5000),
      "--out", "g.png"], "error: --strengths: 5000 strengths; accepted: 1 to 64"),
    (["captions", "propose", "data", "--classifier", "c.safetensors", "--out", "r.yaml", "--tag-threshold", "2"],
     "error: --tag-threshold: 2.0 is not accepted; use 0.0 to 1.0"),
    (["captions", "propose", "data", "--classifier", "c.safetensors", "--out", "r.yaml", "--tag-threshold", "nan"],
     "error: --tag-threshold: nan is not a number"),
])
def test_errors_name_the_option_the_user_set(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err, err


def test_heatmap_reads_16_bit_imagery_as_training_does(tmp_path):
    rng = np.random.RandomState(0)
    raw = (rng.rand(64, 64) * 3000 + 200).astype(np.uint16)  # a typical 12-bit sensor range in 16 bits
    Image.fromarray(raw).save(tmp_path / "scene.tif")
    assert main(["heatmap", "airport", "--model", "tiny", "--image", str(tmp_path / "scene.tif"), "--timesteps", "100",
                 "--out", str(tmp_path / "maps")]) == 0
    used = np.asarray(Image.open(tmp_path / "maps" / "image.png").convert("RGB"))
    assert np.array_equal(used, np.asarray(read_image(tmp_path / "scene.tif")))  # the training reader's stretch
    assert used.min() == 0 and used.max() == 255 and 100 < used.mean() < 155  # not all white


@pytest.mark.parametrize("content, message", [
    (b"\x89PNG\r\n\x1a\nbroken", "cannot be read as an image (UnidentifiedImageError)"),
    (None, "4 x 4 px is too small to explain; accepted: at least 8 px per side"),
])
def test_heatmap_refuses_corrupt_and_tiny_images_by_name(tmp_path, capsys, content, message):
    path = tmp_path / "x.png"
    if content is None:
        Image.new("RGB", (4, 4)).save(path)
    else:
        path.write_bytes(content)
    assert main(["heatmap", "airport", "--model", "tiny", "--image", str(path), "--out", str(tmp_path / "m")]) == 2
    assert f"error: --image: " in (err := capsys.readouterr().err) and message in err
    assert not (tmp_path / "m").exists()


def test_explain_image_in_the_library_refuses_tiny_images(tiny):
    from word2scene.errors import InputError
    from word2scene.scenes.heatmaps import explain_image

    with pytest.raises(InputError, match=r"^image: 7 x 20 px is too small"):
        explain_image(tiny, Image.new("RGB", (7, 20)), "airport", [100])


@pytest.mark.skipif(not SCENES.is_dir(), reason=f"shared data not found at {SCENES}")
def test_classifier_test_default_split_is_the_held_out_one_and_class_folders_must_choose(tmp_path, capsys):
    from word2scene.evaluation.classifier import ClassifierConfig, save_classifier, train_classifier
    from word2scene.evaluation.image_sets import image_set

    folders = tmp_path / "folders"
    for cls in ("beach", "forest"):
        (folders / cls).mkdir(parents=True)
        for image in sorted((SCENES / cls).glob("*.jpg"))[:4]:
            shutil.copy(image, folders / cls / image.name)
    clf = save_classifier(train_classifier(image_set(folders, "data"), ClassifierConfig(width=4, input_size=32, epochs=1)),
                          tmp_path / "clf.safetensors")
    assert main(["classifier", "test", str(folders), "--classifier", str(clf)]) == 2
    assert "error: --split: " in (err := capsys.readouterr().err) and "no captions.jsonl, so no held-out split" in err
    assert main(["classifier", "test", str(folders), "--classifier", str(clf), "--split", "all"]) == 0
    assert "on 8 images" in capsys.readouterr().out
    rows = [{"file": f"{cls}/{p.name}", "class": cls, "split": "test" if n == 3 else "train"}
            for cls in ("beach", "forest") for n, p in enumerate(sorted((folders / cls).iterdir()))]
    (folders / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))  # AID's split names
    assert main(["classifier", "test", str(folders), "--classifier", str(clf)]) == 0
    assert "on 2 images" in capsys.readouterr().out


def test_captions_that_are_not_utf8_are_named_with_their_line(tmp_path, capsys):
    (tmp_path / "airport").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "airport" / "a.png")
    (tmp_path / "captions.jsonl").write_bytes(
        b'{"file": "airport/a.png", "class": "airport", "caption": "ok"}\n'
        b'{"file": "airport/a.png", "class": "airport", "caption": "caf\xe9"}\n')
    assert main(["train", str(tmp_path), "--model", "tiny", "--out", str(tmp_path / "c.safetensors")]) == 2
    assert "captions.jsonl:2: not UTF-8 text (byte 0xe9); save the file as UTF-8" in capsys.readouterr().err
    assert main(["concepts", "mine", str(tmp_path / "captions.jsonl"), "--out", str(tmp_path / "r.yaml")]) == 2
    assert "error: captions: " in (err := capsys.readouterr().err) and "captions.jsonl:2: not UTF-8" in err


@pytest.mark.parametrize("proposals, message", [
    (["runway"], "classes.airport.proposals[0]: expected a mapping with kind, text and decision; found 'runway'"),
    ({"kind": "element"}, "classes.airport.proposals: expected a list of proposals"),
    ([{"kind": "element", "text": None, "decision": "adopt"}], "proposals[0]: decision adopt needs a `text`"),
    ([{"kind": "element", "text": 5, "decision": "adopt"}], "proposals[0]: decision adopt needs a `text`; found 5"),
    ([{"kind": "tree", "text": "runway", "decision": "adopt"}], "proposals[0]: kind 'tree'; accepted: element"),
])
def test_malformed_review_proposals_are_named(tmp_path, capsys, proposals, message):
    review = tmp_path / "review.yaml"
    review.write_text(yaml.safe_dump({"classes": {"airport": {"concept": "airport", "proposals": proposals}}}))
    assert main(["concepts", "merge", str(review), "--into", str(tmp_path / "mine.yaml")]) == 2
    err = capsys.readouterr().err
    assert "error: review: " in err and message in err, err
    assert not (tmp_path / "mine.yaml").exists()


def test_merge_output_errors_name_into(tmp_path, capsys):
    review = tmp_path / "review.yaml"
    review.write_text(json.dumps({"classes": {"airport": {"concept": "airport", "add": [
        {"kind": "element", "text": "apron"}]}}}))
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["concepts", "merge", str(review), "--into", str(blocker / "mine.yaml")]) == 2
    assert "error: --into: cannot write in" in capsys.readouterr().err


def test_a_missing_shipped_concept_is_blamed_on_the_model_not_on_concept(tmp_path, monkeypatch, capsys):
    import word2scene.cli.common as common

    monkeypatch.setattr(common, "MINI_CONCEPT", tmp_path / "gone.safetensors")
    assert main(["generate", "airport", "--out", str(tmp_path / "a.png")]) == 2
    err = capsys.readouterr().err
    assert "error: --model: " in err and "gone.safetensors does not exist" in err, err


def test_captions_of_from_that_are_not_utf8_are_blamed_on_from(tmp_path, capsys):
    from word2scene.evaluation.classifier import ClassifierConfig, save_classifier, train_classifier
    from word2scene.evaluation.image_sets import image_set

    mine, captioned = tmp_path / "mine", tmp_path / "captioned"
    for n, cls in enumerate(("airport", "beach")):
        for folder in (mine, captioned):
            (folder / cls).mkdir(parents=True)
            Image.new("RGB", (32, 32), (n * 200, 50, 0)).save(folder / cls / "a.png")
    clf = save_classifier(train_classifier(image_set(mine, "data"), ClassifierConfig(width=4, input_size=32, epochs=1)),
                          tmp_path / "clf.safetensors")
    (captioned / "captions.jsonl").write_bytes(b'{"file": "airport/a.png", "class": "airport", "caption": "caf\xe9"}\n')
    assert main(["captions", "propose", str(mine), "--classifier", str(clf), "--from", str(captioned), "--out",
                 str(tmp_path / "r.yaml")]) == 2
    err = capsys.readouterr().err
    assert "error: --from: " in err and "captions.jsonl:1: not UTF-8 text (byte 0xe9)" in err, err
