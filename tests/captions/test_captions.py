"""Hybrid intelligence for training captions, per image: proposals at three levels on real
images, the review round trip (adopt, amend, annihilate, add, unreviewed, changed images),
the training folder it writes, and the caption metrics against hand computations."""
import json
import math
import shutil

import pytest
import yaml

from conftest import SHARED
from word2scene.captions.quality import bleu4, cider_d, tag_scores
from word2scene.captions.review import MANIFEST
from word2scene.cli import main
from word2scene.datasets import scan_dataset, training_captions
from word2scene.prompts.knowledge import load_knowledge

SCENES = SHARED / "data" / "rs_scenes"
CLASSES = ("airport", "beach", "desert")
pytestmark = pytest.mark.skipif(not SCENES.is_dir(), reason=f"shared data not found at {SCENES}")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Captioned train images of three classes (the tagger's and neighbours' source), the
    held-out images of the same classes without their captions (a user's own imagery), and a
    small scene classifier trained on the train images."""
    from word2scene.evaluation.classifier import ClassifierConfig, save_classifier, train_classifier
    from word2scene.evaluation.image_sets import image_set

    root = tmp_path_factory.mktemp("captions")
    rows = [json.loads(line) for line in (SCENES / "captions.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["class"] in CLASSES and r["split"] == "train"]
    for r in train:
        (root / "captioned" / r["class"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(SCENES / r["file"], root / "captioned" / r["file"])
    (root / "captioned" / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    for r in rows:
        if r["class"] in CLASSES and r["split"] == "heldout":
            (root / "mine" / r["class"]).mkdir(parents=True, exist_ok=True)
            shutil.copy(SCENES / r["file"], root / "mine" / r["file"])  # class folders, no captions
    clf = save_classifier(train_classifier(image_set(root / "captioned", "data"),
                                           ClassifierConfig(width=8, input_size=48, epochs=20, seed=0)),
                          root / "scenes.safetensors")
    out = root / "review.yaml"
    assert main(["captions", "propose", str(root / "mine"), "--classifier", str(clf), "--from", str(root / "captioned"),
                 "--out", str(out), "--tag-threshold", "0.3"]) == 0
    return root, yaml.safe_load(out.read_text())


def test_proposals_at_three_levels_with_sources_and_confidences(world):
    root, review = world
    kb = load_knowledge(extra_dirs=[])
    assert review["dataset"] == str((root / "mine").resolve())
    assert review["proposed_by"]["captioned_images"] == 60 and review["proposed_by"]["vocabulary"]
    images = review["images"]
    assert len(images) == 15 and {i["label"] for i in images} == {"airport", "beach", "desert"}
    vocabulary = set(review["proposed_by"]["vocabulary"])
    captioned = {json.loads(line)["file"]: json.loads(line) for line in
                 (root / "captioned" / "captions.jsonl").read_text().splitlines()}
    right = 0
    for image in images:
        scene = image["scene"]
        assert scene["text"] in CLASSES and 0 < scene["confidence"] <= 1 and scene["decision"] == "pending"
        assert scene["source"].startswith("classifier scene-cnn 48 px (scenes.safetensors, sha256 ")
        right += scene["text"] == image["label"]
        negatives = kb[kb.find(scene["text"])].negatives
        for tag in image["tags"]:
            assert tag["text"] in vocabulary and tag["source"] == "tagger" and 0.3 <= tag["confidence"] <= 1
            assert not any(set(tag["text"].split()) & set(n.split()) for n in negatives)  # cleaned against the KB
        assert len(image["sentences"]) == 2
        for sentence in image["sentences"]:
            neighbour = sentence["source"].removeprefix("neighbour ")
            assert sentence["text"] == captioned[neighbour]["caption"]  # a real caption of a captioned image
            assert -1 <= sentence["confidence"] <= 1 and sentence["decision"] == "pending"
        assert len(image["sha256"]) == 64 and image["add"] == []
    assert right >= 12  # the scene level is the classifier's (14 of 15 held-out images right when written; chance 5)
    assert any(image["tags"] for image in images)


def _decide(review, path):
    """An expert's partial review: image 0 fully decided, image 1 untouched (pending)."""
    first = review["images"][0]
    first["scene"]["decision"] = "amend"
    first["scene"]["amended"] = "dense residential"
    first["sentences"][0]["decision"] = "adopt"
    first["sentences"][1]["decision"] = "annihilate"
    first["tags"] = [{"text": "runways", "source": "tagger", "confidence": 0.9, "decision": "amend",
                      "amended": "long runways"},
                     {"text": "sea", "source": "tagger", "confidence": 0.8, "decision": "annihilate"},
                     {"text": "apron", "source": "tagger", "confidence": 0.7, "decision": "adopt"}]
    first["add"] = [{"kind": "sentence", "text": "two  parallel runways beside a terminal"},
                    {"kind": "tag", "text": "planes"}]
    path.write_text(yaml.safe_dump(review, sort_keys=False))
    return first


def test_review_round_trip_writes_training_captions_and_is_idempotent(world, tmp_path, capsys):
    root, proposed = world
    review = json.loads(json.dumps(proposed))
    first = _decide(review, tmp_path / "review.yaml")
    out = tmp_path / "train"
    assert main(["captions", "apply", str(tmp_path / "review.yaml"), "--out", str(out)]) == 0
    report = capsys.readouterr().out
    assert "15 images written, 1 with captions" in report
    assert "scene: pending 14, adopt 0, amend 1, annihilate 0, added 0" in report
    pending_tags = sum(len(i["tags"]) for i in review["images"][1:])
    assert f"tags: pending {pending_tags}, adopt 1, amend 1, annihilate 1, added 1" in report
    name = first["file"].replace("/", "__")
    txt = out / "dense_residential" / name.replace(".jpg", ".txt")
    assert txt.read_text().splitlines() == [first["sentences"][0]["text"], "two parallel runways beside a terminal",
                                            "long runways, apron, planes"]
    assert (out / "dense_residential" / name).read_bytes() == (root / "mine" / first["file"]).read_bytes()
    [sample] = [s for s in scan_dataset(out) if s.image == txt.with_suffix(".jpg")]  # the trainer reads every caption
    assert sample.concept == "dense residential" and len(training_captions(["gs"], sample)) == 3
    second = review["images"][1]  # unreviewed: its class from the dataset, no caption
    assert (out / second["label"] / second["file"].replace("/", "__")).is_file()
    assert not (out / second["label"] / second["file"].replace("/", "__").replace(".jpg", ".txt")).exists()

    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != MANIFEST}
    assert main(["captions", "apply", str(tmp_path / "review.yaml"), "--out", str(out)]) == 0
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != MANIFEST}
    assert after == before  # applying twice changes nothing

    first["scene"]["decision"] = "adopt"  # the expert changes their mind: the image moves back, nothing stale stays
    (tmp_path / "review.yaml").write_text(yaml.safe_dump(review, sort_keys=False))
    assert main(["captions", "apply", str(tmp_path / "review.yaml"), "--out", str(out)]) == 0
    assert not (out / "dense_residential").exists()
    assert (out / first["scene"]["text"] / name.replace(".jpg", ".txt")).is_file()

    assert main(["captions", "apply", str(tmp_path / "review.yaml"), "--out", str(tmp_path / "all"),
                 "--include-pending"]) == 0  # unreviewed proposals too, when asked
    assert "15 images written, 15 with captions" in capsys.readouterr().out


