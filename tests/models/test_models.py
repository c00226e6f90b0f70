"""Offline SD1.5 loading: single files, diffusers folders, the tiny model, the tokenizer."""
import json

import pytest
import torch
from safetensors.torch import save_file

from word2scene.errors import InputError
from word2scene.models.sd15 import (build_tiny, canonical_text_state, load_sd15, load_tokenizer, save_single_file,
                                    single_file_state)
from word2scene.models.weight_files import read_state_dict


def _all_equal(a, b):
    for name in ("unet", "vae"):
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), name
    ta, tb = canonical_text_state(a.text_encoder), canonical_text_state(b.text_encoder)
    assert all(torch.equal(ta[k], tb[k]) for k in ta)


def test_tokenizer_matches_clip_ids():
    tok = load_tokenizer()
    assert len(tok) == 49408 and tok.model_max_length == 77
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert tok.tokenize("gs, geographic scene") == ["gs</w>", ",</w>", "geographic</w>", "scene</w>"]


def test_tiny_model_is_deterministic_and_has_sd15_layout(tiny):
    other = build_tiny()
    _all_equal(tiny, other)
    assert not torch.equal(build_tiny(seed=1).unet.conv_in.weight, tiny.unet.conv_in.weight)
    state = single_file_state(tiny)
    assert "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight" in state
    assert "model.diffusion_model.output_blocks.11.1.proj_out.weight" in state
    assert "cond_stage_model.transformer.text_model.encoder.layers.11.self_attn.q_proj.weight" in state
    assert "first_stage_model.decoder.mid.attn_1.q.weight" in state


@pytest.mark.parametrize("dtype", [None, torch.float16])
def test_single_file_round_trip(tiny, tmp_path, dtype):
    path = save_single_file(tiny, tmp_path / "tiny.safetensors", dtype=dtype)
    back = load_sd15(path)
    if dtype is None:
        _all_equal(tiny, back)
    else:
        w = back.unet.conv_in.weight
        assert w.dtype == torch.float32
        torch.testing.assert_close(w, tiny.unet.conv_in.weight.half().float())


def test_ckpt_loads_weights_only(tiny, tmp_path):
    path = tmp_path / "tiny.ckpt"
    state = single_file_state(tiny)
    torch.save({"state_dict": state, "global_step": 1}, path)
    tensors, _ = read_state_dict(path)
    assert tensors.keys() == state.keys() and all(torch.equal(tensors[k], state[k]) for k in state)
    # a .ckpt carries no widths, so the tiny model's shapes are reported against SD1.5's
    with pytest.raises(InputError, match=r"does not match SD1.5 .* conv_in.weight \(16, 4, 3, 3\)"):
        load_sd15(path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    torch.save({"state_dict": {"x": Evil()}}, tmp_path / "evil.ckpt")
    with pytest.raises(InputError, match="weights-only"):
        load_sd15(tmp_path / "evil.ckpt")


def test_diffusers_folder(tiny, tmp_path):
    for name in ("unet", "vae", "text_encoder"):
        getattr(tiny, name).save_pretrained(tmp_path / name)
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    _all_equal(tiny, load_sd15(tmp_path))
    (tmp_path / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(InputError, match="vae has no weights"):
        load_sd15(tmp_path)


@pytest.mark.parametrize("keys, message", [
    ({"conditioner.embedders.0.transformer.text_model.embeddings.position_ids": torch.zeros(1)}, "SDXL"),
    ({"cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight": torch.zeros(1),
      "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1)}, "SD2"),
    ({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(1)}, "LoRA"),
    ({"encoder.conv_in.weight": torch.zeros(1)}, "not a Stable Diffusion checkpoint"),
    ({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 9, 3, 3)}, "inpainting"),
])
def test_not_sd1_checkpoints_are_named(tmp_path, keys, message):
    save_file(keys, str(tmp_path / "x.safetensors"))
    with pytest.raises(InputError, match=message):
        load_sd15(tmp_path / "x.safetensors")


def test_missing_or_bad_checkpoint_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_sd15(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(InputError, match="not a readable safetensors"):
        load_sd15(tmp_path / "junk.safetensors")
    (tmp_path / "model.gguf").write_bytes(b"x")
    with pytest.raises(InputError, match="accepted: .safetensors"):
        load_sd15(tmp_path / "model.gguf")
    (tmp_path / "folder").mkdir()
    with pytest.raises(InputError, match="not a diffusers model"):
        load_sd15(tmp_path / "folder")
    with pytest.raises(InputError, match="built-in"):
        load_sd15(None, "huge")


def test_non_finite_weights_are_refused_by_the_input_that_named_the_file(tiny, tmp_path, capsys):
    from word2scene.cli import main

    good = save_single_file(tiny, tmp_path / "good.safetensors")
    state, metadata = read_state_dict(good)
    key = next(k for k in state if k.startswith("model.diffusion_model.") and k.endswith(".weight"))
    state[key].view(-1)[0] = float("nan")
    path = tmp_path / "nan.safetensors"
    save_file(state, str(path), metadata=metadata)
    with pytest.raises(InputError, match=r"^checkpoint: .*nan.safetensors: the unet's tensor .* holds NaN or infinite"):
        load_sd15(path)
    assert main(["generate", "airport", "--checkpoint", str(path), "--steps", "1", "--width", "64",
                 "--out", str(tmp_path / "a.png")]) == 2
    assert "error: --checkpoint: " in capsys.readouterr().err and not (tmp_path / "a.png").exists()
