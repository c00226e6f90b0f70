"""Figures not to trust are said so in the report: FID/KID from fewer images than feature
dimensions, and a feature network that does not recognise the real images."""
import pytest
from PIL import Image

from conftest import SHARED
from word2scene.evaluation.classifier import ClassifierConfig, save_classifier, train_classifier
from word2scene.evaluation.image_sets import image_set
from word2scene.evaluation.scoring import EvaluationSettings, WEAK_CLASSIFIER, evaluate_batch

SCENES = SHARED / "data" / "rs_scenes"
pytestmark = pytest.mark.skipif(not SCENES.is_dir(), reason=f"shared data not found at {SCENES}")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    items = [i for i in image_set(SCENES, "data") if i.label in ("beach", "forest")]
    path = tmp_path_factory.mktemp("nets") / "scenes.safetensors"
    save_classifier(train_classifier(items, ClassifierConfig(width=4, input_size=32, epochs=2)), path)
    return items, EvaluationSettings(features=str(path))


def test_fid_from_too_few_images_is_flagged_not_reported_as_a_measurement(setup):
    reference, settings = setup
    noise = [Image.effect_noise((64, 64), 60).convert("RGB") for _ in range(2)]
    report = evaluate_batch(noise, reference, "beach", settings)
    fid = next(r for r in report.results if r.metric == "FID" and r.scope == "overall")
    dims = int(fid.note.split("images for ")[1].split("-d")[0])
    assert fid.note == f"unreliable: 2 images for {dims}-d features" and dims >= 2
    assert any(w.startswith("FID from 2 images is not a measurement") for w in report.warnings)
    text = report.to_markdown()
    assert text.startswith("**Warning:** ") and "**Warning:** FID from 2 images is not a measurement" in text
    assert "Feature network check: scene-cnn 32 px (scenes.safetensors" in text and report.as_dict()["warnings"]


def test_a_classifier_that_misses_the_real_images_is_a_warning(setup):
    reference, settings = setup
    images = [Image.new("RGB", (64, 64), (20, 120, 200))] * 3
    report = evaluate_batch(images, reference, "", settings)
    [check] = report.checks.values()
    assert check.images == len(reference) and set(check.per_class) == {"beach", "forest"}
    weak = [w for w in report.warnings if "reference images correctly" in w]
    assert bool(weak) == (check.overall < WEAK_CLASSIFIER)
