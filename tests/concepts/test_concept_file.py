"""Concept files: round trip, foreign layouts, diffusers' reader agreeing, bad input."""
import json
from dataclasses import asdict

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from helpers import make_concept, model_shapes, sd15_full_shapes
from word2scene.concepts.file import DEFAULT_TRIGGER_WORDS, load_concept, read_concept, save_concept
from word2scene.errors import InputError


def test_round_trip_keeps_weights_and_metadata(tiny, tmp_path):
    concept = make_concept(model_shapes(tiny), text_encoder=True)
    path = save_concept(concept, tmp_path / "c.safetensors")
    back = read_concept(path)
    assert asdict(back.info) == {**asdict(concept.info), "module_set": "attention"}
    assert back.info.source_format == "word2scene"
    assert set(back.lora) == set(concept.lora) and len(back.lora) == 128 + 48
    for name, w in concept.lora.items():
        assert torch.equal(back.lora[name].down, w.down) and torch.equal(back.lora[name].up, w.up)
        assert back.lora[name].alpha == w.alpha


def test_file_is_kohya_format_with_kohya_and_modelspec_metadata(tiny, tmp_path):
    path = save_concept(make_concept(model_shapes(tiny)), tmp_path / "c.safetensors")
    with safe_open(str(path), "pt") as f:
        keys, meta = set(f.keys()), f.metadata()
    name = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    assert {f"{name}.lora_down.weight", f"{name}.lora_up.weight", f"{name}.alpha"} <= keys
    assert all(k.startswith("lora_unet_") for k in keys)
    assert meta["modelspec.architecture"] == "stable-diffusion-v1/lora"
    assert meta["ss_network_dim"] == "4" and meta["ss_network_alpha"] == "2"
    assert meta["ss_network_module"] == "networks.lora" and meta["ss_base_model_version"] == "sd_v1"
    assert json.loads(meta["word2scene.trigger_words"]) == list(DEFAULT_TRIGGER_WORDS)
    assert json.loads(meta["word2scene.training"])["steps"] == 100
    assert meta["ss_max_train_steps"] == "100" and meta["ss_resolution"] == "(64, 64)"
    assert len(meta["sshs_model_hash"]) == 64


def test_kohya_training_keys_read_back_from_a_kohya_file(tiny, tmp_path):
    concept = make_concept(model_shapes(tiny))
    path = tmp_path / "k.safetensors"
    frequency = {"10_airport": {"airport": 12, "runway": 5}}
    save_file(concept.state_dict(), str(path), metadata={
        "ss_max_train_steps": "1200", "ss_epoch": "6", "ss_optimizer": "bitsandbytes.optim.adamw.AdamW8bit",
        "ss_lr_scheduler": "cosine", "ss_lr_warmup_steps": "50", "ss_mixed_precision": "fp16",
        "ss_noise_offset": "None", "ss_min_snr_gamma": "5.0", "ss_batch_size_per_device": "2",
        "ss_tag_frequency": json.dumps(frequency)})
    info = read_concept(path).info
    facts = info.training
    assert (facts.steps, facts.epochs, facts.warmup_steps, facts.batch_size) == (1200, 6, 50, 2)
    assert facts.optimizer == "bitsandbytes.optim.adamw.AdamW8bit" and facts.lr_scheduler == "cosine"
    assert facts.mixed_precision == "fp16" and facts.noise_offset is None and facts.min_snr_gamma == 5.0
    assert info.tag_frequency == frequency
    # saved again, the facts and frequencies stay
    save_concept(read_concept(path), tmp_path / "again.safetensors")
    with safe_open(str(tmp_path / "again.safetensors"), "pt") as f:
        meta = f.metadata()
    assert meta["ss_optimizer"] == "bitsandbytes.optim.adamw.AdamW8bit" and meta["ss_steps"] == "1200"
    assert json.loads(meta["ss_tag_frequency"]) == frequency and "ss_noise_offset" not in meta


def test_a_concept_without_known_data_claims_no_tag_frequency(tiny, tmp_path):
    path = save_concept(make_concept(model_shapes(tiny)), tmp_path / "c.safetensors")
    with safe_open(str(path), "pt") as f:
        assert "ss_tag_frequency" not in f.metadata()


def test_never_overwrites_unless_asked(tiny, tmp_path):
    concept = make_concept(model_shapes(tiny))
    path = save_concept(concept, tmp_path / "c.safetensors")
    with pytest.raises(InputError, match="exists"):
        save_concept(concept, path)
    save_concept(concept, path, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]


