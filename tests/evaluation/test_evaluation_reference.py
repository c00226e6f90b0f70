"""Our networks and FID against the reference implementations: torchvision's VGG16 and
Inception-v3, pytorch-fid's FID Inception and Fréchet distance, on the same random
weights (nothing downloaded). Needs torchvision + pytorch-fid, e.g. ComfyUI's Python:
  $COMFYUI_PYTHON -m pip install pytorch-fid && $COMFYUI_PYTHON -m pytest tests/evaluation/test_evaluation_reference.py
"""
import numpy as np
import pytest
import torch

from word2scene.evaluation.backbones import InceptionV3
from word2scene.evaluation.extractors import load_extractor
from word2scene.evaluation.metrics import fid

models = pytest.importorskip("torchvision.models", reason="needs torchvision (the reference VGG16 / Inception-v3)")
fid_inception = pytest.importorskip("pytorch_fid.inception", reason="needs pytorch-fid (pip install pytorch-fid)")


def _randomise_batch_norm(model):
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model


def test_vgg16_equals_torchvision(tmp_path):
    torch.manual_seed(0)
    reference = models.vgg16(weights=None, num_classes=30).eval()
    torch.save(reference.state_dict(), tmp_path / "vgg16.pth")
    ours = load_extractor(tmp_path / "vgg16.pth").network
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        out = ours.forward_features(x)
        assert torch.allclose(out["logits"], reference(x), atol=1e-5)
        assert torch.allclose(out["conv"], reference.avgpool(reference.features(x)), atol=1e-6)


def test_inception_v3_equals_torchvision(tmp_path):
    torch.manual_seed(0)
    reference = _randomise_batch_norm(models.inception_v3(weights=None, aux_logits=True, init_weights=True,
                                                           transform_input=False)).eval()
    torch.save(reference.state_dict(), tmp_path / "inception.pth")  # with AuxLogits.*: ignored
    ours = load_extractor(tmp_path / "inception.pth").network
    assert ours.fid is False
    x = torch.randn(2, 3, 299, 299)
    with torch.no_grad():
        assert torch.allclose(ours(x), reference(x), atol=1e-4)


def test_fid_inception_equals_pytorch_fid(monkeypatch, tmp_path):
    torch.manual_seed(0)
    state = _randomise_batch_norm(InceptionV3(num_classes=1008, fid=True)).state_dict()
    monkeypatch.setattr(fid_inception, "load_state_dict_from_url", lambda *a, **k: state)  # never download
    reference = fid_inception.InceptionV3([3], resize_input=False, normalize_input=False).eval()
    torch.save(state, tmp_path / "pt_inception.pth")
    ours = load_extractor(tmp_path / "pt_inception.pth").network
    x = torch.randn(2, 3, 299, 299)
    with torch.no_grad():
        assert torch.allclose(ours.forward_features(x)["pooled"], reference(x)[0].flatten(1), atol=1e-4)


def test_fid_equals_pytorch_fid():
    from pytorch_fid.fid_score import calculate_frechet_distance

    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 32)) @ rng.normal(size=(32, 32))
    b = rng.normal(size=(300, 32)) @ rng.normal(size=(32, 32)) + 0.5
    expected = calculate_frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert fid(a, b) == pytest.approx(expected, rel=1e-8)


def test_fid_inputs_of_any_size_are_read_as_pytorch_fid_reads_them(monkeypatch, tmp_path):
    """Image files of 128, 150 and 600 x 400 px through both full paths: pytorch-fid's
    (ImagePathDataset, resize_input, get_activations, calculate_fid_given_paths) and ours
    (image_set, evaluate). Same features, same FID."""
    from PIL import Image
    from pytorch_fid import fid_score

    from conftest import SHARED
    from word2scene.evaluation.image_sets import image_set
    from word2scene.evaluation.scoring import evaluate, EvaluationSettings

    scenes = SHARED / "data" / "rs_scenes"
    if not scenes.is_dir():
        pytest.skip(f"shared data not found at {scenes}")
    torch.manual_seed(0)
    state = _randomise_batch_norm(InceptionV3(num_classes=1008, fid=True)).state_dict()
    monkeypatch.setattr(fid_inception, "load_state_dict_from_url", lambda *a, **k: state)  # never download
    torch.save(state, tmp_path / "pt_inception.pth")
    sizes = [(128, 128), (150, 150), (600, 400), (150, 150), (128, 128), (600, 400)]
    for folder, cls in (("a", "beach"), ("b", "forest")):
        (tmp_path / folder).mkdir()
        for n, (path, size) in enumerate(zip(sorted((scenes / cls).glob("*.jpg")), sizes)):
            with Image.open(path) as im:
                im.convert("RGB").resize(size, Image.BICUBIC).save(tmp_path / folder / f"{n}.png")
    files = sorted((tmp_path / "a").glob("*.png"))
    reference = fid_inception.InceptionV3([3]).eval()  # resize_input and normalize_input on, as pytorch-fid runs it
    theirs = fid_score.get_activations([str(f) for f in files], reference, batch_size=1, dims=2048, device="cpu",
                                       num_workers=0)
    ours = load_extractor(tmp_path / "pt_inception.pth").features([Image.open(f) for f in files], resize="stretch")
    assert np.allclose(ours["pooled"], theirs, atol=1e-4)
    expected = fid_score.calculate_fid_given_paths([str(tmp_path / "a"), str(tmp_path / "b")], batch_size=1,
                                                   device="cpu", dims=2048, num_workers=0)
    report = evaluate(image_set(tmp_path / "a", "generated"), image_set(tmp_path / "b", "reference"),
                      EvaluationSettings(fid_features=str(tmp_path / "pt_inception.pth"), kid_subsets=2))
    assert report.value("FID") == pytest.approx(expected, rel=1e-3)
