"""Word2Scene-mini's pretraining (training/base_model.py) on a handful of real AID images."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from conftest import SHARED
from word2scene.cli import main
from word2scene.errors import InputError
from word2scene.models.sd15 import load_sd15
from word2scene.training.base_model import PRETRAIN_METADATA_KEY, PretrainConfig, old_photo, pretrain

AID = SHARED / "data" / "aid"
pytestmark = pytest.mark.skipif(not AID.is_dir(), reason=f"shared data not found at {AID}")
QUICK = dict(model="tiny", vae_steps=4, unet_steps=6, batch_size=2, vae_batch_size=2, resolution=64, vae_crop=32,
             warmup_steps=2, save_every=2, ema_decay=0.9)


@pytest.fixture
def handful(tmp_path):
    """Three images each of two AID classes, in the captions.jsonl layout."""
    root = tmp_path / "aid"
    rows = [json.loads(line) for line in (AID / "captions.jsonl").read_text().splitlines()]
    keep = [r for c in ("airport", "forest") for r in [r for r in rows if r["class"] == c and r["split"] == "train"][:3]]
    for r in keep:
        (root / r["file"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(AID / r["file"], root / r["file"])
    (root / "captions.jsonl").write_text("\n".join(json.dumps(r) for r in keep) + "\n")
    return root


def test_old_photo_is_grey_low_contrast_and_deterministic():
    rng = np.random.default_rng(0)
    colour = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    a, b = np.asarray(old_photo(colour)), np.asarray(old_photo(colour))
    assert np.array_equal(a, b) and a.shape == (32, 32, 3)
    assert np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 1], a[..., 2])  # no colour left
    assert a.std() < 0.6 * np.asarray(colour.convert("L")).std()


def test_pretrain_writes_a_loadable_checkpoint_and_resumes_to_the_same_weights(handful, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # CPU kernels reduce in a thread-dependent order; one thread is bit-exact
    try:
        straight = pretrain(handful, tmp_path / "a.safetensors", PretrainConfig(**QUICK))
        states = sorted(tmp_path.glob("a.pretrain-*.pt"))
        assert [p.name for p in states] == ["a.pretrain-000004-000002.pt", "a.pretrain-000004-000004.pt"]
        shutil.copy(states[0], tmp_path / "b.pretrain-000004-000002.pt")
        resumed = pretrain(handful, tmp_path / "b.safetensors", PretrainConfig(**QUICK),
                           resume=tmp_path / "b.pretrain-000004-000002.pt")
    finally:
        torch.set_num_threads(threads)
    a, b = load_file(str(straight)), load_file(str(resumed))
    assert a.keys() == b.keys() and all(t.dtype == torch.float16 for t in a.values() if t.is_floating_point())
    assert all(torch.equal(a[k], b[k]) for k in a)
    sd = load_sd15(straight)
    assert sd.configs["unet"]["block_out_channels"] == [16, 32, 64, 64] and sd.vae_scale > 0
    with open(straight, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    facts = json.loads(header["__metadata__"][PRETRAIN_METADATA_KEY])
    assert facts["images"] == 6 and facts["unet_steps"] == 6 and facts["look"]["contrast"] < 1
    from word2scene.models.sd15 import native_resolution
    assert native_resolution(straight) == 64  # a pretrain output draws at its own resolution by default, not 512
    with pytest.raises(InputError, match="other settings"):
        pretrain(handful, tmp_path / "c.safetensors", PretrainConfig(**{**QUICK, "learning_rate": 1e-3}), resume=states[0])
    with pytest.raises(InputError, match=r"^resume: a.pretrain-000004-000004.pt is at UNet step 4, past this run's 3"):
        pretrain(handful, tmp_path / "d.safetensors", PretrainConfig(**{**QUICK, "unet_steps": 3}), resume=states[1])


def test_pretrain_cli_and_its_input_checks(handful, tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    quick = ["--model", "tiny", "--vae-steps", "1", "--steps", "1", "--batch", "2", "--vae-batch", "2",
             "--resolution", "64", "--vae-crop", "32", "--save-every", "0"]
    assert main(["pretrain", str(handful), "--out", str(out), *quick]) == 0 and out.is_file()
    assert main(["pretrain", str(handful), "--out", str(out), *quick]) == 2  # exists, no --overwrite
    assert "--out" in capsys.readouterr().err
    assert main(["pretrain", str(tmp_path / "nothing"), "--out", str(tmp_path / "n.safetensors"), *quick]) == 2
    assert "dataset:" in capsys.readouterr().err
    assert main(["pretrain", str(handful), "--out", str(tmp_path / "r.safetensors"), *quick[:-8], "--resolution", "96"]) == 2
    assert "--resolution: 96" in capsys.readouterr().err
    assert main(["pretrain", str(handful), "--out", str(tmp_path / "l.safetensors"), *quick, "--lr", "3"]) == 2
    assert "--lr: 3" in capsys.readouterr().err
    with pytest.raises(InputError, match="out: m.ckpt"):
        pretrain(handful, tmp_path / "m.ckpt", PretrainConfig(**QUICK))


def test_a_second_stage_starts_from_a_checkpoint_keeps_its_vae_and_trains_the_text_encoder(handful, tmp_path):
    from word2scene.models.weight_files import file_sha256

    first = pretrain(handful, tmp_path / "s1.safetensors",
                     PretrainConfig(**{**QUICK, "text_learning_rate": 0.0, "save_every": 0}))
    second = pretrain(handful, tmp_path / "s2.safetensors",
                      PretrainConfig(**{**QUICK, "vae_steps": 0, "text_token_scale": 2.0, "save_every": 0}), init=first)
    a, b = load_file(str(first)), load_file(str(second))
    vae = [k for k in a if k.startswith("first_stage_model.")]
    text = [k for k in a if k.startswith("cond_stage_model.") and ".layers." in k]
    assert vae and text and a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in vae)  # the VAE is kept as it is
    assert sum(not torch.equal(a[k], b[k]) for k in text) > len(text) // 2  # the text encoder learned
    token = next(k for k in a if k.endswith("token_embedding.weight"))
    ratio = float(b[token].float().std() / a[token].float().std())
    assert 1.8 < ratio < 2.2  # scaled once at the start, then trained a few steps
    assert load_sd15(second).vae_scale == load_sd15(first).vae_scale
    with open(second, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    facts = json.loads(header["__metadata__"][PRETRAIN_METADATA_KEY])
    assert facts["init"] == {"file": "s1.safetensors", "sha256": file_sha256(first)}
    with pytest.raises(InputError, match="^init: s1.safetensors is not a mini model"):
        pretrain(handful, tmp_path / "s3.safetensors", PretrainConfig(**{**QUICK, "model": "mini"}), init=first)


def test_a_frozen_text_encoder_is_run_once_per_caption_with_the_same_contexts():
    from word2scene.models.sd15 import build_tiny
    from word2scene.training.base_model import caption_encoder, caption_tokens

    sd = build_tiny()
    texts = ["", "an old aerial photograph of airport", "an old aerial photograph of beach"]
    tokens = caption_tokens(sd, texts)
    calls = []
    sd.text_encoder.register_forward_hook(lambda *_: calls.append(1))
    frozen = caption_encoder(sd, tokens, trainable=False)
    assert len(calls) == 3  # once per distinct caption, up front
    batch = [texts[1], texts[0], texts[1], texts[2]]
    fixed = frozen(batch)
    assert len(calls) == 3 and fixed.shape[:2] == (4, 77)  # no encoder call per step
    with torch.no_grad():
        live = caption_encoder(sd, tokens, trainable=True)(batch)
    torch.testing.assert_close(fixed, live, rtol=1e-5, atol=1e-6)  # what the per-step encoding gives


def test_learning_rate_warms_up_then_follows_a_cosine_to_a_tenth():
    from word2scene.training.base_model import _lr
    rates = [_lr(k, 1.0, 10, 110, "cosine") for k in range(110)]
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)
    assert rates[10] == pytest.approx(1.0) and rates[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))
    assert rates[60] == pytest.approx(0.55, abs=0.01)
    assert [_lr(k, 1.0, 10, 110, "constant") for k in (50, 109)] == [1.0, 1.0]


def test_a_resumed_run_may_change_its_precision_but_not_its_recipe(handful, tmp_path):
    """Precision, like the device, is the arithmetic, not the recipe: a run started in fp32
    continues in bf16 from its state; a defining option (the learning rate) is refused by name."""
    pretrain(handful, tmp_path / "a.safetensors", PretrainConfig(**{**QUICK, "unet_steps": 2,
                                                                      "vae_precision": "fp32", "unet_precision": "fp32"}))
    state = sorted(tmp_path.glob("a.pretrain-*.pt"))[-1]
    out = pretrain(handful, tmp_path / "b.safetensors", PretrainConfig(**{**QUICK, "unet_steps": 4}), resume=state)
    assert torch.isfinite(load_file(str(out))["model.diffusion_model.out.2.weight"].float()).all()
    with pytest.raises(InputError, match="lr|learning_rate"):
        pretrain(handful, tmp_path / "c.safetensors", PretrainConfig(**{**QUICK, "learning_rate": 1e-3}), resume=state)


def test_bf16_unet_on_a_cpu_attends_with_explicit_matmuls_and_matches_fp32():
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0
    from word2scene.models.diffusion import use_fast_attention
    from word2scene.training.base_model import autocast

    sd = load_sd15(model="tiny")
    x, t = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([10, 500])
    context = torch.randn(2, 77, sd.unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = sd.unet(x, t, encoder_hidden_states=context).sample
        use_fast_attention(sd.unet, "fp32", torch.device("cpu"))
        assert {type(p) for p in sd.unet.attn_processors.values()} == {AttnProcessor2_0}  # fp32 keeps the default
        use_fast_attention(sd.unet, "bf16", torch.device("cpu"))
        assert {type(p) for p in sd.unet.attn_processors.values()} == {AttnProcessor}
        with autocast("bf16", torch.device("cpu")):
            fast = sd.unet(x, t, encoder_hidden_states=context).sample.float()
    assert fast.shape == reference.shape
    assert (fast - reference).norm() / reference.norm() < 0.05  # bf16 rounding, not another function


def test_init_vae_puts_a_new_vae_under_an_earlier_unet_and_text_encoder(handful, tmp_path):
    quiet = {**QUICK, "save_every": 0}
    earlier = pretrain(handful, tmp_path / "old.safetensors", PretrainConfig(**quiet))
    vae_run = pretrain(handful, tmp_path / "vae.safetensors", PretrainConfig(**{**quiet, "seed": 1, "unet_steps": 0}))
    merged = pretrain(handful, tmp_path / "new.safetensors", PretrainConfig(**{**quiet, "vae_steps": 0, "unet_steps": 0}),
                      init=earlier, init_vae=vae_run)
    old, vae, new = (load_file(str(p)) for p in (earlier, vae_run, merged))
    is_vae = lambda k: k.startswith("first_stage_model.")
    assert all(torch.equal(new[k], vae[k]) for k in new if is_vae(k))
    assert all(torch.equal(new[k], old[k]) for k in new if k.startswith("model.diffusion_model."))
    assert any(not torch.equal(old[k], vae[k]) for k in old if is_vae(k))  # the two VAEs differ: the test can fail
    assert load_sd15(merged).vae_scale == load_sd15(vae_run).vae_scale
    with pytest.raises(InputError, match="^init_vae: old.safetensors is not a mini model"):
        pretrain(handful, tmp_path / "x.safetensors", PretrainConfig(**{**quiet, "model": "mini"}), init_vae=earlier)


def test_pretrain_names_a_device_this_machine_lacks(handful, tmp_path):
    with pytest.raises(InputError, match="^device: 'bogus' is not a device"):
        pretrain(handful, tmp_path / "a.safetensors", PretrainConfig(**QUICK), device="bogus")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="^device: 'cuda' is not a device"):
            pretrain(handful, tmp_path / "a.safetensors", PretrainConfig(**QUICK), device="cuda")


def test_a_bad_init_is_blamed_on_init(handful, tmp_path, tiny, capsys):
    from safetensors.torch import save_file

    from word2scene.models.sd15 import save_single_file
    from word2scene.models.weight_files import read_state_dict

    quick = ["--model", "tiny", "--vae-steps", "0", "--steps", "1", "--batch", "2", "--resolution", "64", "--vae-crop",
             "32", "--save-every", "0"]
    state, metadata = read_state_dict(save_single_file(tiny, tmp_path / "good.safetensors"))
    no_vae = {k: v for k, v in state.items() if not k.startswith("first_stage_model.")}
    save_file(no_vae, str(tmp_path / "novae.safetensors"), metadata=metadata)
    key = next(k for k in state if k.startswith("model.diffusion_model.") and k.endswith(".weight"))
    state[key].view(-1)[0] = float("nan")
    save_file(state, str(tmp_path / "nan.safetensors"), metadata=metadata)
    for init, message in (("nan.safetensors", "holds NaN or infinite values"), ("novae.safetensors", "the vae")):
        assert main(["pretrain", str(handful), "--out", str(tmp_path / f"o-{init}"), *quick, "--init",
                     str(tmp_path / init)]) == 2
        err = capsys.readouterr().err
        assert "error: --init: " in err and message in err and "Traceback" not in err, err


def test_a_stop_request_writes_a_state_that_resumes_to_the_same_weights(handful, tmp_path):
    from word2scene.training.states import TrainingInterrupted

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    quiet = {**QUICK, "save_every": 0}  # no periodic states: the stop's own state is all there is
    try:
        straight = pretrain(handful, tmp_path / "a.safetensors", PretrainConfig(**quiet))
        for stop_after, where in ((2, "VAE step 2, UNet step 0"), (7, "VAE step 4, UNet step 2")):
            asked = iter(range(1, 100))
            with pytest.raises(TrainingInterrupted) as info:
                pretrain(handful, tmp_path / f"b{stop_after}.safetensors", PretrainConfig(**quiet),
                         should_stop=lambda: next(asked) >= stop_after)
            assert info.value.where == where and info.value.state_path.is_file()
            resumed = pretrain(handful, tmp_path / f"b{stop_after}.safetensors", PretrainConfig(**quiet),
                               resume=info.value.state_path)
            a, b = load_file(str(straight)), load_file(str(resumed))
            assert all(torch.equal(a[k], b[k]) for k in a)
    finally:
        torch.set_num_threads(threads)


def test_ctrl_c_in_cli_pretraining_stops_with_a_resumable_state(handful, tmp_path):
    import re

    from conftest import ROOT
    from helpers import ctrl_c_after_progress

    out = tmp_path / "m.safetensors"
    rc, stderr = ctrl_c_after_progress(["pretrain", str(handful), "--out", str(out), "--model", "tiny", "--vae-steps",
                                        "100000", "--steps", "1", "--vae-batch", "2", "--resolution", "64",
                                        "--vae-crop", "32", "--save-every", "0"], r"\b[1-9]\d*/100000", ROOT)
    assert rc == 130
    message = re.search(r"word2scene: stopped at VAE step (\d+), UNet step 0; resume with --resume (\S+)", stderr)
    assert message, stderr[-2000:]
    state = Path(message.group(2))
    assert state.is_file() and state.name == f"m.pretrain-{int(message.group(1)):06d}-000000.pt"
    assert not out.exists() and not (tmp_path / "m.safetensors.lock").exists()


def test_a_failed_final_save_keeps_the_checkpoint_and_says_where(handful, tmp_path, monkeypatch):
    import word2scene.training.base_model as base_model

    real = base_model.save_single_file

    def full_disk(sd, path, **kwargs):
        if Path(path).name == "m.safetensors":
            raise InputError("out", f"could not write {path}: No space left on device")
        return real(sd, path, **kwargs)

    monkeypatch.setattr(base_model, "save_single_file", full_disk)
    with pytest.raises(InputError, match=r"^out: could not write .*m\.safetensors: No space left on device; the trained "
                                         r"weights are kept in .*m\.kept-1\.safetensors"):
        pretrain(handful, tmp_path / "m.safetensors", PretrainConfig(**{**QUICK, "save_every": 0}))
    assert load_sd15(tmp_path / "m.kept-1.safetensors").configs["unet"]["block_out_channels"] == [16, 32, 64, 64]


def test_a_damaged_latent_cache_is_encoded_again(handful, tmp_path):
    from safetensors.torch import save_file

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cfg = PretrainConfig(**{**QUICK, "save_every": 0})
    try:
        first = load_file(str(pretrain(handful, tmp_path / "a.safetensors", cfg)))
        [cache] = tmp_path.glob("a.latents-*.safetensors")
        for damage in ("truncated", "other shape", "not finite"):
            if damage == "truncated":
                cache.write_bytes(cache.read_bytes()[:cache.stat().st_size // 2])
            else:
                bad = torch.full((6, 4, 4, 4), float("nan")) if damage == "not finite" else torch.ones(6, 4, 2, 2)
                save_file({"mean": bad, "std": bad.abs()}, str(cache))
            again = load_file(str(pretrain(handful, tmp_path / "a.safetensors", cfg, overwrite=True)))
            assert all(torch.equal(first[k], again[k]) for k in first), damage
            assert load_file(str(cache))["mean"].shape == (6, 4, 8, 8)  # rebuilt
    finally:
        torch.set_num_threads(threads)


def test_a_state_of_a_run_from_another_init_is_refused_by_name(handful, tmp_path, tiny):
    from word2scene.models.sd15 import build_random, save_single_file, tiny_configs

    one = save_single_file(tiny, tmp_path / "one.safetensors")
    two = save_single_file(build_random(tiny_configs(), seed=3, name="tiny"), tmp_path / "two.safetensors")
    cfg = PretrainConfig(**QUICK)
    pretrain(handful, tmp_path / "a.safetensors", cfg, init=one)
    state = sorted(tmp_path.glob("a.pretrain-*.pt"))[0]
    with pytest.raises(InputError, match=r"^resume: a.pretrain-.*\.pt was trained on the base model init one.safetensors "
                                         r"\(sha256 [0-9a-f]{12}\), not on init two.safetensors"):
        pretrain(handful, tmp_path / "b.safetensors", cfg, init=two, resume=state)
    with pytest.raises(InputError, match=r"was trained on the base model init one.safetensors .*, not on random weights"):
        pretrain(handful, tmp_path / "b.safetensors", cfg, resume=state)


def test_the_patch_code_keeps_each_patch_colour_and_is_reproducible():
    from word2scene.training.base_model import CHROMA_GAIN, PatchCode
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    a, b = PatchCode(pixels, seed=3), PatchCode(pixels, seed=3)
    assert torch.equal(a.basis, b.basis) and a.basis.shape == (4, 192)
    flat = torch.zeros(1, 3, 16, 16)
    flat[:, 0], flat[:, 1], flat[:, 2] = 0.5, 0.1, -0.3  # one colour everywhere, in [-1, 1]
    code = a(flat)
    assert code.shape == (1, 4, 2, 2)
    grey = (0.5 + 0.1 - 0.3) / 3
    expected = torch.tensor([grey, CHROMA_GAIN * (0.5 - grey), CHROMA_GAIN * (-0.3 - grey)]) * 8
    assert torch.allclose(code[0, :3, 0, 0], expected, atol=1e-5)
    assert abs(float(code[0, 3, 0, 0])) < 1e-4  # nothing but colour: the texture component is zero


def test_a_state_recording_options_that_no_longer_define_a_run_still_resumes(tmp_path):
    from word2scene.training.states import check_resumable

    identity = PretrainConfig().identity()
    older = {"config": {**identity, "unet_precision": "fp32", "vae_precision": "bf16"}, "dataset_hash": "d"}
    check_resumable(older, tmp_path / "s.pt", identity, "d")  # the precisions were compared once; no more
    changed = {"config": {**identity, "learning_rate": 1.0}, "dataset_hash": "d"}
    with pytest.raises(InputError, match=r"other settings: \{'learning_rate': \(1.0, "):
        check_resumable(changed, tmp_path / "s.pt", identity, "d")


def test_standardized_latent_channels_change_coordinates_not_reconstructions(handful, tmp_path):
    from word2scene.datasets import load_images, scan_dataset
    from word2scene.training.base_model import encode_latents, standardize_latent_channels

    vae_run = pretrain(handful, tmp_path / "v.safetensors", PretrainConfig(**{**QUICK, "unet_steps": 0, "save_every": 0}))
    vae = load_sd15(vae_run).vae.float()
    _, arrays, _ = load_images(scan_dataset(handful), 64)
    pixels = np.stack(arrays)
    before, spread_before = encode_latents(vae, pixels)
    with torch.no_grad():
        decoded = vae.decode(before).sample
    shift, spread = before.mean((0, 2, 3)), before.std((0, 2, 3))
    assert spread.max() / spread.min() > 1.2  # the channels differ in spread: the test can fail
    standardize_latent_channels(vae, shift, spread)
    after, spread_after = encode_latents(vae, pixels)
    assert torch.allclose(after.mean((0, 2, 3)), torch.zeros(4), atol=1e-4)
    assert torch.allclose(after.std((0, 2, 3)), torch.ones(4), atol=1e-4)
    assert torch.allclose(spread_after, spread_before / spread.view(1, -1, 1, 1), rtol=1e-3)
    with torch.no_grad():
        assert torch.allclose(vae.decode(after).sample, decoded, atol=1e-4)


def test_latent_norm_channels_bakes_the_colour_statistics_into_the_vae_and_resumes(handful, tmp_path):
    channels = {**QUICK, "vae_steps": 0, "latent_norm": "channels"}
    start = pretrain(handful, tmp_path / "s.safetensors", PretrainConfig(**{**QUICK, "unet_steps": 0, "save_every": 0}))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        straight = pretrain(handful, tmp_path / "a.safetensors", PretrainConfig(**channels), init=start)
        state = tmp_path / "a.pretrain-000000-000002.pt"
        shutil.copy(state, tmp_path / "b.pretrain-000000-000002.pt")
        for cache in tmp_path.glob("a.latents-*"):  # resumed beside its latents, as a run resumes in its folder
            shutil.copy(cache, tmp_path / cache.name.replace("a.", "b.", 1))
        resumed = pretrain(handful, tmp_path / "b.safetensors", PretrainConfig(**channels), init=start,
                           resume=tmp_path / "b.pretrain-000000-000002.pt")
    finally:
        torch.set_num_threads(threads)
    a, b = load_file(str(straight)), load_file(str(resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)  # resumed, the VAE is not standardized twice
    sd = load_sd15(straight)
    assert sd.vae_scale == 1.0
    with open(straight, "rb") as f:
        facts = json.loads(json.loads(f.read(int.from_bytes(f.read(8), "little")))["__metadata__"][PRETRAIN_METADATA_KEY])
    assert facts["latent_norm"] == "channels" and facts["latent_channels"]["images"] == 6
    from word2scene.datasets import load_images, scan_dataset
    from word2scene.training.base_model import encode_latents

    _, arrays, _ = load_images(scan_dataset(handful), 64)
    latents = encode_latents(sd.vae.float(), np.stack(arrays))[0]  # the true-colour images: standardized
    assert torch.allclose(latents.mean((0, 2, 3)), torch.zeros(4), atol=0.02)
    assert torch.allclose(latents.std((0, 2, 3)), torch.ones(4), atol=0.02)
    with pytest.raises(InputError, match="other settings"):
        pretrain(handful, tmp_path / "c.safetensors", PretrainConfig(**{**channels, "latent_norm": "scale"}), init=start,
                 resume=state)
