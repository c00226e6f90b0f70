"""Concept LoRA training on the tiny model and real RS images from shared/data."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, SHARED
from word2scene.cli import main
from word2scene.concepts.file import read_concept
from word2scene.imagery import read_image
from word2scene.datasets import scan_dataset, training_caption
from word2scene.errors import InputError
from word2scene.prompts.knowledge import load_knowledge
from word2scene.models.sd15 import build_tiny
from word2scene.training.adapters import lora_parameters
from word2scene.training.config import TrainConfig
from word2scene.training.lora import list_states, train
from word2scene.training.objective import denoising_loss
from word2scene.training.outputs import concept_output_path
from word2scene.training.states import TrainingError, TrainingInterrupted

RS = SHARED / "data" / "rs_scenes"
pytestmark = pytest.mark.skipif(not RS.is_dir(), reason=f"shared data not found at {RS}")
FAST = dict(resolution=64, learning_rate=1e-3, rank=4, alpha=4.0)


@pytest.fixture(scope="module")
def kb():
    return load_knowledge(extra_dirs=[])


@pytest.fixture
def one_class(tmp_path):
    """A small copy of the airport class (8 images) in the captions.jsonl layout."""
    root = tmp_path / "data"
    (root / "airport").mkdir(parents=True)
    rows = [json.loads(line) for line in (RS / "captions.jsonl").read_text().splitlines()]
    keep = [r for r in rows if r["class"] == "airport"][:8]
    for r in keep:
        shutil.copy(RS / r["file"], root / r["file"])
    (root / "captions.jsonl").write_text("\n".join(json.dumps(r) for r in keep) + "\n")
    return root


def test_loss_decreases_on_real_images(kb, tmp_path):
    sd = build_tiny()
    cfg = TrainConfig(concepts=["airport"], steps=40, augment="none", **FAST)
    before = denoising_loss(sd, RS, cfg, kb, concepts=["airport"])
    result = train(sd, RS, tmp_path / "airport.safetensors", cfg, kb=kb)
    after = denoising_loss(sd, RS, cfg, kb, concepts=["airport"])
    assert after < before * 0.97, (before, after)
    assert len(result.losses) == 40 and all(np.isfinite(result.losses))
    assert np.mean(result.losses[-10:]) < np.mean(result.losses[:10])


def test_resume_gives_the_same_lora(one_class, tmp_path, kb):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # CPU kernels reduce in a thread-dependent order; one thread is bit-exact
    try:
        cfg = TrainConfig(steps=12, save_every=4, keep_states=2, **FAST)
        straight = train(build_tiny(), one_class, tmp_path / "a.safetensors", cfg, kb=kb)
        states = list_states(tmp_path / "a.safetensors")
        assert [p.name for p in states] == ["a.state-000004.pt", "a.state-000008.pt"]  # keep_states=2 of 4, 8
        shutil.copy(states[0], tmp_path / "b.state-000004.pt")
        resumed = train(build_tiny(), one_class, tmp_path / "b.safetensors", cfg, kb=kb, resume=tmp_path / "b.state-000004.pt")
    finally:
        torch.set_num_threads(threads)
    assert resumed.losses == straight.losses
    worst = max(float((straight.concept.lora[n].up - resumed.concept.lora[n].up).abs().max()) for n in straight.concept.lora)
    assert worst < 1e-6
    other = TrainConfig(**{**cfg.__dict__, "rank": 8})
    with pytest.raises(InputError, match="other settings"):
        train(build_tiny(), one_class, tmp_path / "c.safetensors", other, kb=kb, resume=states[0])
    fewer = TrainConfig(**{**cfg.__dict__, "steps": 6})  # the step-8 LoRA must not be saved as "6 steps"
    with pytest.raises(InputError, match=r"^resume: a.state-000008.pt is at step 8, past this run's 6 steps"):
        train(build_tiny(), one_class, tmp_path / "d.safetensors", fewer, kb=kb, resume=states[1])


def test_data_order_is_drawn_once_per_epoch(one_class, tmp_path, kb, monkeypatch):
    """No per-step work scales with the dataset: the shuffled order of all images is drawn once an epoch."""
    drawn = []
    randperm = torch.randperm

    def counting(n, *args, **kwargs):
        drawn.append(n)
        return randperm(n, *args, **kwargs)

    monkeypatch.setattr(torch, "randperm", counting)
    result = train(build_tiny(), one_class, tmp_path / "a.safetensors", TrainConfig(steps=10, batch_size=2, **FAST), kb=kb)
    assert len(result.losses) == 10
    assert drawn.count(8) == 3  # 8 images, 4 batches an epoch: steps 1-4, 5-8, 9-10


def test_saved_concept_loads_in_our_reader_and_in_diffusers(one_class, tmp_path, kb):
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    sd = build_tiny()
    cfg = TrainConfig(steps=3, module_set="kohya", text_encoder=True, rslora=True, **FAST)
    result = train(sd, one_class, tmp_path / "k.safetensors", cfg, kb=kb)
    concept = read_concept(tmp_path / "k.safetensors")
    assert len(concept.lora) == 192 + 72 and concept.info.module_set == "kohya"
    assert concept.info.concepts == ["airport"] and concept.info.trigger_words == ["gs", "geographic scene"]
    assert concept.info.training.steps == 3 and concept.info.training.dataset_size == 8
    assert concept.info.alpha == pytest.approx(4.0 * 2.0)  # rsLoRA: alpha / sqrt(r) == file alpha / r
    fresh = build_tiny()
    pipe = StableDiffusionPipeline(vae=fresh.vae, text_encoder=fresh.text_encoder, tokenizer=fresh.tokenizer,
                                   unet=fresh.unet, scheduler=DDIMScheduler.from_config(fresh.configs["scheduler"]),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.load_lora_weights(str(tmp_path / "k.safetensors"))
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    ctx = torch.randn(1, 77, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = sd.unet(x, torch.tensor([300]), encoder_hidden_states=ctx).sample
        theirs = pipe.unet(x, torch.tensor([300]), encoder_hidden_states=ctx).sample
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    assert result.summary["images"] == 8


def test_every_caption_is_drawn_one_per_epoch_and_resume_stays_exact(one_class, tmp_path, kb):
    from word2scene.datasets import training_captions
    from word2scene.training.draws import caption_choice

    [first, *_] = scan_dataset(one_class, kb=kb)
    assert len(first.captions) == 5 and first.caption == first.captions[0]  # RSICD: five human captions
    texts = training_captions(["gs", "geographic scene"], first)
    assert len(set(texts)) == 5 and all(t.startswith("gs, geographic scene, airport, ") for t in texts)
    picks = [caption_choice(0, epoch, 3, 5) for epoch in range(20)]
    assert picks == [caption_choice(0, epoch, 3, 5) for epoch in range(20)]  # a function of (seed, epoch, image)
    assert len(set(picks)) >= 4 and picks != [caption_choice(1, epoch, 3, 5) for epoch in range(20)]
    assert caption_choice(0, 7, 3, 1) == 0
    # a control that can fail: the same run with only each image's first caption trains another LoRA
    cfg = TrainConfig(steps=16, batch_size=2, **FAST)  # 4 epochs of 8 images
    every = train(build_tiny(), one_class, tmp_path / "every.safetensors", cfg, kb=kb)
    rows = [json.loads(line) for line in (one_class / "captions.jsonl").read_text().splitlines()]
    (one_class / "captions.jsonl").write_text("".join(json.dumps({**r, "captions": []}) + "\n" for r in rows))
    only_first = train(build_tiny(), one_class, tmp_path / "first.safetensors", cfg, kb=kb)
    assert any(not torch.equal(every.concept.lora[n].up, only_first.concept.lora[n].up) for n in every.concept.lora)


def test_caption_assembly_for_each_layout(tmp_path, one_class, kb):
    jsonl = scan_dataset(one_class, kb=kb)
    assert len(jsonl) == 8 and jsonl[0].concept == "airport" and jsonl[0].caption
    assert training_caption(["gs", "geographic scene"], jsonl[0]) == f"gs, geographic scene, airport, {jsonl[0].caption.rstrip('. ')}"
    image = next((one_class / "airport").iterdir())
    kohya = tmp_path / "kohya"
    (kohya / "10_dense_residential").mkdir(parents=True)
    shutil.copy(image, kohya / "10_dense_residential" / "a.jpg")
    (kohya / "10_dense_residential" / "a.txt").write_text("red roofs in rows\n\ntrees between houses\n")
    [k] = scan_dataset(kohya, kb=kb)
    assert (k.repeats, k.concept) == (10, "dense residential")
    assert training_caption(["gs", "geographic scene"], k) == "gs, geographic scene, dense residential, red roofs in rows"
    assert training_caption(["gs"], k, 1) == "gs, dense residential, trees between houses"  # one caption per line
    classes = tmp_path / "classes"
    (classes / "storage_tanks").mkdir(parents=True)
    shutil.copy(image, classes / "storage_tanks" / "b.jpg")
    [c] = scan_dataset(classes, kb=kb)
    assert training_caption(["gs"], c) == "gs, storage tanks"
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copy(image, flat / "c.jpg")
    with pytest.raises(InputError, match="concept"):
        scan_dataset(flat, kb=kb)
    [f] = scan_dataset(flat, ["harbour"], kb=kb)
    assert f.concept == "port"


def test_rs_image_formats(tmp_path):
    rng = np.random.default_rng(0)
    sixteen = (rng.random((40, 50)) * 4000 + 1000).astype(np.uint16)
    Image.fromarray(sixteen).save(tmp_path / "g16.tif")
    rgb = read_image(tmp_path / "g16.tif")
    assert rgb.mode == "RGB" and rgb.size == (50, 40)
    arr = np.asarray(rgb)
    assert arr.min() == 0 and arr.max() == 255 and np.array_equal(arr[..., 0], arr[..., 2])
    bands = [Image.fromarray((rng.random((30, 30)) * (i + 1) * 1000).astype(np.uint16)) for i in range(4)]
    bands[0].save(tmp_path / "multi.tif", save_all=True, append_images=bands[1:])
    assert np.asarray(read_image(tmp_path / "multi.tif", bands=(4, 3, 2))).shape == (30, 30, 3)
    with pytest.raises(InputError, match="has 4 bands"):
        read_image(tmp_path / "multi.tif", bands=(5, 3, 2))
    Image.new("RGBA", (20, 20), (10, 200, 30, 0)).save(tmp_path / "rgba.png")
    assert np.asarray(read_image(tmp_path / "rgba.png"))[0, 0].tolist() == [10, 200, 30]
    Image.new("L", (20, 20), 77).save(tmp_path / "gray.png")
    assert np.asarray(read_image(tmp_path / "gray.png"))[0, 0].tolist() == [77, 77, 77]


def test_nan_loss_stops_with_clear_error_and_keeps_last_checkpoint(one_class, tmp_path, kb, monkeypatch):
    import word2scene.models.diffusion as objective

    calls = {"n": 0}
    real = objective.F.mse_loss

    class PoisonedF:
        def __getattr__(self, name):
            return getattr(torch.nn.functional, name)

        @staticmethod
        def mse_loss(*args, **kwargs):
            calls["n"] += 1
            out = real(*args, **kwargs)
            return out * float("nan") if calls["n"] > 5 else out

    monkeypatch.setattr(objective, "F", PoisonedF())
    with pytest.raises(TrainingError, match="loss became nan at step 6.*a.state-000004.pt"):
        train(build_tiny(), one_class, tmp_path / "a.safetensors", TrainConfig(steps=10, save_every=2, **FAST), kb=kb)
    assert [p.name for p in list_states(tmp_path / "a.safetensors")] == ["a.state-000002.pt", "a.state-000004.pt"]
    assert not (tmp_path / "a.safetensors").exists()


def test_bad_inputs(tmp_path, one_class, kb):
    sd = build_tiny()
    cfg = TrainConfig(steps=1, **FAST)
    with pytest.raises(InputError, match="is not a folder"):
        train(sd, tmp_path / "missing", tmp_path / "o.safetensors", cfg, kb=kb)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="has no images"):
        train(sd, tmp_path / "empty", tmp_path / "o.safetensors", cfg, kb=kb)
    (tmp_path / "notes" / "airport").mkdir(parents=True)
    (tmp_path / "notes" / "airport" / "readme.txt").write_text("no images here")
    with pytest.raises(InputError, match="has no images"):
        train(sd, tmp_path / "notes", tmp_path / "o.safetensors", cfg, kb=kb)
    with pytest.raises(InputError, match="resolution: 100"):
        train(sd, one_class, tmp_path / "o.safetensors", TrainConfig(**{**cfg.__dict__, "resolution": 100}), kb=kb)
    with pytest.raises(InputError, match="batch_size: 9"):
        train(sd, one_class, tmp_path / "o.safetensors", TrainConfig(**{**cfg.__dict__, "batch_size": 9}), kb=kb)
    (tmp_path / "exists.safetensors").write_bytes(b"keep")
    with pytest.raises(InputError, match="exists"):
        train(sd, one_class, tmp_path / "exists.safetensors", cfg, kb=kb)
    assert (tmp_path / "exists.safetensors").read_bytes() == b"keep"
    for name in ("../evil", "a/../../b", "/abs/path", ""):
        with pytest.raises(InputError, match="save_name"):
            concept_output_path(tmp_path, name)
    assert concept_output_path(tmp_path, "word2scene/airport_v1") == tmp_path / "word2scene" / "airport_v1.safetensors"
    broken = json.loads((one_class / "captions.jsonl").read_text().splitlines()[0])
    broken["file"] = "airport/nope.jpg"
    (one_class / "captions.jsonl").write_text((one_class / "captions.jsonl").read_text() + json.dumps(broken) + "\n")
    with pytest.raises(InputError, match="do not exist.*captions must match"):
        train(sd, one_class, tmp_path / "o.safetensors", cfg, kb=kb)


def test_corrupt_images_are_skipped_and_counted_or_refused(one_class, tmp_path, kb):
    (one_class / "airport" / "000.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match="1 of 8 images are unreadable or too small \\(more than 10%\\)"):
        train(build_tiny(), one_class, tmp_path / "o.safetensors", TrainConfig(steps=1, **FAST), kb=kb)
    lenient = TrainConfig(steps=1, max_bad_fraction=0.2, **FAST)
    result = train(build_tiny(), one_class, tmp_path / "o.safetensors", lenient, kb=kb)
    assert result.summary["images"] == 7 and result.summary["skipped_images"] == ["000.jpg (UnidentifiedImageError)"]
    for name in ("001.jpg", "002.jpg"):
        (one_class / "airport" / name).write_bytes(b"junk")
    with pytest.raises(InputError, match="3 of 8 images are unreadable"):
        train(build_tiny(), one_class, tmp_path / "p.safetensors", lenient, kb=kb)


def test_disk_full_while_saving_keeps_the_previous_file(tmp_path, monkeypatch, tiny):
    import safetensors.torch

    from helpers import make_concept, model_shapes
    from word2scene.concepts.file import save_concept

    path = save_concept(make_concept(model_shapes(tiny)), tmp_path / "c.safetensors")
    before = path.read_bytes()

    def full_disk(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    with pytest.raises(InputError, match="^out: could not write .*No space left on device.*previous file there is intact"):
        save_concept(make_concept(model_shapes(tiny), seed=3), path, overwrite=True)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["c.safetensors"]


def test_cli_train_writes_concept_loss_curve_and_previews(one_class, tmp_path, capsys):
    out = tmp_path / "cli.safetensors"
    assert main(["train", "--model", "tiny", str(one_class), "--out", str(out), "--steps", "4", "--resolution", "64", "--rank", "4",
                 "--save-every", "2", "--preview-every", "2", "--preview-steps", "2", "--min-snr-gamma", "5",
                 "--noise-offset", "0.05", "--caption-dropout", "0.2", "--lr-scheduler", "cosine", "--warmup", "1"]) == 0
    assert read_concept(out).info.training.steps == 4
    assert Image.open(tmp_path / "cli.loss.png").size == (512, 256)
    assert sorted(p.name for p in (tmp_path / "cli.previews").iterdir()) == ["step_000002_0.png", "step_000004_0.png"]
    assert "wrote" in capsys.readouterr().out
    assert main(["train", "--model", "tiny", str(one_class), "--out", str(out), "--steps", "1", "--resolution", "64"]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["train", "--model", "tiny", str(one_class), "--out", str(tmp_path / "x.safetensors"), "--resolution", "96"]) == 2


def test_stop_request_leaves_a_resumable_checkpoint(one_class, tmp_path, kb):

    calls = {"n": 0}

    def stop_after_three():
        calls["n"] += 1
        return calls["n"] >= 3

    cfg = TrainConfig(steps=6, **FAST)
    with pytest.raises(TrainingInterrupted) as info:
        train(build_tiny(), one_class, tmp_path / "s.safetensors", cfg, kb=kb, should_stop=stop_after_three)
    assert info.value.step == 3 and info.value.state_path.name == "s.state-000003.pt"
    assert not (tmp_path / "s.safetensors").exists()
    result = train(build_tiny(), one_class, tmp_path / "s.safetensors", cfg, kb=kb, resume=info.value.state_path)
    assert len(result.losses) == 6 and read_concept(tmp_path / "s.safetensors").info.training.steps == 6


def test_bf16_mixed_precision_keeps_lora_in_fp32(one_class, tmp_path, kb):
    from diffusers.models.attention_processor import AttnProcessor

    sd = build_tiny()
    result = train(sd, one_class, tmp_path / "bf16.safetensors", TrainConfig(steps=3, mixed_precision="bf16", **FAST), kb=kb)
    assert sd.unet.conv_in.weight.dtype == torch.bfloat16
    assert {type(p) for p in sd.unet.attn_processors.values()} == {AttnProcessor}  # not SDPA's slow bf16 CPU kernel
    assert {p.dtype for _, p in lora_parameters(sd)} == {torch.float32}
    assert all(np.isfinite(result.losses)) and read_concept(tmp_path / "bf16.safetensors").info.training.steps == 3


def test_long_captions_are_encoded_whole_in_chunks(one_class, tmp_path, kb, tiny):
    """A caption past 75 tokens is encoded in 77-column chunks (as in sampling), not cut; a
    batch mixing caption lengths repeats each to a common length, which leaves
    cross-attention unchanged."""
    from word2scene.scenes.sampling import encode_prompt, join_contexts

    rows = [json.loads(line) for line in (one_class / "captions.jsonl").read_text().splitlines()]
    rows[0]["caption"] = " ".join(["many white planes parked beside a long grey terminal building"] * 10)
    (one_class / "captions.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    long_caption = training_caption(["gs", "geographic scene"], scan_dataset(one_class, kb=kb)[0])
    context = encode_prompt(tiny, long_caption, weighted=False)
    assert context.shape == (1, 154, 32)
    short = encode_prompt(tiny, "gs, geographic scene, airport", weighted=False)
    batch = join_contexts([short, context])
    assert batch.shape == (2, 154, 32) and torch.equal(batch[0, 77:], short[0])
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        once = tiny.unet(x, torch.tensor([500]), encoder_hidden_states=short).sample
        twice = tiny.unet(x, torch.tensor([500]), encoder_hidden_states=batch[:1]).sample
    torch.testing.assert_close(once, twice, rtol=1e-5, atol=1e-6)
    result = train(build_tiny(), one_class, tmp_path / "long.safetensors",
                   TrainConfig(steps=2, batch_size=4, augment="none", **FAST), kb=kb)
    assert len(result.losses) == 2 and all(np.isfinite(result.losses))
    result = train(build_tiny(), one_class, tmp_path / "long_te.safetensors",
                   TrainConfig(steps=2, batch_size=4, augment="none", text_encoder=True, **FAST), kb=kb)
    assert len(result.losses) == 2 and all(np.isfinite(result.losses))


def test_gpu_bench_smoke_run_on_cpu():
    """bench/gpu_train_bench.py runs end to end (tiny model, CPU), so a lent GPU's few minutes are
    not lost to a broken script; its table reports a step time, images/s and MFU."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "bench" / "gpu_train_bench.py"
    done = subprocess.run([sys.executable, str(script), "--device", "cpu", "--model", "tiny", "--resolution", "64",
                           "--steps", "5", "--warmup", "1", "--batch", "2"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = dict(re.findall(r"^\| ([^|]+?) \| ([^|]+?) \|$", done.stdout, re.M))
    step, images = float(rows["step time (s)"]), float(rows["images/s"])
    assert step > 0 and abs(images - 2 / step) < 0.02 * images
    assert float(rows["achieved model TFLOP/s"]) > 0 and rows["MFU vs measured peak"].endswith("%")


def test_step_draws_are_a_pure_function_of_their_arguments():
    from word2scene.training.draws import epoch_order, step_draws

    args = dict(seed=3, global_batch=17, first=0, batch=4, variants=8, latent_shape=(4, 8, 8), num_timesteps=1000,
                noise_offset=0.1, caption_dropout=0.5)
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    a, b = step_draws(**args), step_draws(**args)
    assert torch.equal(torch.random.get_rng_state(), before)  # the global generator is never touched
    for field in ("variant", "latent_eps", "noise", "timesteps"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    assert a.drop_caption == b.drop_caption and len(a.drop_caption) == 4
    assert a.noise.shape == a.latent_eps.shape == (4, 4, 8, 8) and int(a.variant.max()) < 8
    for change in ({"global_batch": 18}, {"first": 1}, {"seed": 4}):
        assert not torch.equal(step_draws(**{**args, **change}).noise, a.noise), change
    # two processes taking samples 0-1 and 2-3 draw exactly the one-process batch of 4
    halves = [step_draws(**{**args, "first": first, "batch": 2}) for first in (0, 2)]
    for field in ("variant", "latent_eps", "noise", "timesteps"):
        assert torch.equal(torch.cat([getattr(h, field) for h in halves]), getattr(a, field))
    assert halves[0].drop_caption + halves[1].drop_caption == a.drop_caption
    assert torch.equal(epoch_order(3, 2, 10), epoch_order(3, 2, 10))
    assert sorted(epoch_order(3, 2, 10).tolist()) == list(range(10))
    assert not torch.equal(epoch_order(3, 2, 10), epoch_order(3, 3, 10))


def test_concept_records_base_checkpoint_sha256_name_and_whole_config(one_class, tmp_path, kb):
    import hashlib

    from safetensors import safe_open

    from word2scene.models.sd15 import load_sd15, save_single_file

    checkpoint = save_single_file(build_tiny(), tmp_path / "base_model.safetensors")
    cfg = TrainConfig(steps=2, **FAST)
    train(load_sd15(checkpoint), one_class, tmp_path / "c.safetensors", cfg, kb=kb)
    with safe_open(str(tmp_path / "c.safetensors"), framework="pt") as f:
        meta = f.metadata()
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert meta["ss_new_sd_model_hash"] == meta["word2scene.base_model_hash"] == digest
    assert meta["ss_sd_model_name"] == meta["word2scene.base_model_name"] == "base_model.safetensors"
    recorded = json.loads(meta["word2scene.training_config"])
    assert set(recorded) == set(TrainConfig.__dataclass_fields__)
    assert recorded["steps"] == 2 and recorded["resolution"] == 64 and recorded["bands"] == [1, 2, 3]
    concept = read_concept(tmp_path / "c.safetensors")
    assert concept.info.base_model_hash == digest and concept.info.training_config == recorded
    assert "base_model.safetensors (sha256 " + digest[:12] in concept.describe()
    # a model built in memory has no file to hash: the name says where it came from
    train(build_tiny(), one_class, tmp_path / "d.safetensors", cfg, kb=kb)
    info = read_concept(tmp_path / "d.safetensors").info
    assert (info.base_model_name, info.base_model_hash) == ("tiny:0", "")


def test_concept_carries_the_kohya_keys_of_its_training_from_the_one_config(one_class, tmp_path, kb):
    from safetensors import safe_open

    cfg = TrainConfig(steps=2, batch_size=2, grad_accumulation=2, lr_scheduler="cosine", warmup_steps=1,
                      noise_offset=0.05, min_snr_gamma=5.0, caption_dropout=0.1, **FAST)
    train(build_tiny(), one_class, tmp_path / "c.safetensors", cfg, kb=kb)
    with safe_open(str(tmp_path / "c.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert meta["ss_optimizer"] == "torch.optim.adamw.AdamW" and meta["ss_lr_scheduler"] == "cosine"
    assert meta["ss_lr_warmup_steps"] == "1" and meta["ss_mixed_precision"] == "no"
    assert meta["ss_noise_offset"] == "0.05" and meta["ss_min_snr_gamma"] == "5.0"
    assert meta["ss_caption_dropout_rate"] == "0.1" and meta["ss_max_grad_norm"] == "1.0"
    assert meta["ss_batch_size_per_device"] == "2" and meta["ss_gradient_accumulation_steps"] == "2"
    assert meta["ss_network_dim"] == "4" and meta["ss_network_alpha"] == "4" and meta["ss_network_module"] == "networks.lora"
    assert meta["ss_resolution"] == "(64, 64)" and meta["ss_learning_rate"] == "0.001" and meta["ss_seed"] == "0"
    assert meta["ss_max_train_steps"] == meta["ss_steps"] == "2"
    assert meta["ss_epoch"] == meta["ss_num_epochs"] == "1"  # 2 steps x 2 micro-batches x 2 images of 8
    # the data's real tag frequencies: per image folder, the images whose training captions have each tag
    tags = json.loads(meta["ss_tag_frequency"])
    assert list(tags) == ["airport"] and tags["airport"]["gs"] == tags["airport"]["airport"] == 8
    captions = [json.loads(line)["caption"] for line in (one_class / "captions.jsonl").read_text().splitlines()]
    first = captions[0].rstrip(". ").strip().lower()
    assert tags["airport"][first] == sum(c.rstrip(". ").strip().lower() == first for c in captions)
    info = read_concept(tmp_path / "c.safetensors").info
    assert info.training.optimizer == "torch.optim.adamw.AdamW" and info.training.noise_offset == 0.05
    assert info.tag_frequency == tags


def test_save_every_epoch_writes_a_concept_per_epoch(one_class, tmp_path, kb):
    cfg = TrainConfig(epochs=3, batch_size=4, save_every_epoch=True, **FAST)  # 8 images: 2 steps an epoch
    result = train(build_tiny(), one_class, tmp_path / "e.safetensors", cfg, kb=kb)
    files = sorted(tmp_path.glob("e-epoch*.safetensors"))
    assert [f.name for f in files] == ["e-epoch01.safetensors", "e-epoch02.safetensors", "e-epoch03.safetensors"]
    epochs = [read_concept(f) for f in files]
    assert [c.info.training.epochs for c in epochs] == [1, 2, 3] and [c.info.training.steps for c in epochs] == [2, 4, 6]
    last, final = epochs[-1], result.concept
    assert all(torch.equal(last.lora[n].up, final.lora[n].up) for n in final.lora)  # the last epoch is the result
    assert not all(torch.equal(epochs[0].lora[n].up, final.lora[n].up) for n in final.lora)


def test_a_failed_final_save_keeps_the_concept_beside_or_in_the_temp_folder(one_class, tmp_path, kb, monkeypatch):
    import word2scene.training.outputs as outputs

    real_save = outputs.save_concept
    refused = []

    def full_disk(concept, path, overwrite=False):  # the output cannot be written; anywhere else can
        if Path(path).name == "k.safetensors" or Path(path).parent in refused:
            raise InputError("out", f"could not write {path}: No space left on device")
        return real_save(concept, path, overwrite=overwrite)

    monkeypatch.setattr(outputs, "save_concept", full_disk)
    cfg = TrainConfig(steps=3, save_every=0, **FAST)
    with pytest.raises(InputError, match=r"^out: could not write .*k\.safetensors: No space left on device; the "
                                         r"trained weights are kept in .*k\.kept-1\.safetensors"):
        train(build_tiny(), one_class, tmp_path / "k.safetensors", cfg, kb=kb)
    kept = read_concept(tmp_path / "k.kept-1.safetensors")
    assert kept.info.training.steps == 3 and not list(tmp_path.glob("k.state-*.pt"))  # the concept, not a 3x state
    assert not (tmp_path / "k.safetensors.lock").exists()  # the lock goes with the run
    refused.append(tmp_path)  # beside the output fails too: the system temp folder takes it
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(temp))
    with pytest.raises(InputError, match=r"^save_name: could not write .*; the trained weights are kept in .*"
                                         r"temp/k\.kept-1\.safetensors"):
        train(build_tiny(), one_class, tmp_path / "k.safetensors", cfg, kb=kb, input_names={"out": "save_name"})
    assert read_concept(temp / "k.kept-1.safetensors").info.training.steps == 3


def test_ctrl_c_in_cli_training_stops_with_a_resumable_state(one_class, tmp_path):
    import re

    from helpers import ctrl_c_after_progress

    out = tmp_path / "c.safetensors"
    rc, stderr = ctrl_c_after_progress(["train", "--model", "tiny", str(one_class), "--out", str(out), "--steps", "5000",
                                        "--resolution", "64", "--rank", "4", "--save-every", "0", "--preview-every",
                                        "0"], r"\b[1-9]\d*/5000", ROOT)
    assert rc == 130
    message = re.search(r"word2scene: stopped at step (\d+); resume with --resume (\S+)", stderr)
    assert message, stderr[-2000:]
    state = Path(message.group(2))
    assert state.is_file() and state.name == f"c.state-{int(message.group(1)):06d}.pt"
    assert not out.exists() and not (tmp_path / "c.safetensors.lock").exists()


def test_save_every_epoch_into_a_folder_of_an_earlier_run_is_refused_or_replaces_the_whole_set(one_class, tmp_path, kb):
    cfg = TrainConfig(epochs=3, save_every_epoch=True, **FAST, batch_size=4)
    train(build_tiny(), one_class, tmp_path / "e.safetensors", cfg, kb=kb)
    earlier = sorted(p.name for p in tmp_path.glob("e-epoch*.safetensors"))
    assert earlier == ["e-epoch01.safetensors", "e-epoch02.safetensors", "e-epoch03.safetensors"]
    two = TrainConfig(epochs=2, save_every_epoch=True, **FAST, batch_size=4, seed=1)
    (tmp_path / "e.safetensors").unlink()  # only the epoch files stand in the way
    with pytest.raises(InputError, match=r"^out: .* holds epoch files of an earlier run \(e-epoch01.safetensors, "
                                         r"e-epoch02.safetensors, e-epoch03.safetensors\); pass overwrite"):
        train(build_tiny(), one_class, tmp_path / "e.safetensors", two, kb=kb)
    assert sorted(p.name for p in tmp_path.glob("e-epoch*.safetensors")) == earlier  # untouched
    train(build_tiny(), one_class, tmp_path / "e.safetensors", two, kb=kb, overwrite=True)
    files = sorted(tmp_path.glob("e-epoch*.safetensors"))
    assert [f.name for f in files] == ["e-epoch01.safetensors", "e-epoch02.safetensors"]  # no epoch 3 of the other run
    assert {read_concept(f).info.training_config["seed"] for f in files} == {1}


def test_a_state_from_another_base_model_is_refused_by_name(one_class, tmp_path, kb):
    from word2scene.models.sd15 import build_random, load_sd15, save_single_file, tiny_configs

    a = save_single_file(build_tiny(), tmp_path / "a.safetensors")
    b = save_single_file(build_random(tiny_configs(), seed=5, name="tiny"), tmp_path / "b.safetensors")  # same shapes
    cfg = TrainConfig(steps=4, save_every=2, **FAST)

    with pytest.raises(TrainingInterrupted):
        train(load_sd15(a), one_class, tmp_path / "s.safetensors", cfg, kb=kb, should_stop=lambda: True)
    state = tmp_path / "s.state-000001.pt"
    assert state.is_file()
    with pytest.raises(InputError, match=r"^resume: s.state-000001.pt was trained on the base model a.safetensors "
                                         r"\(sha256 [0-9a-f]{12}\), not on b.safetensors \(sha256 [0-9a-f]{12}\)"):
        train(load_sd15(b), one_class, tmp_path / "s.safetensors", cfg, kb=kb, resume=state)
    with pytest.raises(InputError, match=r"^resume: .* trained on the base model a.safetensors .*, not on tiny:0"):
        train(build_tiny(), one_class, tmp_path / "s.safetensors", cfg, kb=kb, resume=state)
    shutil.copy(a, tmp_path / "renamed.safetensors")  # the same model under another name: resumes
    done = train(load_sd15(tmp_path / "renamed.safetensors"), one_class, tmp_path / "s.safetensors", cfg, kb=kb,
                 resume=state)
    assert done.summary["steps"] == 4


def test_tiny_images_are_skipped_and_named(one_class, tmp_path, kb):
    Image.new("RGB", (1, 1)).save(one_class / "airport" / "000.jpg")
    Image.new("RGB", (1, 1000)).save(one_class / "airport" / "001.jpg")
    result = train(build_tiny(), one_class, tmp_path / "t.safetensors",
                   TrainConfig(steps=1, max_bad_fraction=0.3, **FAST), kb=kb)
    assert result.summary["images"] == 6
    assert result.summary["skipped_images"] == ["000.jpg (1 x 1 px; accepted: at least 8 px a side)",
                                                "001.jpg (1 x 1000 px; accepted: at least 8 px a side)"]