def test_plain_kohya_lora_reads_as_concept_with_paper_triggers(tiny, tmp_path):
    concept = make_concept(model_shapes(tiny), rank=8, alpha=1.0)
    path = tmp_path / "word2scene.safetensors"
    save_file(concept.state_dict(), str(path), metadata={"ss_max_train_steps": "3500", "ss_network_dim": "8"})
    back = read_concept(path)
    assert back.info.source_format == "kohya"
    assert back.info.trigger_words == ["gs", "geographic scene"]
    assert back.info.rank == 8 and back.info.alpha == 1.0 and back.info.training.steps == 3500
    assert back.info.name == "word2scene"


def test_kohya_lora_without_alpha_uses_alpha_equal_rank(tiny, tmp_path):
    sd = {k: v for k, v in make_concept(model_shapes(tiny), rank=4).state_dict().items() if not k.endswith(".alpha")}
    save_file(sd, str(tmp_path / "a.safetensors"))
    assert {w.alpha for w in read_concept(tmp_path / "a.safetensors").lora.values()} == {4.0}


def _peft_layout(concept):
    from word2scene.concepts.keys import sd15_targets

    out = {}
    for name, w in concept.lora.items():
        component, path = sd15_targets()[name]
        out[f"{component}.{path}.lora_A.weight"] = w.down
        out[f"{component}.{path}.lora_B.weight"] = w.up
    return out


def test_diffusers_peft_lora_converts_to_the_same_deltas(tiny, tmp_path):
    concept = make_concept(model_shapes(tiny), rank=4, alpha=8.0, text_encoder=True)
    meta = {"lora_adapter_metadata": json.dumps({"unet.r": 4, "unet.lora_alpha": 8, "text_encoder.r": 4,
                                                  "text_encoder.lora_alpha": 8})}
    save_file(_peft_layout(concept), str(tmp_path / "peft.safetensors"), metadata=meta)
    back = read_concept(tmp_path / "peft.safetensors")
    assert back.info.source_format == "diffusers" and set(back.lora) == set(concept.lora)
    for name, w in concept.lora.items():
        torch.testing.assert_close(back.lora[name].diff() * back.lora[name].alpha / back.lora[name].rank,
                                   w.diff() * 2.0, rtol=0, atol=1e-6)
    # without adapter metadata diffusers' convention is alpha = rank (scale 1)
    save_file(_peft_layout(concept), str(tmp_path / "plain.safetensors"))
    assert {w.alpha for w in read_concept(tmp_path / "plain.safetensors").lora.values()} == {4.0}


def test_old_diffusers_attention_processor_keys_convert():
    from word2scene.concepts.file import concept_from_tensors

    down, up = torch.ones(2, 32), torch.ones(16, 2)
    tensors = {"down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora.down.weight": down,
               "down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora.up.weight": up}
    concept = concept_from_tensors(tensors, {}, "old")
    assert list(concept.lora) == ["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0"]


