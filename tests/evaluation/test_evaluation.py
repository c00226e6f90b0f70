"""Evaluation: GSHPS, FID, KID against hand computations; weight files and extractors;
a scene classifier trained on the shared data; evaluate() and its CLI; bad input."""
import re
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from conftest import SHARED
from word2scene.evaluation.backbones import InceptionV3, SceneCNN, VGG16
from word2scene.evaluation.classifier import ClassifierConfig, accuracy, save_classifier, train_classifier
from word2scene.cli import main
from word2scene.errors import InputError
from word2scene.evaluation.scoring import EvaluationSettings, evaluate, prompt_of
from word2scene.evaluation.extractors import load_extractor
from word2scene.evaluation.image_sets import LabelledImage, class_key, image_set, read_images
from word2scene.imagery import save_png
from word2scene.evaluation.metrics import ClipScorer, fid, gshps, kid

SCENES = SHARED / "data" / "rs_scenes"
needs_data = pytest.mark.skipif(not (SCENES / "captions.jsonl").is_file(), reason=f"shared data not found at {SCENES}")
CLASSES = ["airport", "beach", "dense_residential", "desert", "farmland", "forest"]


def subset(split, classes=CLASSES):
    return [i for i in image_set(SCENES, "reference", split) if i.label in classes]


@pytest.fixture(scope="module")
def classifier_file(tmp_path_factory):
    if not (SCENES / "captions.jsonl").is_file():
        pytest.skip(f"shared data not found at {SCENES}")
    clf = train_classifier(subset("train"), ClassifierConfig(width=8, input_size=64, epochs=10, seed=0))
    return save_classifier(clf, tmp_path_factory.mktemp("clf") / "scenes.safetensors")


# --- metrics against hand computations ----------------------------------------------------

def test_gshps_is_the_cosine_of_the_two_mean_features():
    gen = np.array([[1.0, 0.0, 2.0], [3.0, 2.0, 0.0]])  # mean (2, 1, 1)
    ref = np.array([[0.0, 1.0, 1.0], [2.0, 1.0, 1.0], [1.0, 1.0, 1.0]])  # mean (1, 1, 1)
    assert gshps(gen, ref) == pytest.approx(4 / (np.sqrt(6) * np.sqrt(3)), abs=1e-12)
    assert gshps(ref, ref) == pytest.approx(1.0)


def test_fid_of_a_set_with_itself_is_zero_and_a_shift_adds_its_squared_length():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 64)) @ rng.normal(size=(64, 64))
    assert fid(a, a) == pytest.approx(0.0, abs=1e-6 * np.trace(np.cov(a.T)))
    shift = np.zeros(64)
    shift[3] = 2.0
    assert fid(a + shift, a) == pytest.approx(4.0, rel=1e-6)  # same covariance: only |mu_a - mu_b|^2 remains
    assert fid(a + 2 * shift, a) > fid(a + shift, a)


def test_fid_matches_the_matrix_square_root_formula():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(80, 6)), 1.5 * rng.normal(size=(50, 6)) + 0.3
    sa, sb = np.cov(a.T), np.cov(b.T)
    w, v = np.linalg.eigh(sa)
    root_a = v @ np.diag(np.sqrt(w)) @ v.T
    cross = np.sqrt(np.linalg.eigvalsh(root_a @ sb @ root_a).clip(0)).sum()
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(sa) + np.trace(sb) - 2 * cross
    assert fid(a, b) == pytest.approx(expected, rel=1e-9)


def test_kid_is_the_unbiased_polynomial_mmd():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(20, 5)), rng.normal(size=(20, 5)) + 1.0
    k = lambda x, y: (x @ y.T / 5 + 1) ** 3  # noqa: E731
    m = 20
    expected = ((k(a, a).sum() - np.trace(k(a, a))) / (m * (m - 1)) + (k(b, b).sum() - np.trace(k(b, b))) / (m * (m - 1))
                - 2 * k(a, b).mean())
    mean, std = kid(a, b, subsets=3, subset_size=20)  # subsets of all 20: every subset is the whole set
    assert mean == pytest.approx(expected, rel=1e-12) and std == pytest.approx(0.0, abs=1e-12)
    assert kid(a, a, subsets=5, subset_size=10)[0] < mean
    with pytest.raises(InputError, match=r"^kid_subset_size: 21 is not accepted for sets of 20 generated and 20 "
                                         r"reference images; use 2 to 20"):
        kid(a, b, subsets=3, subset_size=21)  # as torch-fidelity: no silent cap


