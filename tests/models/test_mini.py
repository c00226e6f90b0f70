"""The shipped Word2Scene-mini base model and its concept: they load, fit, say what they are,
and the CLI's defaults pick them."""
import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from conftest import SHARED
from word2scene.cli import build_parser, main
from word2scene.cli.common import image_size, load_concepts
from word2scene.concepts.file import read_concept
from word2scene.concepts.keys import kohya_name
from word2scene.concepts.patching import apply_concepts
from word2scene.errors import InputError
from word2scene.models import sd15, weight_files
from word2scene.models.sd15 import MINI_CHECKPOINT, MINI_CONCEPT, MINI_CONCEPT_11, load_sd15
from word2scene.prompts.knowledge import load_knowledge
from word2scene.training.config import UNET_TARGETS
from word2scene.training.base_model import PRETRAIN_METADATA_KEY

LIMIT = 48 * 2**20


@pytest.fixture(scope="module")
def mini():
    return load_sd15(model="mini")


def test_shipped_files_are_small_fp16_and_say_how_they_were_made():
    for path in (MINI_CHECKPOINT, MINI_CONCEPT, MINI_CONCEPT_11):
        assert path.is_file() and path.stat().st_size <= LIMIT, path
    with safe_open(str(MINI_CHECKPOINT), framework="pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} <= {"F16", "I64"}
        facts = json.loads(f.metadata()[PRETRAIN_METADATA_KEY])
    assert facts["resolution"] == 128 and facts["images"] > 8000 and facts["look"]["templates"]
    assert not any("gs" in t.split() or "geographic scene" in t for t in facts["look"]["templates"])


def check_fits_the_base(mini, concept):
    info = concept.info
    assert info.trigger_words == ["gs", "geographic scene"]
    assert info.base_model_name == MINI_CHECKPOINT.name
    assert info.base_model_hash == hashlib.sha256(MINI_CHECKPOINT.read_bytes()).hexdigest()
    assert info.training_config["resolution"] == 128 and info.training.steps > 0
    modules = {kohya_name("unet", n) for n, _ in mini.unet.named_modules()}
    modules |= {kohya_name("text_encoder", sd15.text_layout_prefix(mini.text_encoder) + n)
                for n, _ in mini.text_encoder.named_modules()}
    targets = UNET_TARGETS[info.training_config["module_set"]]  # every module of the file's set, no other
    assert set(concept.lora) == {kohya_name("unet", n) for n, _ in mini.unet.named_modules()
                                 if any(n.endswith("." + t) for t in targets)} and set(concept.lora) <= modules
    before = mini.unet.down_blocks[1].attentions[0].transformer_blocks[0].attn2.to_k.weight.clone()
    apply_concepts(mini, [(concept, 1.0, 1.0)])
    try:
        assert not torch.equal(before, mini.unet.down_blocks[1].attentions[0].transformer_blocks[0].attn2.to_k.weight)
    finally:
        apply_concepts(mini, [])
    assert torch.equal(before, mini.unet.down_blocks[1].attentions[0].transformer_blocks[0].attn2.to_k.weight)


def test_paper_concept_is_the_11_on_this_base_and_maps_every_key(mini):
    concept = read_concept(MINI_CONCEPT_11)
    kb = load_knowledge(extra_dirs=[])
    assert sorted(concept.info.concepts) == sorted(kb[c].name for c in kb.by_paper("trained"))
    assert len(concept.info.concepts) == 11
    check_fits_the_base(mini, concept)


@pytest.mark.skipif(not (SHARED / "data" / "aid").is_dir(), reason=f"AID not found at {SHARED / 'data' / 'aid'}")
def test_default_concept_is_word2scene_c_on_all_30_aid_classes(mini):
    concept = read_concept(MINI_CONCEPT)
    aid = sorted(d.name for d in (SHARED / "data" / "aid").iterdir() if d.is_dir())
    kb = load_knowledge(extra_dirs=[])
    assert len(aid) == 30 and sorted(concept.info.concepts) == sorted(kb[c].name for c in aid)
    assert concept.info.training.epochs == 3 and concept.info.training.dataset_size == 8282
    check_fits_the_base(mini, concept)


def test_main_job_defaults_pick_mini_its_concept_and_128_px():
    args = build_parser().parse_args(["generate", "airport"])
    assert args.model == "mini" and args.checkpoint is None
    [(concept, strength, strength_clip)] = load_concepts(args)
    assert concept.path == MINI_CONCEPT and strength == strength_clip == 1.0
    assert image_size(args) == {"width": 128, "height": 128}
    zero = build_parser().parse_args(["generate", "airport", "--strength", "0"])
    assert [s for _, s, _ in load_concepts(zero)] == [0.0]  # the base alone
    other = build_parser().parse_args(["generate", "airport", "--model", "tiny"])
    assert load_concepts(other) == [] and image_size(other) == {"width": 64, "height": 64}
    as_file = build_parser().parse_args(["generate", "airport", "--checkpoint", str(MINI_CHECKPOINT)])
    assert image_size(as_file) == {"width": 128, "height": 128}  # mini passed as a file: its metadata's resolution


def test_mini_samples_with_its_measured_defaults_and_other_models_with_the_papers():
    from word2scene.cli.common import sampling_options
    from word2scene.models.sd15 import MINI_SAMPLING

    paper = {"sampler": "ddim", "steps": 30, "cfg": 7.0}
    for command in (["generate", "airport"], ["heatmap", "gs, airport", "--out", "h"], ["protocol", "--out", "p"],
                    ["grid", "church", "--concept", "c.safetensors", "--out", "g.png"]):
        mini = sampling_options(build_parser().parse_args(command))
        assert mini == {k: MINI_SAMPLING[k] if k in MINI_SAMPLING else paper[k] for k in paper}, command
        assert sampling_options(build_parser().parse_args([*command, "--model", "tiny"])) == paper
        assert sampling_options(build_parser().parse_args([*command, "--checkpoint", "x.safetensors"])) == paper
    given = build_parser().parse_args(["generate", "airport", "--steps", "12", "--cfg", "0", "--sampler", "dpmpp_2m"])
    assert sampling_options(given) == {"sampler": "dpmpp_2m", "steps": 12, "cfg": 0.0}  # a given 0 stays 0


def test_a_checkpoint_without_pretrain_metadata_draws_at_sd15s_512(tmp_path, tiny):
    from word2scene.models.sd15 import native_resolution, save_single_file

    save_single_file(tiny, tmp_path / "plain.safetensors")
    assert native_resolution(tmp_path / "plain.safetensors") == 512
    assert native_resolution(tmp_path / "missing.safetensors") == 512  # loading it names the missing file


def test_generate_with_mini_at_128_px_is_deterministic(tmp_path):
    run = ["generate", "forest", "--steps", "6", "--overwrite"]
    assert main([*run, "--seed", "3", "--out", str(tmp_path / "a.png")]) == 0
    assert main([*run, "--seed", "3", "--out", str(tmp_path / "b.png")]) == 0
    assert main([*run, "--seed", "4", "--out", str(tmp_path / "c.png")]) == 0
    a, b, c = (np.asarray(Image.open(tmp_path / f"{n}.png")) for n in "abc")
    assert a.shape == (128, 128, 3) and np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.std() > 5  # a picture, not a flat field
    params = json.loads(Image.open(tmp_path / "a.png").text["word2scene"])
    assert params["prompt"] == "gs, geographic scene, forest" and params["concepts"][0]["strength_model"] == 1.0


@pytest.mark.parametrize("damage, message", [
    ("missing", "does not exist"),
    ("truncated", "is truncated"),
    ("pointer", "git LFS/annex pointer"),
])
def test_a_damaged_mini_file_is_named_in_the_error(tmp_path, monkeypatch, damage, message):
    broken = tmp_path / MINI_CHECKPOINT.name
    if damage == "truncated":
        with open(MINI_CHECKPOINT, "rb") as src, open(broken, "wb") as dst:
            dst.write(src.read(MINI_CHECKPOINT.stat().st_size // 2))
    elif damage == "pointer":
        broken.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 43844870\n")
    monkeypatch.setattr(sd15, "MINI_CHECKPOINT", broken)
    with pytest.raises(InputError, match=message) as info:
        load_sd15(model="mini")
    assert str(info.value).startswith("model: ") and str(broken) in str(info.value)
    if damage == "missing":
        assert not broken.exists()
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_the_manifest_records_every_shipped_file_and_matches_it():
    folder = MINI_CHECKPOINT.parent
    recorded = weight_files.shipped_sums()
    assert sorted(recorded) == sorted(p.name for p in folder.glob("*.safetensors"))
    for name, digest in recorded.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name


def test_a_byte_corrupted_shipped_file_of_the_right_length_is_refused_once_per_version(tmp_path, monkeypatch):
    import os

    import word2scene.cli.common as common

    folder = tmp_path / "mini"
    shutil.copytree(MINI_CHECKPOINT.parent, folder)
    monkeypatch.setattr(weight_files, "MINI_FOLDER", folder)
    monkeypatch.setattr(sd15, "MINI_CHECKPOINT", folder / MINI_CHECKPOINT.name)
    monkeypatch.setattr(common, "MINI_CONCEPT", folder / MINI_CONCEPT.name)
    args = build_parser().parse_args(["generate", "airport"])
    for path in (folder / MINI_CHECKPOINT.name, folder / MINI_CONCEPT.name):
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF  # one byte of a weight: the length and the header stay right
        path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"^model: .*word2scene-mini.safetensors is damaged: its sha256 is .* SHA256SUMS"):
        load_sd15(model="mini")
    with pytest.raises(InputError, match=r"^--model: .*word2scene-mini-c.safetensors is damaged"):
        load_concepts(args)
    (folder / "linked.safetensors").symlink_to(folder / MINI_CHECKPOINT.name)  # reached through a link: the same
    with pytest.raises(InputError, match="is damaged"):
        load_sd15(checkpoint=folder / "linked.safetensors")
    for path in (folder / MINI_CHECKPOINT.name, folder / MINI_CONCEPT.name):
        shutil.copy(MINI_CHECKPOINT.parent / path.name, path)  # a new version of the file: checked again, and good
    hashed = weight_files._file_sha256.cache_info().misses
    load_sd15(model="mini")
    load_sd15(model="mini")
    assert weight_files._file_sha256.cache_info().misses == hashed + 1  # once per version of the file, not per load
    os.unlink(folder / "linked.safetensors")
    (folder / "SHA256SUMS").write_text((folder / "SHA256SUMS").read_text().replace(MINI_CONCEPT.name, "other"))
    with pytest.raises(InputError, match=r"^--model: word2scene-mini-c.safetensors is not listed in .*SHA256SUMS"):
        load_concepts(args)
