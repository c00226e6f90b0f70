"""The Word2Scene protocol on the tiny model: concepts from the knowledge base, images per
(concept, seed) independent of the worker count, resume, report and grid."""
import json
from dataclasses import replace
import re

import pytest
from PIL import Image

from conftest import SHARED
from helpers import make_concept, model_shapes
from word2scene.evaluation.classifier import ClassifierConfig, save_classifier, train_classifier
from word2scene.cli import main
from word2scene.concepts.file import save_concept
from word2scene.errors import InputError
from word2scene.scenes.sampling import SamplingSettings
from word2scene.evaluation.image_sets import image_set
from word2scene.prompts.knowledge import load_knowledge
from word2scene.evaluation.protocol import ProtocolSettings, generate_images, image_path, resolve_concepts

SCENES = SHARED / "data" / "rs_scenes"
needs_data = pytest.mark.skipif(not (SCENES / "captions.jsonl").is_file(), reason=f"shared data not found at {SCENES}")
SMALL = SamplingSettings(steps=2, width=64, height=64)


@pytest.fixture(scope="module")
def kb():
    return load_knowledge()


@pytest.fixture
def concept(tiny, tmp_path):
    path = save_concept(make_concept(model_shapes(tiny), seed=1), tmp_path / "word2scene.safetensors")
    from word2scene.concepts.file import load_concept

    return load_concept(path, "concept")


def test_the_papers_concepts_come_from_the_knowledge_base(kb):
    assert len(resolve_concepts(kb, [])) == 30
    assert resolve_concepts(kb, ["trained"]) == kb.by_paper("trained") and len(kb.by_paper("trained")) == 11
    assert len(resolve_concepts(kb, ["zero-shot"])) == 19
    assert resolve_concepts(kb, ["Dense Residential", "airport", "airport"]) == ["dense_residential", "airport"]
    with pytest.raises(InputError, match=r"^concepts: 'volcano' is not in the knowledge base"):
        resolve_concepts(kb, ["volcano"])


def test_images_do_not_depend_on_the_number_of_workers(tiny, kb, concept, tmp_path):
    settings = ProtocolSettings(concepts=["airport", "church"], images_per_concept=2, seed=5, sampling=SMALL)
    assert generate_images(tiny, kb, concept, settings, tmp_path / "one") == (4, 0)
    shares = [generate_images(tiny, kb, concept, settings, tmp_path / "two", (w, 2)) for w in (0, 1)]
    assert shares == [(2, 0), (2, 0)]
    for cid in ("airport", "church"):
        for seed in (5, 6):
            a, b = image_path(tmp_path / "one", cid, seed), image_path(tmp_path / "two", cid, seed)
            assert a.read_bytes() == b.read_bytes()
    meta = json.loads(Image.open(image_path(tmp_path / "one", "church", 6)).text["word2scene"])
    assert meta["seed"] == 6 and meta["prompt"].startswith("gs, geographic scene, church") and meta["strength"] == 1.0


def test_an_interrupted_protocol_resumes_without_redoing_images(tiny, kb, concept, tmp_path):
    settings = ProtocolSettings(concepts=["airport", "church"], images_per_concept=2, sampling=SMALL)
    seen = []

    def stop_after_two(path, written):
        seen.append(path)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_images(tiny, kb, concept, settings, tmp_path, on_image=stop_after_two)
    first = {p: p.stat().st_mtime_ns for p in seen}
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes: nothing half-written
    written = []
    assert generate_images(tiny, kb, concept, settings, tmp_path, on_image=lambda p, w: written.append((p, w))) == (2, 2)
    assert [w for _, w in written] == [False, False, True, True]
    assert {p: p.stat().st_mtime_ns for p in seen} == first
    assert len(list((tmp_path / "images").rglob("*.png"))) == 4


def test_a_resume_with_other_sampling_settings_is_refused_and_names_the_image(tiny, kb, concept, tmp_path):
    settings = ProtocolSettings(concepts=["airport"], images_per_concept=2, sampling=SMALL)
    assert generate_images(tiny, kb, concept, settings, tmp_path) == (2, 0)
    other = replace(settings, sampling=replace(SMALL, steps=SMALL.steps + 1))
    with pytest.raises(InputError, match=rf"airport.000000\.png was drawn with steps {SMALL.steps}; this run "
                                          rf"draws steps {SMALL.steps + 1}"):
        generate_images(tiny, kb, concept, other, tmp_path)
    with pytest.raises(InputError, match="strength 1.0; this run draws strength 0.5"):
        generate_images(tiny, kb, concept, replace(settings, strength=0.5), tmp_path)
    assert generate_images(tiny, kb, concept, settings, tmp_path) == (0, 2)  # the same settings resume