def _kid_sets():
    rng = np.random.default_rng(0)
    return rng.normal(size=(40, 16)), rng.normal(0.3, 1.2, size=(40, 16))


# Subsets as large as the sets: every draw takes every image, so the value does not depend on how
# either side draws its subsets, and the estimator (kernel, unbiased MMD^2) is what is compared.
def test_kid_equals_torch_fidelity():
    metric_kid = pytest.importorskip("torch_fidelity.metric_kid", reason="needs torch-fidelity and the torchvision "
                                     "it imports (pip install torch-fidelity), the reference KID; not a requirement "
                                     "of the pack")
    a, b = _kid_sets()
    expected = metric_kid.kid_features_to_metric(torch.from_numpy(a), torch.from_numpy(b), kid_subsets=3,
                                                 kid_subset_size=40, kid_degree=3, kid_gamma=None, kid_coef0=1,
                                                 verbose=False)
    mean, _ = kid(a, b, subsets=3, subset_size=40)
    assert mean == pytest.approx(expected[metric_kid.KEY_METRIC_KID_MEAN], rel=1e-9)


def test_kid_equals_torchmetrics():
    kid_module = pytest.importorskip("torchmetrics.image.kid", reason="needs torchmetrics (pip install "
                                     "torchmetrics), a reference KID; not a requirement of the pack")
    a, b = _kid_sets()

    class Features(torch.nn.Module):  # the features are given: the metric's network passes them on
        num_features = 16

        def forward(self, x):
            return x
    reference = kid_module.KernelInceptionDistance(feature=Features(), subsets=3, subset_size=40)
    reference.update(torch.from_numpy(b), real=True)
    reference.update(torch.from_numpy(a), real=False)
    expected, _ = reference.compute()
    mean, _ = kid(a, b, subsets=3, subset_size=40)
    assert mean == pytest.approx(float(expected), rel=1e-9)


def test_metrics_refuse_too_few_or_mismatched_features():
    with pytest.raises(InputError, match="at least 2 images"):
        fid(np.ones((1, 3)), np.ones((5, 3)))
    with pytest.raises(InputError, match="same D"):
        gshps(np.ones((2, 3)), np.ones((2, 4)))


# --- networks and weight files ----------------------------------------------------------------

def test_backbones_give_the_documented_shapes():
    torch.manual_seed(0)
    vgg = VGG16(num_classes=30).eval()
    out = vgg.forward_features(torch.randn(2, 3, 224, 224))
    assert out["conv"].shape == (2, 512, 7, 7) and out["pooled"].shape == (2, 4096) and out["logits"].shape == (2, 30)
    inception = InceptionV3(fid=True, num_classes=1008).eval()
    out = inception.forward_features(torch.randn(1, 3, 299, 299))
    assert out["pooled"].shape == (1, 2048) and out["logits"].shape == (1, 1008)
    assert sum(p.numel() for p in inception.parameters()) == 23_850_960  # torchvision inception_v3(num_classes=1008, aux_logits=False)
    cnn = SceneCNN(5, width=8, input_size=64).eval()
    assert cnn.forward_features(torch.randn(3, 3, 64, 64))["conv"].shape == (3, 64, 7, 7)


def test_torchvision_layout_files_load_and_are_named(tmp_path):
    torch.manual_seed(0)
    vgg = VGG16(num_classes=30)
    save_file({k: v.contiguous() for k, v in vgg.state_dict().items()}, str(tmp_path / "vgg16_aid.safetensors"))
    torch.save({"module." + k: v for k, v in vgg.state_dict().items()}, tmp_path / "vgg16_dp.pth")
    a = load_extractor(tmp_path / "vgg16_aid.safetensors")
    b = load_extractor(tmp_path / "vgg16_dp.pth")
    assert re.fullmatch(r"vgg16 224 px \(vgg16_aid.safetensors, sha256 [0-9a-f]{12}\)", a.name)
    assert b.arch == "vgg16" and a.input_size == 224
    x = torch.randn(1, 3, 224, 224)
    assert torch.equal(a.network(x), vgg.eval()(x)) and torch.equal(b.network(x), a.network(x))
    inception = InceptionV3(num_classes=1008, fid=True)
    state = {**inception.state_dict(), "AuxLogits.fc.weight": torch.zeros(1)}
    torch.save(state, tmp_path / "pt_inception.pth")
    loaded = load_extractor(tmp_path / "pt_inception.pth", "fid_features")
    assert loaded.arch == "inception-v3-fid" and loaded.network.Mixed_7c.pool == "max" and loaded.input_size == 299


