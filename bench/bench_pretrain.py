"""Throughput of `pretrain` (the Word2Scene-mini base model) on this machine: samples/s and
MFU of the VAE step and the UNet step, in fp32 and bf16 autocast, with the usual CPU levers.

The steps timed are pretrain's own (training.base_model.vae_step / unet_step) on real AID
images, with the mini model's widths. MFU = counted model FLOPs per second (forward +
backward, torch's FlopCounterMode) over the measured matmul peak of the same precision
(the best square product, bench/flops.py). Every row is measured in this one run; the
ratio column is against the fp32 row of the same phase and batch.

The EMA phase times pretrain's EMA update (update_ema) against diffusers' EMAModel (with and
without foreach) on the same UNet and text encoder: the measured reason written at update_ema.

A profile (`--profile`) splits one fp32 and two bf16 UNet steps (diffusers' SDPA attention,
and pretrain's explicit-matmul attention, use_fast_attention) by operator family
(convolution, matmul/linear, attention, GroupNorm/LayerNorm, casts, elementwise, optimizer)
to say where bf16 gains or loses.

Usage:
    python bench/bench_pretrain.py [--repeats 5] [--compile] [--profile] [--threads N] [--phases vae,unet,ema]
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from flops import counted_tflop, matmul_peak, timed  # noqa: E402
from word2scene.datasets import load_images, scan_dataset  # noqa: E402
from word2scene.models.diffusion import use_fast_attention  # noqa: E402
from word2scene.models.sd15 import build_random, mini_configs  # noqa: E402
from word2scene.training.base_model import (LOOK_TEMPLATES, PatchCode, PretrainConfig, _Run,  # noqa: E402
                                            caption_encoder, caption_tokens, look_caption, unet_step,
                                            update_ema, vae_step)

AID = ROOT.parent / "shared" / "data" / "aid"


def make_run(cfg: PretrainConfig, pixels: np.ndarray, channels_last: bool = False, fused: bool = False,
             compiled: bool = False, sdpa: bool = False) -> _Run:
    """A pretraining run on random mini weights, with pretrain's kernels for the precision
    (use_fast_attention) unless `sdpa` keeps diffusers' default attention."""
    sd = build_random(mini_configs(), 0)
    if not sdpa:
        use_fast_attention(sd.unet, cfg.unet_precision, torch.device("cpu"))
    for m in (sd.vae, sd.unet, sd.text_encoder):
        m.requires_grad_(True).train()
        if channels_last and m is not sd.text_encoder:
            m.to(memory_format=torch.channels_last)
    run = _Run(sd, cfg, Path("/nonexistent/x.safetensors"), "bench", {"name": "random weights", "sha256": ""})
    run.latent_scale = 1.0
    run.patch_code = PatchCode(pixels)
    run.ema = run.ema_text = None  # the EMA is the same work in every variant
    if fused:
        run.vae_opt = torch.optim.AdamW(sd.vae.parameters(), lr=cfg.vae_learning_rate, fused=True)
        run.unet_opt = torch.optim.AdamW(sd.unet.parameters(), lr=cfg.learning_rate, weight_decay=0.01, fused=True)
        run.text_opt = torch.optim.AdamW(sd.text_encoder.parameters(), lr=cfg.text_learning_rate, fused=True)
    if compiled:
        sd.unet = torch.compile(sd.unet)
        sd.vae.encoder = torch.compile(sd.vae.encoder)
        sd.vae.decoder = torch.compile(sd.vae.decoder)
    return run


def unet_inputs(run: _Run, concepts: list[str]):
    from diffusers import DDPMScheduler

    sd = run.sd
    n = len(concepts)
    mean = torch.randn(n, 4, 16, 16)
    std = torch.full_like(mean, 0.05)
    tokens = caption_tokens(sd, {""} | {look_caption(c, t) for c in set(concepts) for t in range(len(LOOK_TEMPLATES))})
    encode = caption_encoder(sd, tokens, run.cfg.text_learning_rate > 0)
    return mean, std, encode, DDPMScheduler.from_config(sd.configs["scheduler"])


def phase_tflop(run: _Run, phase: str, pixels, concepts) -> float:
    if phase == "vae":
        return counted_tflop(lambda: vae_step(run, pixels, 0))
    mean, std, encode, schedule = unet_inputs(run, concepts)
    return counted_tflop(lambda: unet_step(run, mean, std, concepts, encode, schedule, 0))


def profile_unet(pixels, concepts, batch: int) -> None:
    from torch.profiler import ProfilerActivity, profile

    families = {"convolution": ("conv",), "matmul/linear": ("addmm", "mm", "bmm", "linear", "matmul", "baddbmm"),
                "attention": ("attention", "softmax", "_scaled_dot"), "norm": ("group_norm", "layer_norm", "native_"),
                "casts/copies": ("to", "_to_copy", "copy_", "contiguous", "clone"),
                "optimizer": ("adam", "_foreach", "lerp")}
    print(f"\nUNet step by operator family (self CPU time, batch {batch}; ms):")
    rows = {}
    for label, precision, sdpa in (("fp32", "fp32", False), ("bf16 SDPA", "bf16", True), ("bf16", "bf16", False)):
        cfg = replace(PretrainConfig(), batch_size=batch, unet_precision=precision)
        run = make_run(cfg, pixels, sdpa=sdpa)
        mean, std, encode, schedule = unet_inputs(run, concepts)
        for k in range(2):
            unet_step(run, mean, std, concepts, encode, schedule, k)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            unet_step(run, mean, std, concepts, encode, schedule, 2)
        totals = {f: 0.0 for f in families} | {"other": 0.0}
        for e in prof.key_averages():
            name = e.key.lower().removeprefix("aten::")
            family = next((f for f, keys in families.items() if any(name.startswith(k) or k in name for k in keys)),
                          "other")
            totals[family] += e.self_cpu_time_total / 1000
        rows[label] = totals
    print("| family | fp32 | bf16, SDPA attention | bf16 (pretrain's kernels) | bf16 SDPA / fp32 | bf16 / fp32 |")
    print("|---|---|---|---|---|---|")
    for family in [*rows["fp32"], "total"]:
        a, b, c = (sum(rows[k].values()) if family == "total" else rows[k][family] for k in ("fp32", "bf16 SDPA", "bf16"))
        print(f"| {family} | {a:.0f} | {b:.0f} | {c:.0f} | {b / a if a else float('nan'):.2f} | "
              f"{c / a if a else float('nan'):.2f} |")