def test_jsonl_form_and_refusals(world, tmp_path, capsys):
    root, proposed = world
    review = json.loads(json.dumps(proposed))
    first = _decide(review, tmp_path / "review.yaml")
    out = tmp_path / "jsonl"
    assert main(["captions", "apply", str(tmp_path / "review.yaml"), "--out", str(out), "--format", "jsonl"]) == 0
    rows = [json.loads(line) for line in (out / "captions.jsonl").read_text().splitlines()]
    [row] = [r for r in rows if r["source"] == first["file"]]
    assert row["class"] == "dense_residential" and len(row["captions"]) == 3 and row["split"] == "train"
    assert len(scan_dataset(out)) == 15 and not list(out.rglob("*.txt"))

    bad = json.loads(json.dumps(review))
    bad["images"][2]["tags"] = ["runway"]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    assert main(["captions", "apply", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "x")]) == 2
    assert "images[2]" in (err := capsys.readouterr().err) and "tags[0]: expected a mapping" in err

    changed = tmp_path / "changed"  # a review of images that changed since the proposal is refused
    shutil.copytree(root / "mine", changed)
    review["dataset"] = str(changed)
    target = changed / review["images"][4]["file"]
    target.write_bytes(target.read_bytes() + b"\0")
    (tmp_path / "changed.yaml").write_text(yaml.safe_dump(review))
    assert main(["captions", "apply", str(tmp_path / "changed.yaml"), "--out", str(tmp_path / "y")]) == 2
    assert "was not written by your own `captions propose`" in capsys.readouterr().err  # an edited dataset
    assert main(["captions", "apply", str(tmp_path / "changed.yaml"), "--out", str(tmp_path / "y"),
                 "--dataset", str(changed)]) == 2
    assert f"1 images changed since they were proposed (first: {review['images'][4]['file']})" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()