def test_weight_files_never_unpickle_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(InputError, match="cannot be read as weights"):
        load_extractor(tmp_path / "evil.pth", "features")


def test_missing_or_unknown_weights_say_what_to_pass(tmp_path):
    with pytest.raises(InputError, match=r"^features: no weights file given.*classifier train"):
        load_extractor(None, "features")
    with pytest.raises(InputError, match=r"fid_features: .*nope.pth does not exist"):
        load_extractor(tmp_path / "nope.pth", "fid_features")
    save_file({"foo.weight": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(InputError, match="not a network this project knows"):
        load_extractor(tmp_path / "other.safetensors", "features")
    vgg = VGG16(num_classes=3).state_dict()
    del vgg["features.0.bias"]
    save_file({k: v.contiguous() for k, v in vgg.items()}, str(tmp_path / "broken.safetensors"))
    with pytest.raises(InputError, match="does not fit vgg16: missing"):
        load_extractor(tmp_path / "broken.safetensors", "features")


NET = re.compile(r"scene-cnn 64 px \(scenes.safetensors, sha256 [0-9a-f]{12}\)")  # names size, file and hash


# --- the scene classifier on real data --------------------------------------------------------

@needs_data
def test_classifier_trained_on_shared_data_classifies_heldout_images(classifier_file):
    clf = load_extractor(classifier_file)
    assert clf.classes == CLASSES and NET.fullmatch(clf.name)
    assert clf.facts["images"] == 120 and clf.facts["input_size"] == 64
    result = accuracy(clf, subset("heldout"))
    assert result.images == 30 and set(result.per_class) == set(CLASSES)
    assert result.overall >= 0.6  # chance is 1/6
    assert result.overall == pytest.approx(np.mean(list(result.per_class.values())))  # 5 images per class


@needs_data
def test_classifier_training_is_reproducible(tmp_path):
    items = subset("train", ["beach", "forest"])
    cfg = ClassifierConfig(width=4, input_size=32, epochs=2, seed=3)
    a, b = train_classifier(items, cfg), train_classifier(items, cfg)
    for (k, va), vb in zip(a.network.state_dict().items(), b.network.state_dict().values()):
        assert torch.equal(va, vb), k


def test_classifier_needs_two_classes(tmp_path):
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    with pytest.raises(InputError, match="at least two class folders"):
        train_classifier(image_set(tmp_path, "data"), ClassifierConfig(epochs=1))


# --- image sets -------------------------------------------------------------------------------

@needs_data
def test_image_sets_read_captions_jsonl_splits_and_class_folders(tmp_path):
    assert len(image_set(SCENES, "reference", "heldout")) == 150 and len(image_set(SCENES, "reference")) == 750
    assert {i.label for i in image_set(SCENES, "reference")} >= {"dense_residential", "storage_tanks"}
    (tmp_path / "Dense Residential").mkdir()
    Image.new("RGB", (16, 16)).save(tmp_path / "Dense Residential" / "0.png")
    assert image_set(tmp_path, "generated") == [LabelledImage(tmp_path / "Dense Residential" / "0.png", "dense_residential")]
    assert class_key("storage-tanks") == "storage_tanks"


def test_empty_folders_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match=r"^generated: .* has no images"):
        image_set(tmp_path, "generated")
    with pytest.raises(InputError, match=r"^reference: .* is not a folder"):
        image_set(tmp_path / "missing", "reference")
    (tmp_path / "airport").mkdir()
    with pytest.raises(InputError, match=r"^generated: .* has no images"):
        image_set(tmp_path, "generated")


# --- evaluate ---------------------------------------------------------------------------------

def _copy_heldout(tmp_path, classes):
    for cls in classes:
        (tmp_path / "gen" / cls).mkdir(parents=True)
        for item in subset("heldout", [cls]):
            shutil.copy(item.path, tmp_path / "gen" / cls / item.path.name)
    return tmp_path / "gen"


@needs_data
def test_evaluate_per_class_and_overall_with_named_extractors(classifier_file, tmp_path):
    gen_dir = _copy_heldout(tmp_path, ["beach", "forest"])
    generated, reference = image_set(gen_dir, "generated"), subset("train")
    report = evaluate(generated, reference, EvaluationSettings(features=str(classifier_file), kid_subsets=10))
    scopes = {(r.scope, r.metric) for r in report.results}
    assert scopes == {(s, m) for s in ("overall", "beach", "forest") for m in ("GSHPS", "FID", "KID")}
    assert all(NET.fullmatch(r.extractor) for r in report.results)
    row = next(r for r in report.results if r.scope == "beach" and r.metric == "FID")
    assert (row.generated, row.reference) == (5, 20)
    # real beach images are closer to real beaches than to real forests
    beaches = [LabelledImage(g.path, "") for g in generated if g.label == "beach"]
    beach_vs_forest = evaluate(beaches, [r for r in reference if r.label == "forest"],
                               EvaluationSettings(features=str(classifier_file), kid_subsets=10))
    assert report.value("GSHPS", "beach") > 0.9
    assert report.value("FID", "beach") < 0.5 * beach_vs_forest.value("FID")
    md = report.to_markdown()
    assert "| beach | 5 | 20 |" in md and re.search(r"GSHPS \[scene-cnn 64 px \(scenes.safetensors, sha256 [0-9a-f]{12}\)\]", md)
    assert NET.fullmatch(json.loads(report.to_json())["results"][0]["extractor"])


@needs_data
def test_classifier_accuracy_both_ways(tmp_path):
    gen_dir = _copy_heldout(tmp_path, ["beach", "forest", "desert"])
    settings = EvaluationSettings(classifier_oa=True, classifier=ClassifierConfig(width=8, input_size=64, epochs=20, batch_size=8))
    report = evaluate(image_set(gen_dir, "generated"), subset("train"), settings)
    forward, backward = report.accuracy["generated->real"], report.accuracy["real->generated"]
    assert (forward.images, backward.images) == (60, 15) and set(forward.per_class) == {"beach", "forest", "desert"}
    assert forward.overall > 0.5 and backward.overall > 0.5  # chance is 1/3
    assert "| generated->real |" in report.to_markdown()


@needs_data
def test_mismatched_classes_and_unreadable_images_are_clear_errors(classifier_file, tmp_path):
    (tmp_path / "gen" / "volcano").mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(tmp_path / "gen" / "volcano" / "0.png")
    settings = EvaluationSettings(features=str(classifier_file))
    with pytest.raises(InputError, match=r"^generated: classes \['volcano'\] have no reference images"):
        evaluate(image_set(tmp_path / "gen", "generated"), subset("train"), settings)
    (tmp_path / "gen2" / "beach").mkdir(parents=True)
    (tmp_path / "gen2" / "beach" / "0.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match=r"^generated: .*0.png cannot be read as an image"):
        evaluate(image_set(tmp_path / "gen2", "generated"), subset("train"), settings)
    with pytest.raises(InputError, match=r"^features: no weights file given"):
        evaluate(image_set(tmp_path / "gen2", "generated"), subset("train"), EvaluationSettings())
    with pytest.raises(InputError, match=r"^fid_features: .*missing.pth does not exist"):
        evaluate(image_set(tmp_path / "gen2", "generated"), subset("train"),
                 EvaluationSettings(features=str(classifier_file), fid_features=str(tmp_path / "missing.pth")))


# --- CLIP score -------------------------------------------------------------------------------

def _tiny_clip(folder):
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    config = CLIPConfig(text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                                     "num_attention_heads": 2, "vocab_size": 49408, "max_position_embeddings": 77},
                        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8}, projection_dim=16)
    CLIPModel(config).save_pretrained(folder)
    return folder


