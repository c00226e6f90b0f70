"""Benchmark of concept training.

1. Throughput and peak memory against the reference diffusers example script
   examples/text_to_image/train_text_to_image_lora.py (public huggingface/diffusers
   repository; used beside the project, never copied into it: pass its path with
   --reference) at identical settings: the same random-weight full-size SD1.5 (a diffusers
   folder both load), resolution, rank (alpha = rank), batch, steps, 8 real airport images.
   Step time = difference of wall times of an N1- and an N2-step run, so start-up cancels.
2. FLOPs per training image, counted (torch FlopCounterMode): the UNet forward + backward both
   trainers do, and the VAE encode + text encoding the reference repeats each step; their ratio is
   the ceiling of what caching can gain at equal FLOP rates. Model FLOP utilisation of our step
   (counted FLOPs) against this machine's measured matmul peak.
3. Learning signal on real data (tiny model, its VAE first fitted to the images): train on one
   class's train split, then held-out denoising loss on that class and on the 29 others, before
   and after.

Usage: python bench/bench_training.py --reference PATH/train_text_to_image_lora.py
                                      [--resolution 256] [--steps 2,10] [--rank 4]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from flops import counted_tflop, matmul_peak, timed, unet_step_tflop  # noqa: E402  (bench/flops.py)

SHARED = ROOT.parent / "shared" / "data" / "rs_scenes"


def run_measured(cmd: list[str], env=None) -> tuple[float, float]:
    """Wall seconds and peak resident memory (GiB) of one command (GNU time)."""
    t = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed:\n{done.stderr[-3000:]}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    return wall, rss_kb / 1024**2


def prepare(work: Path) -> tuple[Path, Path, Path]:
    from word2scene.models.sd15 import build_random, sd15_configs

    model = work / "sd15-random-diffusers"
    if not (model / "model_index.json").exists():
        sd = build_random(sd15_configs(), seed=0, name="sd15-random")
        for name in ("unet", "vae", "text_encoder"):
            getattr(sd, name).save_pretrained(model / name)
        sd.tokenizer.save_pretrained(model / "tokenizer")
        from diffusers import DDPMScheduler
        DDPMScheduler.from_config({**sd.configs["scheduler"], "_class_name": "DDPMScheduler"}).save_pretrained(model / "scheduler")
        (model / "model_index.json").write_text(json.dumps({
            "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
            "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
            "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
            "scheduler": ["diffusers", "DDPMScheduler"], "safety_checker": [None, None],
            "feature_extractor": [None, None], "requires_safety_checker": False}))
    rows = [json.loads(line) for line in (SHARED / "captions.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["class"] == "airport" and r["split"] == "train"][:8]
    ours, theirs = work / "data-ours", work / "data-theirs"
    for folder in (ours / "airport", theirs):
        folder.mkdir(parents=True, exist_ok=True)
    for r in rows:
        shutil.copy(SHARED / r["file"], ours / r["file"])
        shutil.copy(SHARED / r["file"], theirs / Path(r["file"]).name)
    (ours / "captions.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (theirs / "metadata.jsonl").write_text("\n".join(json.dumps({"file_name": Path(r["file"]).name,
                                                                  "text": r["caption"]}) for r in rows) + "\n")
    return model, ours, theirs


def step_tflop(model: Path, resolution: int, rank: int) -> dict[str, float]:
    """FLOPs (TFLOP) one training image costs on the bench model: the VAE encode and text encoding
    the reference script repeats every step, and the UNet forward + backward with LoRA that both
    trainers do. Their ratio bounds what caching can gain when both run at the same FLOP rate:
    (vae + text + unet) / unet."""
    from word2scene.models.sd15 import load_sd15
    from word2scene.training.lora import TrainConfig, add_lora

    sd = load_sd15(model, dtype=torch.float32)
    add_lora(sd, TrainConfig(rank=rank, alpha=float(rank)))
    image = torch.randn(1, 3, resolution, resolution)
    with torch.no_grad():
        vae = counted_tflop(lambda: sd.vae.encode(image).latent_dist.sample())
        text = counted_tflop(lambda: sd.text_encoder(torch.randint(0, 49407, (1, 77)))[0])
    return {"vae": vae, "text": text, "unet": unet_step_tflop(sd.unet, resolution)}


def fit_vae(kb, steps: int = 300, batch: int = 32) -> tuple[dict, float, float]:
    """The tiny model's VAE fitted to the train split at 64 px (reconstruction MSE + 1e-6 KL, as
    SD's VAE was trained): its random encoder erases image content (GroupNorm removes each image's
    colour; latents of forest and desert agree to three decimals), so nothing class-specific could
    be learnt from its latents. Returns the VAE weights, the scaling factor that gives the latents
    unit variance (SD1.5's 0.18215 was chosen the same way), and the final reconstruction MSE."""
    import numpy as np
    import torch.nn.functional as F

    from word2scene.datasets import scan_dataset
    from word2scene.models.sd15 import build_tiny
    from word2scene.datasets import load_images

    samples = scan_dataset(SHARED, None, "train", kb)
    _, arrays, _ = load_images(samples, 64)
    pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    vae = build_tiny().vae.train().requires_grad_(True)
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    with torch.enable_grad():
        for _ in range(steps):
            x = pixels[torch.randint(0, len(pixels), (batch,), generator=g)]
            posterior = vae.encode(x).latent_dist
            reconstruction = F.mse_loss(vae.decode(posterior.sample(generator=g)).sample, x)
            loss = reconstruction + 1e-6 * posterior.kl().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    vae.eval().requires_grad_(False)
    with torch.no_grad():
        means = torch.cat([vae.encode(chunk).latent_dist.mean for chunk in pixels.split(64)])
    return vae.state_dict(), float(1.0 / means.std()), reconstruction.item()


def tiny_with_vae(vae_state: dict, scaling_factor: float):
    """The built-in tiny model with the fitted VAE and its latent scaling factor."""
    from word2scene.models.sd15 import build_tiny

    sd = build_tiny()
    sd.vae.load_state_dict(vae_state)
    sd.configs = {**sd.configs, "vae": {**sd.configs["vae"], "scaling_factor": scaling_factor}}
    return sd


def learning_signal(steps: int = 300, base_steps: int = 2000, base_modules: str = "kohya",
                    vae_steps: int = 300, modules: str = "attention", lr: float = 1e-3) -> tuple[list[tuple[str, float, float]], float, float]:
    """The tiny model's VAE is first fitted to the images (fit_vae); a base model then learns all
    30 classes (a rank-64 LoRA on the tiny UNet, merged into its weights: a random network cannot
    denoise, so without a base every class would improve alike); then a concept LoRA is trained on
    the airport train split only, and the held-out denoising loss of airport and of other classes
    is compared before and after. Returns the rows, the VAE's reconstruction MSE and its scale."""
    from word2scene.prompts.knowledge import load_knowledge
    from word2scene.concepts.patching import apply_concepts
    from word2scene.training.lora import TrainConfig, denoising_loss, train

    kb = load_knowledge(extra_dirs=[])
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    vae_state, scale, reconstruction = fit_vae(kb, vae_steps)
    base = train(tiny_with_vae(vae_state, scale), SHARED, tmp / "w2s-bench-base.safetensors",
                 TrainConfig(steps=base_steps, resolution=64, rank=64, alpha=64.0, learning_rate=1e-3, batch_size=4,
                             module_set=base_modules, lr_scheduler="cosine"),
                 kb=kb, overwrite=True)
    sd = tiny_with_vae(vae_state, scale)
    apply_concepts(sd, [(base.concept, 1.0, 1.0)])
    sd._originals.clear()  # bake the base in
    cfg = TrainConfig(concepts=["airport"], steps=steps, resolution=64, rank=8, alpha=8.0, learning_rate=lr,
                      module_set=modules)
    rows = [json.loads(line) for line in (SHARED / "captions.jsonl").read_text().splitlines()]
    classes = sorted({r["class"] for r in rows if r["split"] == "heldout"})
    before = {c: denoising_loss(sd, SHARED, cfg, kb, split="heldout", concepts=[c]) for c in classes}
    train(sd, SHARED, tmp / "w2s-bench-signal.safetensors", cfg, kb=kb, overwrite=True)
    after = {c: denoising_loss(sd, SHARED, cfg, kb, split="heldout", concepts=[c]) for c in classes}
    return [(c, before[c], after[c]) for c in classes], reconstruction, scale


def attention_rows(repeats: int = 5, batch: int = 16) -> list[tuple[str, float]]:
    """(setting, median seconds per concept-training step) on random mini weights, LoRA rank 8
    on the attention modules, the trainer's precisions and attention kernels."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    from word2scene.models.diffusion import use_fast_attention
    from word2scene.models.sd15 import build_random, mini_configs
    from word2scene.training.adapters import add_lora
    from word2scene.training.config import TrainConfig

    g = torch.Generator().manual_seed(0)
    rows = []
    for name, dtype, fast in (("fp32 (reference)", torch.float32, False), ("bf16 weights, SDPA", torch.bfloat16, False),
                              ("bf16 weights, use_fast_attention", torch.bfloat16, True)):
        sd = build_random(mini_configs(), 0)
        sd.unet.requires_grad_(False).to(dtype)
        sd.unet.set_attn_processor(AttnProcessor2_0())
        if fast:
            use_fast_attention(sd.unet, "bf16", torch.device("cpu"))
        add_lora(sd, TrainConfig(rank=8, alpha=8))
        x = torch.randn(batch, 4, 16, 16, generator=g).to(dtype)
        t = torch.randint(0, 1000, (batch,), generator=g)
        context = torch.randn(batch, 77, sd.unet.config.cross_attention_dim, generator=g).to(dtype)

        def step():
            sd.unet(x, t, encoder_hidden_states=context).sample.float().pow(2).mean().backward()
        rows.append((name, timed(step, repeats)))
    return rows


def print_attention() -> None:
    rows = attention_rows()
    print(f"\nConcept-training step on mini (random weights, LoRA rank 8, 128 px, batch 16), torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, median of 5 after 2 warm-up steps\n")
    print("| setting | s / step | time vs fp32 |")
    print("|---|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.3f} | {seconds / rows[0][1]:.2f}x |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reference", default=os.environ.get("W2S_DIFFUSERS_LORA_SCRIPT"),
                    help="path of diffusers' examples/text_to_image/train_text_to_image_lora.py")
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--steps", default="2,10")
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--work", default="/tmp/w2s-bench-train")
    ap.add_argument("--only-signal", action="store_true", help="run only the learning-signal part")
    ap.add_argument("--skip-signal", action="store_true", help="skip the learning-signal part")
    ap.add_argument("--signal-steps", type=int, default=300, help="steps of the airport concept LoRA")
    ap.add_argument("--signal-base-steps", type=int, default=2000, help="steps of the all-class base LoRA")
    ap.add_argument("--signal-base-modules", default="kohya", choices=("attention", "kohya"))
    ap.add_argument("--signal-vae-steps", type=int, default=300, help="steps fitting the tiny VAE to the images")
    ap.add_argument("--signal-modules", default="attention", choices=("attention", "kohya"),
                    help="module set of the airport concept LoRA")
    ap.add_argument("--signal-lr", type=float, default=1e-3, help="learning rate of the airport concept LoRA")
    ap.add_argument("--mixed-precision", default="no", choices=("no", "bf16"),
                    help="run both trainers with this mixed precision (bf16 is fast on CPUs with AMX)")
    ap.add_argument("--attention", action="store_true",
                    help="run only the attention-kernel comparison of concept-training steps on mini")
    args = ap.parse_args()
    if args.attention:
        print_attention()
        return
    signal = dict(steps=args.signal_steps, base_steps=args.signal_base_steps, base_modules=args.signal_base_modules,
                  vae_steps=args.signal_vae_steps, modules=args.signal_modules, lr=args.signal_lr)
    if args.only_signal:
        print_signal(**signal)
        return
    n1, n2 = (int(x) for x in args.steps.split(","))
    work = Path(args.work)
    model, ours_data, theirs_data = prepare(work)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    results = {}
    for n in (n1, n2):
        out = work / f"ours-{n}.safetensors"
        results[("ours", n)] = run_measured([sys.executable, "-m", "word2scene", "train", str(ours_data), "--checkpoint",
                                             str(model), "--out", str(out), "--overwrite", "--steps", str(n),
                                             "--resolution", str(args.resolution), "--rank", str(args.rank), "--alpha",
                                             str(args.rank), "--batch", "1", "--augment", "flip",
                                             "--mixed-precision", args.mixed_precision], env)
        if args.reference:
            results[("ref", n)] = run_measured([sys.executable, args.reference, "--pretrained_model_name_or_path",
                                                str(model), "--train_data_dir", str(theirs_data), "--resolution",
                                                str(args.resolution), "--train_batch_size", "1", "--max_train_steps",
                                                str(n), "--rank", str(args.rank), "--output_dir", str(work / f"ref-{n}"),
                                                "--seed", "0", "--dataloader_num_workers", "0", "--random_flip",
                                                "--center_crop", "--learning_rate", "1e-4",
                                                "--mixed_precision", args.mixed_precision], env)
    flops = step_tflop(model, args.resolution, args.rank)
    step_flops = flops["unet"] * 1e12
    peak = matmul_peak(torch.bfloat16 if args.mixed_precision == "bf16" else torch.float32)
    print(f"\nSD1.5 random full size, {args.resolution} px, rank {args.rank}, batch 1, mixed precision "
          f"{args.mixed_precision}, 8 real airport images; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; step time from {n1}- and {n2}-step runs\n")
    print("| measurement | word2scene | diffusers train_text_to_image_lora.py | ratio |")
    print("|---|---|---|---|")
    ours_step = (results[("ours", n2)][0] - results[("ours", n1)][0]) / (n2 - n1)
    ours_mem = max(results[("ours", n)][1] for n in (n1, n2))
    if args.reference:
        ref_step = (results[("ref", n2)][0] - results[("ref", n1)][0]) / (n2 - n1)
        ref_mem = max(results[("ref", n)][1] for n in (n1, n2))
        print(f"| throughput (images/s) | {1 / ours_step:.3f} | {1 / ref_step:.3f} | {ref_step / ours_step:.2f}x |")
        print(f"| peak memory (GiB RSS) | {ours_mem:.2f} | {ref_mem:.2f} | {ours_mem / ref_mem:.2f}x |")
        print(f"| wall time, {n2} steps incl. start-up (s) | {results[('ours', n2)][0]:.1f} | {results[('ref', n2)][0]:.1f} | "
              f"{results[('ref', n2)][0] / results[('ours', n2)][0]:.2f}x |")
    else:
        print(f"| throughput (images/s) | {1 / ours_step:.3f} | (pass --reference) | - |")
        print(f"| peak memory (GiB RSS) | {ours_mem:.2f} | (pass --reference) | - |")
    ceiling = (flops["vae"] + flops["text"] + flops["unet"]) / flops["unet"]
    print(f"\nFLOPs per training image (counted): UNet forward + backward with LoRA {flops['unet']:.3f} TFLOP (both "
          f"trainers); VAE encode {flops['vae']:.3f} + text encoder {flops['text']:.4f} TFLOP (the reference, every "
          f"step). Throughput ceiling of caching at equal FLOP rates: {ceiling:.2f}x")
    print(f"MFU: {step_flops / ours_step / 1e12:.3f} TFLOP/s achieved / {peak:.3f} TFLOP/s measured "
          f"{'bf16' if args.mixed_precision == 'bf16' else 'fp32'} matmul peak = {step_flops / ours_step / 1e12 / peak:.1%}\n")
    if not args.skip_signal:
        print_signal(**signal)


def print_signal(steps: int = 300, base_steps: int = 2000, base_modules: str = "kohya", vae_steps: int = 300,
                 modules: str = "attention", lr: float = 1e-3) -> None:
    rows, reconstruction, scale = learning_signal(steps, base_steps, base_modules, vae_steps, modules, lr)
    print(f"tiny VAE fitted to the train split: {vae_steps} steps, reconstruction MSE {reconstruction:.4f} "
          f"(pixels in [-1, 1]), latent scaling factor {scale:.3f}\n")
    print(f"| held-out class (tiny base: {base_steps} steps, {base_modules} modules; concept LoRA trained on airport, "
          f"{steps} steps, {modules} modules, lr {lr:g}) | loss before | loss after | change |")
    print("|---|---|---|---|")
    changes = {cls: (after - before) / before for cls, before, after in rows}
    for cls, before, after in sorted(rows, key=lambda r: changes[r[0]]):
        name = f"**{cls}** (trained)" if cls == "airport" else cls
        print(f"| {name} | {before:.4f} | {after:.4f} | {changes[cls]:+.3%} |")
    others = [v for c, v in changes.items() if c != "airport"]
    beaten = sum(changes["airport"] < v for v in others)
    print(f"\nThe trained class (airport, {changes['airport']:+.3%}) improves more than {beaten} of the "
          f"{len(others)} other classes (their mean change {sum(others) / len(others):+.3%}).")


if __name__ == "__main__":
    main()