@needs_data
def test_protocol_end_to_end_on_the_tiny_model(tiny, tmp_path, capsys):
    data = [i for i in image_set(SCENES, "reference", "train") if i.label in ("airport", "church")]
    clf = save_classifier(train_classifier(data, ClassifierConfig(width=4, input_size=32, epochs=2)), tmp_path / "clf.safetensors")
    concept = save_concept(make_concept(model_shapes(tiny), seed=1), tmp_path / "word2scene.safetensors")
    out = tmp_path / "run"
    args = ["protocol", "--model", "tiny", "--concept", str(concept), "--out", str(out), "--reference", str(SCENES),
            "--reference-split", "heldout", "--concepts", "airport,church", "--images", "3", "--steps", "2",
            "--size", "64", "--features", str(clf), "--kid-subsets", "5", "--grid-strengths", "0,1"]
    assert main(args) == 0
    report = (out / "report.md").read_text()
    assert "| airport | zero-shot | 3 | 5 |" in report and "| church | trained | 3 | 5 |" in report
    assert "| **trained** |" in report and "| **zero-shot** |" in report and "| **overall** |  | 6 | 10 |" in report
    results = json.loads((out / "results.json").read_text())
    assert {(r["scope"], r["metric"]) for r in results["results"]} >= {("church", "GSHPS"), ("airport", "FID"),
                                                                         ("trained", "KID"), ("overall", "GSHPS")}
    assert results["groups"] == {"trained": ["church"], "zero-shot": ["airport"]}
    assert all(re.fullmatch(r"scene-cnn \d+ px \(clf.safetensors, sha256 [0-9a-f]{12}\)", r["extractor"])
               for r in results["results"])
    assert sorted(p.relative_to(out).as_posix() for p in (out / "images").rglob("*.png")) == [
        f"images/{c}/{s:06d}.png" for c in ("airport", "church") for s in range(3)]
    grid = Image.open(out / "grid.png")
    assert grid.width > 2 * 64 and grid.height > 64
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    assert main(args) == 0  # a rerun finds everything written and only re-evaluates
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == mtimes
    assert "skipped 6 already present" in capsys.readouterr().err


def test_protocol_checks_reference_and_weights_before_generating(tmp_path, capsys):
    (tmp_path / "ref" / "beach").mkdir(parents=True)
    Image.new("RGB", (64, 64)).save(tmp_path / "ref" / "beach" / "0.png")
    args = ["protocol", "--model", "tiny", "--out", str(tmp_path / "run"), "--reference", str(tmp_path / "ref"),
            "--images", "1", "--steps", "1", "--size", "64", "--no-grid", "--features", str(tmp_path / "missing.safetensors")]
    assert main(args + ["--concepts", "airport,beach"]) == 2
    assert "--reference: no images of ['airport']" in capsys.readouterr().err
    assert main(args + ["--concepts", "beach"]) == 2
    assert "--features: " in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_two_torchrun_workers_share_the_work_and_write_what_one_process_writes(tiny, tmp_path):
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])

    concept = save_concept(make_concept(model_shapes(tiny), seed=1), tmp_path / "word2scene.safetensors")
    args = ["-m", "word2scene", "protocol", "--model", "tiny", "--concept", str(concept), "--concepts", "airport,church",
            "--images", "2", "--steps", "2", "--size", "64", "--no-grid"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # torchrun's per-worker default: same float rounding in both runs
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                          "--master_port", port,
                          *args, "--out", str(tmp_path / "two")], env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    assert "[worker 0] wrote 2 images" in two.stderr and "[worker 1] wrote 2 images" in two.stderr
    one = subprocess.run([sys.executable, *args, "--out", str(tmp_path / "one")], env=env, capture_output=True, text=True,
                         timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.png"))
    assert len(files) == 4
    for f in files:
        assert (tmp_path / "one" / f).read_bytes() == (tmp_path / "two" / f).read_bytes(), f