def test_clip_score_is_100_times_the_clamped_cosine(tmp_path):
    folder = _tiny_clip(tmp_path / "clip")
    scorer = ClipScorer(folder)
    images = [Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 40, 3), dtype=np.uint8)) for i in range(3)]
    texts = ["an airport", "a beach", "gs, geographic scene, forest"]
    values = scorer.scores(images, texts)
    ids = scorer.tokenizer(texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    from word2scene.imagery import fit_square

    x = torch.stack([torch.from_numpy(np.array(fit_square(im, 32))).permute(2, 0, 1) for im in images]).float() / 255
    x = (x - scorer.mean) / scorer.std
    with torch.no_grad():
        i = scorer.model.get_image_features(pixel_values=x)
        t = scorer.model.get_text_features(input_ids=ids.input_ids, attention_mask=ids.attention_mask)
    i, t = getattr(i, "pooler_output", i), getattr(t, "pooler_output", t)
    expected = 100 * torch.nn.functional.cosine_similarity(i, t).clamp(min=0)
    assert values.shape == (3,) and np.allclose(values, expected.numpy(), atol=1e-4)


def test_clip_texts_come_from_the_png_prompt(tmp_path):
    folder = _tiny_clip(tmp_path / "clip")
    (tmp_path / "gen" / "airport").mkdir(parents=True)
    image = Image.new("RGB", (32, 32), (90, 90, 90))
    save_png(image, tmp_path / "gen" / "airport" / "0.png", {"prompt": "gs, geographic scene, airport", "seed": 0})
    image.save(tmp_path / "gen" / "airport" / "1.png")
    assert prompt_of(tmp_path / "gen" / "airport" / "0.png") == "gs, geographic scene, airport"
    assert prompt_of(tmp_path / "gen" / "airport" / "1.png") == ""
    ref = [LabelledImage(tmp_path / "gen" / "airport" / "1.png", "airport")]
    report = evaluate(image_set(tmp_path / "gen", "generated"), ref, EvaluationSettings(clip=str(folder)))
    scorer = ClipScorer(folder)
    expected = scorer.scores([image, image], ["gs, geographic scene, airport", "airport"]).mean()
    assert report.value("CLIP score") == pytest.approx(expected, abs=1e-4)
    assert report.results[0].extractor == "CLIP (clip)"


def test_clip_folder_missing_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match=r"^clip: .* is not a CLIP folder"):
        ClipScorer(tmp_path)