def time_ema(pixels, repeats: int) -> None:
    """update_ema against diffusers' EMAModel over the same parameters (UNet + text encoder)."""
    from diffusers.training_utils import EMAModel

    run = make_run(PretrainConfig(), pixels)
    run.ema = copy.deepcopy(run.sd.unet).requires_grad_(False)  # make_run leaves the EMA out
    run.ema_text = copy.deepcopy(run.sd.text_encoder).requires_grad_(False)
    params = [*run.sd.unet.parameters(), *run.sd.text_encoder.parameters()]
    for p in params:
        p.requires_grad_(True)  # EMAModel updates only trainable parameters
    rows = [("update_ema (pretrain's)", lambda: update_ema(run, 100))]
    for foreach in (False, True):
        ema = EMAModel(params, decay=0.999, foreach=foreach)
        rows.append((f"diffusers EMAModel foreach={foreach}", lambda ema=ema: ema.step(params)))
    print("\n| EMA update | ms/step | vs update_ema |")
    print("|---|---|---|")
    base = None
    for name, fn in rows:
        seconds = timed(fn, repeats * 4)
        base = base or seconds
        print(f"| {name} | {seconds * 1000:.1f} | {base / seconds:.2f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (minutes of compiling)")
    ap.add_argument("--profile", action="store_true", help="split a UNet step by operator family, fp32 vs bf16")
    ap.add_argument("--quick", action="store_true", help="fewer rows (a smoke test)")
    ap.add_argument("--unet-batches", default="32,16,64", help="UNet batch sizes to time (default: 32,16,64)")
    ap.add_argument("--phases", default="vae,unet,ema", help="which phases to time: vae, unet, ema (default: all)")
    args = ap.parse_args()
    wanted = set(args.phases.split(","))
    if args.threads:
        torch.set_num_threads(args.threads)
    samples = scan_dataset(AID, split="train")[::64]
    _, arrays, _ = load_images(samples, 128)
    pixels = np.stack(arrays)
    concepts = [s.concept for s in samples]
    peak = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}; matmul peak fp32 {peak['fp32'] * 1000:.0f} GFLOP/s, "
          f"bf16 {peak['bf16'] * 1000:.0f} GFLOP/s\n")
    variants = [("fp32", {}), ("bf16", {}), ("bf16 SDPA attention", {"sdpa": True}), ("fp32 channels_last", {"channels_last": True}),
                ("bf16 channels_last", {"channels_last": True}), ("fp32 fused AdamW", {"fused": True}),
                ("bf16 fused AdamW", {"fused": True})]
    if args.compile:
        variants += [("fp32 torch.compile", {"compiled": True}), ("bf16 torch.compile", {"compiled": True})]
    phases = [("vae", 16, 64)] + [("unet", int(b), None) for b in args.unet_batches.split(",")]
    if args.quick:
        variants = variants[:3]
    phases = [p for p in phases if p[0] in wanted]
    print("| phase | batch | variant | s/step | samples/s | GFLOP/step | GFLOP/s | MFU | vs fp32 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for phase, batch, crop in phases:
        base_rate = None
        flop = None
        for name, kwargs in variants:
            if kwargs.get("sdpa") and phase == "vae":
                continue  # the choice of attention kernels is the UNet's
            precision = name.split()[0]
            cfg = replace(PretrainConfig(), vae_precision=precision, unet_precision=precision, vae_batch_size=batch,
                          batch_size=batch, vae_crop=crop or 64)
            t_build = time.perf_counter()
            run = make_run(cfg, pixels, **kwargs)
            if flop is None:
                flop = phase_tflop(make_run(replace(cfg, vae_precision="fp32", unet_precision="fp32"), pixels), phase,
                                   pixels, concepts)
            if phase == "vae":
                seconds = timed(lambda: vae_step(run, pixels, 0), args.repeats)
                # samples: crops counted as 128 px image equivalents
                per_step = batch * (cfg.vae_crop / 128) ** 2
            else:
                mean, std, encode, schedule = unet_inputs(run, concepts)
                seconds = timed(lambda: unet_step(run, mean, std, concepts, encode, schedule, 0), args.repeats)
                per_step = batch
            rate = per_step / seconds
            base_rate = base_rate or rate
            note = f" (+{time.perf_counter() - t_build - seconds * (args.repeats + 2):.0f} s compiling)" \
                if kwargs.get("compiled") else ""
            label = f"{phase} ({crop} px crops)" if phase == "vae" else phase
            print(f"| {label} | {batch} | {name}{note} | {seconds:.3f} | {rate:.1f} | {flop * 1000:.1f} | "
                  f"{flop * 1000 / seconds:.0f} | {flop / seconds / peak[precision]:.1%} | {rate / base_rate:.2f} |",
                  flush=True)
    if "ema" in wanted:
        time_ema(pixels, args.repeats)
    if args.profile:
        profile_unet(pixels, concepts, 32)


if __name__ == "__main__":
    main()
