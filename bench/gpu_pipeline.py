"""The whole Word2Scene-mini pipeline in one prepared run, for a session that is lent a GPU.

Stages, each the project's own CLI command (logged to OUT/logs/<stage>.log, timed in
OUT/timings.json, skipped when its output already exists so that a second call resumes):
1. pretrain: the VAE, then the UNet and text encoder (larger batches and more steps than
   the CPU run), states beside the checkpoint;
2. train Word2Scene-C (all classes) and the paper's 11-concept LoRA on the new base;
3. bench/bench_vae.py (the VAE against the thumbnail) and bench/bench_mini.py (the 11 + 19
   table) on the new files.
Weights and reports land in OUT (the device tool returns what is under $OUT).

    python bench/gpu_pipeline.py --out "$OUT" --device cuda            # H200: about 10 minutes
    python bench/gpu_pipeline.py --out /tmp/p --device cpu --scale tiny  # a smoke test (tests/)

The CPU test runs the tiny scale (the tiny model, 64 px, a handful of steps) so that a lent
machine's minutes are never lost to a broken script.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AID = ROOT.parent / "shared" / "data" / "aid"
RS_SCENES = ROOT.parent / "shared" / "data" / "rs_scenes"
PAPER_11 = ["church", "commercial", "dense residential", "industrial", "medium residential", "park",
            "railway station", "resort", "school", "sparse residential", "square"]

# (pretrain options, concept options, bench options) per scale
SCALES = {
    "h200": (["--vae-steps", "6000", "--vae-batch", "64", "--vae-crop", "128", "--steps", "12000", "--batch", "256",
              "--lr", "1e-3", "--text-token-scale", "20", "--unet-precision", "bf16", "--save-every", "1000",
              "--lr-decay", "cosine", "--latent-norm", "channels"],
             ["--resolution", "128", "--batch", "16", "--epochs", "3", "--lr", "1e-3", "--augment", "none",
              "--modules", "kohya"],
             ["--images", "10", "--steps", "20"]),
    "tiny": (["--model", "tiny", "--resolution", "64", "--vae-steps", "2", "--vae-batch", "2", "--vae-crop", "32",
              "--steps", "2", "--batch", "2", "--text-token-scale", "20", "--save-every", "1", "--warmup", "1",
              "--latent-norm", "channels"],
             ["--resolution", "64", "--batch", "2", "--steps", "2", "--augment", "none", "--rank", "4",
              "--modules", "kohya"],
             ["--images", "1", "--steps", "2", "--size", "64", "--classifier-epochs", "1",
              "--descriptions-per-image", "1"]),
}


def run_stage(name: str, command: list[str], out: Path, done: Path, timings: dict) -> None:
    """Run one stage unless `done` exists; its output goes to out/logs/<name>.log."""
    if done.exists():
        print(f"[{name}] already done ({done.name})", flush=True)
        return
    (out / "logs").mkdir(parents=True, exist_ok=True)
    print(f"[{name}] {' '.join(command)}", flush=True)
    t = time.perf_counter()
    with open(out / "logs" / f"{name}.log", "w") as log:
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    timings[name] = round(time.perf_counter() - t, 1)
    (out / "timings.json").write_text(json.dumps(timings, indent=2))
    if code != 0:
        tail = (out / "logs" / f"{name}.log").read_text()[-2000:]
        raise SystemExit(f"[{name}] failed with exit status {code}:\n{tail}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="folder for weights, reports and logs")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--scale", choices=sorted(SCALES), default="h200")
    ap.add_argument("--dataset", type=Path, default=AID)
    ap.add_argument("--described", type=Path, default=RS_SCENES, help="captioned held-out images for the "
                                                                      "description row ('' to skip)")
    args = ap.parse_args()
    pre, concept, bench = SCALES[args.scale]
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    timings_file = out / "timings.json"
    timings = json.loads(timings_file.read_text()) if timings_file.is_file() else {}
    py = [sys.executable, "-m", "word2scene"]
    base = out / "word2scene-mini.safetensors"
    resume = sorted(out.glob("word2scene-mini.pretrain-*.pt"))
    run_stage("pretrain", py + ["pretrain", str(args.dataset), "--device", args.device, "--out", str(base), *pre,
                                *(["--resume", str(resume[-1])] if resume else [])], out, base, timings)
    model_args = ["--checkpoint", str(base), "--device", args.device]
    concept_c, concept_11 = out / "word2scene-mini-c.safetensors", out / "word2scene-mini-concept.safetensors"
    run_stage("concept_c", py + ["train", str(args.dataset), *model_args, *concept, "--out", str(concept_c)],
              out, concept_c, timings)
    only_11 = [x for c in PAPER_11 for x in ("--concept", c)]
    run_stage("concept_11", py + ["train", str(args.dataset), *model_args, *concept, *only_11, "--out",
                                  str(concept_11)], out, concept_11, timings)
    run_stage("bench_vae", [sys.executable, "bench/bench_vae.py", str(base), "--out", str(out / "bench_vae"),
                            *(["--images", "8"] if args.scale == "tiny" else []), "--dataset", str(args.dataset)],
              out, out / "bench_vae" / "report.md", timings)
    run_stage("bench_mini", [sys.executable, "bench/bench_mini.py", "--checkpoint", str(base), "--concept-11",
                             str(concept_11), "--concept-c", str(concept_c), "--dataset", str(args.dataset),
                             "--described", str(args.described), "--device", args.device,
                             "--out", str(out / "bench_mini"), *bench],
              out, out / "bench_mini" / "report.md", timings)
    print(json.dumps(timings, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