def test_a_clip_model_is_loaded_once_while_its_files_are_unchanged(tmp_path):
    from word2scene.evaluation.metrics import clip_scorer

    folder = _tiny_clip(tmp_path / "clip")
    first = clip_scorer(folder)
    assert clip_scorer(folder) is first
    (folder / "config.json").write_text((folder / "config.json").read_text() + "\n")
    assert clip_scorer(folder) is not first


# --- CLI --------------------------------------------------------------------------------------

@needs_data
def test_classifier_and_evaluate_cli(tmp_path, capsys):
    data = tmp_path / "data"
    for cls in ("beach", "forest"):
        shutil.copytree(SCENES / cls, data / cls)
    clf = tmp_path / "clf.safetensors"
    assert main(["classifier", "train", str(data), "--out", str(clf), "--width", "4", "--size", "32", "--epochs", "2"]) == 0
    assert main(["classifier", "train", str(data), "--out", str(clf)]) == 2  # exists, no --overwrite
    assert main(["classifier", "test", str(data), "--classifier", str(clf), "--split", "all"]) == 0
    assert "overall accuracy" in capsys.readouterr().out
    out = tmp_path / "report.json"
    assert main(["evaluate", "--generated", str(data), "--reference", str(SCENES), "--reference-split", "heldout",
                 "--features", str(clf), "--kid-subsets", "5", "--out", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert {(r["scope"], r["metric"]) for r in results} >= {("beach", "GSHPS"), ("forest", "FID"), ("overall", "KID")}
    assert all(r["reference"] in (5, 10) for r in results)
    capsys.readouterr()
    # without --features: the pack's shipped scene classifier, named in the report
    assert main(["evaluate", "--generated", str(data), "--reference", str(SCENES)]) == 0
    assert "aid-scene-cnn.safetensors" in capsys.readouterr().out


def test_vgg16_fine_tuned_from_given_weights_for_gshps(tmp_path):
    """The paper's GSHPS network: a VGG16 (here random 'ImageNet' weights) fine-tuned on scene classes."""
    torch.manual_seed(0)
    save_file({k: v.contiguous() for k, v in VGG16().state_dict().items()}, str(tmp_path / "vgg16_imagenet.safetensors"))
    for cls, colour in (("beach", (220, 200, 150)), ("forest", (30, 90, 40))):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for k in range(2):
            Image.new("RGB", (48, 48), tuple(c + 5 * k for c in colour)).save(tmp_path / "data" / cls / f"{k}.png")
    items = image_set(tmp_path / "data", "data")
    clf = train_classifier(items, ClassifierConfig(arch="vgg16", init=str(tmp_path / "vgg16_imagenet.safetensors"),
                                                   epochs=1, batch_size=4, learning_rate=1e-5))
    assert re.fullmatch(r"vgg16 224 px \(fine-tuned from vgg16_imagenet.safetensors, sha256 [0-9a-f]{12}, 1 epochs\)",
                        clf.name)
    assert clf.network.classifier[6].out_features == 2
    path = save_classifier(clf, tmp_path / "vgg16_scenes.safetensors")
    loaded = load_extractor(path, "gshps_features")
    assert loaded.arch == "vgg16" and loaded.classes == ["beach", "forest"] and loaded.input_size == 224
    assert loaded.features(read_images(items[:1], "data"))["conv"].shape == (1, 512 * 49)
    with pytest.raises(InputError, match="holds vgg16 weights; arch is inception-v3"):
        train_classifier(items, ClassifierConfig(arch="inception-v3", init=str(tmp_path / "vgg16_imagenet.safetensors")))


@needs_data
def test_evaluate_batch_compares_a_batch_with_its_reference_class(classifier_file):
    reference = subset("train")
    beaches = read_images(subset("heldout", ["beach"]), "generated")
    from word2scene.evaluation.scoring import evaluate_batch

    report = evaluate_batch(beaches, reference, "Beach", EvaluationSettings(features=str(classifier_file), kid_subsets=5))
    rows = {(r.scope, r.metric): r for r in report.results}
    assert rows[("beach", "FID")].reference == 20 and rows[("overall", "GSHPS")].generated == 5
    assert report.overall("GSHPS") == report.value("GSHPS", "beach") > 0.9
    single = evaluate_batch(beaches[:1], reference, "beach", EvaluationSettings(features=str(classifier_file)))
    assert np.isnan(single.overall("FID")) and np.isfinite(single.overall("GSHPS"))  # FID needs two images
    with pytest.raises(InputError, match=r"^concept: 'volcano' is not a class of the reference folder"):
        evaluate_batch(beaches, reference, "volcano", EvaluationSettings(features=str(classifier_file)))


@needs_data
def test_networks_and_reference_features_are_reused_until_files_change(classifier_file, tmp_path, monkeypatch):
    from word2scene.evaluation import scoring as evaluation
    from word2scene.evaluation import image_sets

    assert load_extractor(classifier_file) is load_extractor(classifier_file)
    assert load_extractor(classifier_file, cached=False) is not load_extractor(classifier_file)
    reads = []
    real_read = image_sets.read_images
    monkeypatch.setattr(evaluation, "read_images", lambda items, name: reads.append(name) or real_read(items, name))
    ref_dir = tmp_path / "ref" / "beach"
    ref_dir.mkdir(parents=True)
    for item in subset("train", ["beach"])[:4]:
        shutil.copy(item.path, ref_dir / item.path.name)
    images = read_images(subset("heldout", ["beach"]), "generated")
    from word2scene.evaluation.scoring import evaluate_batch

    settings = EvaluationSettings(features=str(classifier_file), kid_subsets=2)
    first = evaluate_batch(images, image_set(tmp_path / "ref", "reference"), "beach", settings)
    second = evaluate_batch(images, image_set(tmp_path / "ref", "reference"), "beach", settings)
    assert reads == ["reference"] and first.overall("FID") == second.overall("FID")
    (ref_dir / next(ref_dir.iterdir()).name).unlink()  # the reference changed: read again
    third = evaluate_batch(images, image_set(tmp_path / "ref", "reference"), "beach", settings)
    assert reads == ["reference", "reference"] and third.results[0].reference == 3


def test_a_split_the_reference_lacks_is_blamed_on_the_split_not_the_folder(tmp_path, capsys):
    from PIL import Image

    from word2scene.cli import main
    from word2scene.errors import InputError
    from word2scene.evaluation.image_sets import image_set

    (tmp_path / "ref" / "airport").mkdir(parents=True)
    Image.new("RGB", (16, 16)).save(tmp_path / "ref" / "airport" / "a.png")
    (tmp_path / "ref" / "captions.jsonl").write_text('{"file": "airport/a.png", "class": "airport", "split": "test"}\n')
    with pytest.raises(InputError, match=r"^reference_split: 'heldout': .*captions.jsonl has no rows of that split; "
                                         r"its splits: test \(or all\)"):
        image_set(tmp_path / "ref", "reference_folder", "heldout", split_input="reference_split")
    assert main(["evaluate", "--generated", str(tmp_path / "ref"), "--reference", str(tmp_path / "ref"),
                 "--reference-split", "heldout"]) == 2
    assert "error: --reference-split: 'heldout': " in capsys.readouterr().err