def test_caption_metrics_against_hand_computations():
    refs = [["a large airport with two runways", "an airport with runways"]]
    assert bleu4(["a large airport with two runways"], refs) == pytest.approx(1.0)
    # "an airport with runways" against the first reference: 1-gram 4/4 ... BLEU-4 of a shorter candidate
    cand = ["the airport with two runways"]
    # clipped n-gram matches: 1-grams 4/5, 2-grams 3/4, 3-grams 2/3, 4-grams 1/2; closest reference length 5
    expected = math.exp((math.log(4 / 5) + math.log(3 / 4) + math.log(2 / 3) + math.log(1 / 2)) / 4)
    assert bleu4(cand, refs) == pytest.approx(expected)
    assert bleu4(["forest"], refs) == 0.0
    two = refs + [["sand dunes in the desert", "yellow dunes"]]  # CIDEr's idf needs more than one image
    assert cider_d(["a large airport with two runways", "yellow sand dunes"], two) > \
        cider_d(["forest", "forest"], two) == 0.0
    assert tag_scores([["runway", "apron"], ["sand"]], [{"runway"}, {"sand", "waves"}]) == \
        pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3})


def test_bleu4_equals_nltk_corpus_bleu():
    nltk = pytest.importorskip("nltk.translate.bleu_score", reason="needs nltk (the reference BLEU)")
    rows = [json.loads(line) for line in (SCENES / "captions.jsonl").read_text().splitlines()][:40]
    candidates = [rows[(i + 1) % 40]["captions"][0] for i in range(40)]  # another image's caption
    references = [r["captions"] for r in rows]
    from word2scene.captions.quality import tokens

    expected = nltk.corpus_bleu([[tokens(x) for x in r] for r in references], [tokens(c) for c in candidates])
    assert bleu4(candidates, references) == pytest.approx(expected, rel=1e-12)


def test_cider_d_equals_pycocoevalcap():
    cider = pytest.importorskip("pycocoevalcap.cider.cider", reason="needs pycocoevalcap (pip install "
                                "pycocoevalcap), the coco-caption reference CIDEr-D; not a requirement of the pack")
    rows = [json.loads(line) for line in (SCENES / "captions.jsonl").read_text().splitlines()][:40]
    candidates = [rows[(i + 1) % 40]["captions"][0] for i in range(40)]  # another image's caption
    candidates[:5] = [r["captions"][0] for r in rows[:5]]  # and a few right ones
    references = [r["captions"] for r in rows]
    from word2scene.captions.quality import tokens

    as_text = " ".join  # coco-caption reads captions already tokenized, words apart
    expected, _ = cider.Cider().compute_score({i: [as_text(tokens(x)) for x in r] for i, r in enumerate(references)},
                                             {i: [as_text(tokens(c))] for i, c in enumerate(candidates)})
    assert cider_d(candidates, references) == pytest.approx(expected, rel=1e-9)


def _tiny_captioner(folder):
    """A random-weight BLIP saved as a local model folder (with its processor), its word
    scores biased so it says words: the --captioner path, offline."""
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipProcessor

    folder.mkdir()
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "a", "airport", "with", "runways", "."]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    processor = BlipProcessor(image_processor=__import__("transformers").BlipImageProcessor(size={"height": 32, "width": 32}),
                              tokenizer=BertTokenizer(str(folder / "vocab.txt"), bos_token="[DEC]"))
    small = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
    config = BlipConfig(vision_config=dict(small, image_size=32, patch_size=16), projection_dim=32,
                        text_config=dict(small, vocab_size=len(words), bos_token_id=5, pad_token_id=0, sep_token_id=3))
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(config)
    with torch.no_grad():
        model.text_decoder.cls.predictions.bias[words.index("airport")] = 8.0
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_a_local_captioning_model_adds_its_sentence(world, tmp_path):
    root, _ = world
    folder = _tiny_captioner(tmp_path / "tiny_blip")
    out = tmp_path / "review.yaml"
    assert main(["captions", "propose", str(root / "mine" / "airport"), "--classifier", str(root / "scenes.safetensors"),
                 "--from", str(root / "captioned"), "--captioner", str(folder), "--out", str(out)]) == 0
    review = yaml.safe_load(out.read_text())
    assert review["proposed_by"]["captioner"] == str(folder)
    for image in review["images"]:
        first = image["sentences"][0]
        assert first["source"] == "captioner tiny_blip" and "airport" in first["text"].split()
        assert 0 < first["confidence"] <= 1 and image["sentences"][1]["source"].startswith("neighbour ")