def test_diffusers_load_lora_weights_gives_the_same_deltas(fresh_tiny, tmp_path):
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from word2scene.concepts.patching import lora_modules

    concept = make_concept(model_shapes(fresh_tiny), rank=4, alpha=2.0, module_set="kohya", text_encoder=True)
    path = save_concept(concept, tmp_path / "c.safetensors")
    pipe = StableDiffusionPipeline(vae=fresh_tiny.vae, text_encoder=fresh_tiny.text_encoder, tokenizer=fresh_tiny.tokenizer,
                                   unet=fresh_tiny.unet, scheduler=DDIMScheduler.from_config(fresh_tiny.configs["scheduler"]),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    modules = lora_modules(fresh_tiny)
    before = {n: modules[n].weight.detach().clone() for n in concept.lora}
    pipe.load_lora_weights(str(path))
    pipe.fuse_lora(lora_scale=1.0)
    ours = read_concept(path)
    assert len(ours.lora) == 192 + 48
    for name, w in ours.lora.items():
        module = modules[name]  # peft wraps it after loading; the fused weight is in base_layer
        fused = module.weight if not hasattr(module, "base_layer") else module.base_layer.weight
        theirs = fused.detach() - before[name]
        torch.testing.assert_close(theirs, (w.alpha / w.rank) * w.diff(), rtol=0, atol=2e-6)


def test_load_concept_caches_by_path_and_mtime(tiny, tmp_path):
    path = save_concept(make_concept(model_shapes(tiny)), tmp_path / "c.safetensors")
    first = load_concept(path)
    assert load_concept(path) is first
    save_concept(make_concept(model_shapes(tiny), seed=1), path, overwrite=True)
    second = load_concept(path)
    assert second is not first
    assert not torch.equal(next(iter(second.lora.values())).down, next(iter(first.lora.values())).down)


# --- bad input ---------------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_concept(tmp_path / "nope.safetensors")


def test_not_safetensors(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_text("this is not a safetensors file")
    with pytest.raises(InputError, match="not a readable safetensors"):
        read_concept(bad)
    ckpt = tmp_path / "lora.ckpt"
    torch.save({"x": torch.zeros(1)}, ckpt)
    with pytest.raises(InputError, match="not a .safetensors file"):
        read_concept(ckpt)


def test_sdxl_lora_is_named(tmp_path):
    tensors = {"lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": torch.zeros(4, 768),
               "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight": torch.zeros(768, 4)}
    save_file(tensors, str(tmp_path / "xl.safetensors"))
    with pytest.raises(InputError, match="SDXL"):
        read_concept(tmp_path / "xl.safetensors")


def test_sd2_lora_is_named_by_its_key_shapes(tmp_path):
    name = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    save_file({f"{name}.lora_down.weight": torch.zeros(4, 1024), f"{name}.lora_up.weight": torch.zeros(320, 4)},
              str(tmp_path / "sd2.safetensors"))
    with pytest.raises(InputError, match=r"SD2\.x"):
        read_concept(tmp_path / "sd2.safetensors")


def test_keys_that_map_to_nothing(tmp_path):
    save_file({"lora_unet_no_such_block_to_q.lora_down.weight": torch.zeros(4, 8),
               "lora_unet_no_such_block_to_q.lora_up.weight": torch.zeros(8, 4)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(InputError, match="map to no SD1.5 module"):
        read_concept(tmp_path / "x.safetensors")
    save_file({"some.random.weight": torch.zeros(2)}, str(tmp_path / "y.safetensors"))
    with pytest.raises(InputError, match="no LoRA tensors"):
        read_concept(tmp_path / "y.safetensors")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_or_inf_in_lora(tiny, tmp_path, value):
    sd = make_concept(model_shapes(tiny)).state_dict()
    key = sorted(k for k in sd if k.endswith("lora_up.weight"))[3]
    sd[key][0, 0] = value
    save_file(sd, str(tmp_path / "nan.safetensors"))
    with pytest.raises(InputError, match="NaN or inf") as err:
        read_concept(tmp_path / "nan.safetensors")
    assert key.rsplit(".lora_up", 1)[0] in str(err.value)


@pytest.mark.parametrize("alpha, message", [(1e30, "alpha 1e\\+30"), (-4.0, "alpha -4"), (float("nan"), "NaN or inf")])
def test_alpha_outside_what_a_lora_uses(tiny, tmp_path, alpha, message):
    sd = make_concept(model_shapes(tiny)).state_dict()
    key = sorted(k for k in sd if k.endswith(".alpha"))[2]
    sd[key] = torch.tensor(alpha)
    save_file(sd, str(tmp_path / "alpha.safetensors"))
    with pytest.raises(InputError, match=message) as err:
        read_concept(tmp_path / "alpha.safetensors", "concept_name")
    assert str(err.value).startswith("concept_name: ") and key.rsplit(".alpha", 1)[0] in str(err.value)


def test_rank_zero_lora(tiny, tmp_path):
    sd = make_concept(model_shapes(tiny)).state_dict()
    module = sorted(k for k in sd if k.endswith(".alpha"))[0].rsplit(".alpha", 1)[0]
    sd[module + ".lora_down.weight"] = sd[module + ".lora_down.weight"][:0].contiguous()
    sd[module + ".lora_up.weight"] = sd[module + ".lora_up.weight"][:, :0].contiguous()
    save_file(sd, str(tmp_path / "rank0.safetensors"))
    with pytest.raises(InputError, match=f"{module} has rank 0"):
        read_concept(tmp_path / "rank0.safetensors")


def test_checkpoint_passed_as_concept(tmp_path):
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(2)}, str(tmp_path / "ckpt.safetensors"))
    with pytest.raises(InputError, match="full model checkpoint"):
        read_concept(tmp_path / "ckpt.safetensors")


def test_full_size_concept_does_not_fit_tiny_model(fresh_tiny):
    from word2scene.concepts.patching import apply_concepts

    with pytest.raises(InputError, match="does not fit"):
        apply_concepts(fresh_tiny, [(make_concept(sd15_full_shapes(), rank=2), 1.0, 1.0)])
