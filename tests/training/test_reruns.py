"""Running a training again under the same name: the finished run is found, anything else
goes under the next free name."""
import json
import shutil

import pytest

from conftest import SHARED
from word2scene.models.sd15 import build_tiny
from word2scene.prompts.knowledge import load_knowledge
from word2scene.training.config import TrainConfig
from word2scene.training.lora import state_path_for, train
from word2scene.training.reruns import finished_run, next_free_name

RS = SHARED / "data" / "rs_scenes"
pytestmark = pytest.mark.skipif(not RS.is_dir(), reason=f"shared data not found at {RS}")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    (root / "airport").mkdir()
    rows = [json.loads(line) for line in (RS / "captions.jsonl").read_text().splitlines()]
    keep = [r for r in rows if r["class"] == "airport"][:3]
    for r in keep:
        shutil.copy(RS / r["file"], root / r["file"])
    (root / "captions.jsonl").write_text("\n".join(json.dumps(r) for r in keep) + "\n")
    cfg = TrainConfig(steps=2, resolution=64, rank=4, alpha=4.0, learning_rate=1e-3, save_every=0)
    out = tmp_path_factory.mktemp("loras") / "airport.safetensors"
    kb = load_knowledge(extra_dirs=[])
    train(build_tiny(), root, out, cfg, kb=kb)
    return root, out, cfg, kb


def test_the_same_settings_on_the_same_data_are_the_finished_run(trained):
    root, out, cfg, kb = trained
    found = finished_run(out, cfg, root, kb)
    assert found is not None and found.info.training.steps == 2
    assert finished_run(out, TrainConfig(**{**cfg.__dict__, "preview_steps": 5}), root, kb) is not None  # shapes no weight


@pytest.mark.parametrize("change", [{"seed": 1}, {"steps": 3}, {"rank": 8}, {"learning_rate": 2e-3},
                                    {"trigger_words": ["gs"]}])
def test_other_settings_are_another_run(trained, change):
    root, out, cfg, kb = trained
    assert finished_run(out, TrainConfig(**{**cfg.__dict__, **change}), root, kb) is None


def test_changed_data_is_another_run(trained, tmp_path):
    root, out, cfg, kb = trained
    copy = tmp_path / "data"
    shutil.copytree(root, copy)
    extra = next(p for p in (copy / "airport").iterdir())
    extra.write_bytes(extra.read_bytes() + b"\0")  # one file changed in size
    assert finished_run(out, cfg, copy, kb) is None
    assert finished_run(out.with_name("missing.safetensors"), cfg, root, kb) is None


def test_next_free_name_skips_files_and_checkpoints(tmp_path):
    out = tmp_path / "c.safetensors"
    assert next_free_name(out) == out
    out.write_bytes(b"x")
    assert next_free_name(out) == tmp_path / "c-2.safetensors"
    state_path_for(tmp_path / "c-2.safetensors", 10).write_bytes(b"x")  # an interrupted run holds that name
    assert next_free_name(out) == tmp_path / "c-3.safetensors"
