"""Command line: `python -m word2scene COMMAND ...` (also the `word2scene` console script)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..concepts.file import DEFAULT_TRIGGER_WORDS, load_concept, read_concept
from ..concepts.patching import apply_concepts
from ..evaluation.classifier import accuracy, ClassifierConfig, save_classifier, train_classifier
from ..evaluation.scoring import evaluate, EvaluationSettings
from ..evaluation.extractors import load_extractor
from ..evaluation.image_sets import image_set, labels
from ..evaluation.protocol import evaluate_protocol, generate_images, protocol_grid, ProtocolSettings, resolve_concepts
from ..models.sd15 import load_sd15
from ..prompts.expander import expand
from ..prompts.knowledge import _parse_file, load_knowledge
from ..prompts.mining import mine, read_captions
from ..prompts.review import merge_review, write_review
from ..scenes.heatmaps import explain_image, generate_with_heatmaps, masks, normalize, word_scores
from ..scenes.render import grid, mask_image, overlay, save_animation
from ..scenes.sampling import decode, generate, SamplingSettings
from ..scenes.strength_study import parse_strengths, strength_grid
from ..training.lora import loss_curve, train, TrainConfig, TrainingError
from ..training.base_model import pretrain, PretrainConfig
from .. import __version__
from ..errors import InputError
from ..files import write_text_atomic
from ..imagery import save_png


def _positive_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--checkpoint", help="SD1.x checkpoint: .safetensors/.ckpt single file or a diffusers folder")
    g.add_argument("--model", default="tiny", help="built-in model when no checkpoint is given (default: tiny)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1 (default: cpu)")
    p.add_argument("--half", action="store_true", help="run the model in float16 (GPU)")


def _add_concept_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--concept", action="append", default=[], metavar="FILE",
                   help="concept (LoRA) .safetensors; repeat to stack concepts")
    p.add_argument("--strength", action="append", type=float, default=[], metavar="S",
                   help="model strength per --concept (default: the file's recommended strength)")
    p.add_argument("--strength-clip", action="append", type=float, default=[], metavar="S",
                   help="text-encoder strength per --concept (default: same as --strength)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="word2scene", description="Remote-sensing scenes from one word "
                                     "(Stable Diffusion 1.5 + concept LoRA), offline.")
    parser.add_argument("--version", action="version", version=f"word2scene {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="one word -> one remote-sensing scene image (PNG)")
    g.add_argument("word", help="scene concept, e.g. airport or 'dense residential'")
    _add_model_args(g)
    _add_concept_args(g)
    g.add_argument("--steps", type=_positive_int, default=30)
    g.add_argument("--cfg", type=float, default=7.0)
    g.add_argument("--seed", type=_positive_int, default=0)
    g.add_argument("--width", type=_positive_int, default=512)
    g.add_argument("--height", type=_positive_int, default=512)
    g.add_argument("--style", default="word2scene", choices=("word2scene", "descriptive", "plain"),
                   help="prompt style of the scene prompt expander (default: word2scene, the paper's form)")
    g.add_argument("--detail", type=int, default=1, choices=range(4), help="detail level 0-3 for descriptive/plain")
    g.add_argument("--negative", default=None, help="negative prompt (default: the expander's; empty for word2scene)")
    g.add_argument("--out", help="PNG to write (default: outputs/<word>_<seed>_NNNNN.png, never overwriting)")
    g.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    g.add_argument("--process", metavar="FILE", help="also write the denoising process (x0 prediction) as .webp or .gif")
    g.add_argument("--process-every", type=int, default=0, help="frame every K steps (default: steps/10)")

    h = sub.add_parser("heatmap", help="cross-attention heat maps: which words drive which pixels")
    h.add_argument("prompt", help="the prompt (ComfyUI '(word:1.2)' weights allowed)")
    _add_model_args(h)
    _add_concept_args(h)
    h.add_argument("--image", help="explain this real image instead of generating one")
    h.add_argument("--words", default="", help="comma-separated words or phrases (default: every content word)")
    h.add_argument("--timesteps", default="100,300,500", help="with --image: DDPM timesteps to noise at")
    h.add_argument("--threshold", type=float, default=0.4, help="mask threshold on the normalised map")
    h.add_argument("--steps", type=_positive_int, default=30)
    h.add_argument("--cfg", type=float, default=7.0)
    h.add_argument("--seed", type=_positive_int, default=0)
    h.add_argument("--width", type=_positive_int, default=512)
    h.add_argument("--height", type=_positive_int, default=512)
    h.add_argument("--negative", default="")
    h.add_argument("--process", metavar="FILE", help="the process as .webp/.gif: x0 prediction and the word maps forming")
    h.add_argument("--process-every", type=int, default=0, help="frame every K steps (default: steps/10)")
    h.add_argument("--out", required=True, help="folder for overlays, grid, masks and scores.json")

    p = sub.add_parser("prompt", help="expand scene word(s) into a prompt (the scene prompt expander)")
    p.add_argument("words", help="a scene word or phrase, or several separated by commas")
    p.add_argument("--style", default="word2scene", help="word2scene | descriptive | plain")
    p.add_argument("--detail", type=int, default=1, help="detail level 0-3")
    p.add_argument("--seed", type=_positive_int, default=0)
    p.add_argument("--trigger-words", default=None, help="comma-separated (default: gs, geographic scene)")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    c = sub.add_parser("concepts", help="the RS concept knowledge base: list, check, mine, merge")
    csub = c.add_subparsers(dest="concepts_command", required=True)
    cl = csub.add_parser("list", help="list the concepts (built-in plus user files)")
    cl.add_argument("--json", action="store_true")
    cc = csub.add_parser("check", help="check a user knowledge file")
    cc.add_argument("file")
    cm = csub.add_parser("mine", help="mine element/relation phrases per class from captions")
    cm.add_argument("captions", help="captions.jsonl, or a folder of class folders with .txt captions (kohya)")
    cm.add_argument("--out", required=True, help="review YAML to write")
    cm.add_argument("--top", type=int, default=12, help="phrases per kind and class (default 12)")
    cm.add_argument("--overwrite", action="store_true")
    cg = csub.add_parser("merge", help="merge an expert-reviewed file into a user knowledge file")
    cg.add_argument("review")
    cg.add_argument("--into", required=True, help="user knowledge YAML (created or updated)")

    t = sub.add_parser("train", help="train a concept LoRA on a folder of RS images",
                       description="Train a concept LoRA. Several GPUs or machines: "
                       "accelerate launch -m word2scene train DATASET ... (same options).")
    t.add_argument("dataset", help="captions.jsonl folder, kohya '10_name' folders, class folders, or a flat folder")
    _add_model_args(t)
    t.add_argument("--concept", action="append", default=[], metavar="WORD",
                   help="concept word(s): restricts class folders to these, or names a flat folder's concept")
    t.add_argument("--trigger-words", default="gs, geographic scene", help="comma-separated (paper: gs, geographic scene)")
    t.add_argument("--out", required=True, help="concept .safetensors to write (never overwritten without --overwrite)")
    t.add_argument("--overwrite", action="store_true")
    t.add_argument("--steps", type=int, default=1000)
    t.add_argument("--epochs", type=int, default=0, help="train for whole epochs instead of --steps")
    t.add_argument("--rank", type=int, default=16)
    t.add_argument("--alpha", type=float, default=16.0)
    t.add_argument("--rslora", action="store_true", help="rank-stabilised scaling alpha/sqrt(rank)")
    t.add_argument("--modules", default="attention", choices=("attention", "kohya"),
                   help="attention: to_q/k/v/out (paper, 128 modules); kohya: + proj_in/out and ff (192)")
    t.add_argument("--text-encoder", action="store_true", help="also train a text-encoder LoRA")
    t.add_argument("--lr", type=float, default=1e-4)
    t.add_argument("--lr-scheduler", default="constant", help="constant, linear, cosine, constant_with_warmup, ...")
    t.add_argument("--warmup", type=int, default=0)
    t.add_argument("--batch", type=int, default=1)
    t.add_argument("--grad-accumulation", type=int, default=1)
    t.add_argument("--max-grad-norm", type=float, default=1.0)
    t.add_argument("--min-snr-gamma", type=float, default=0.0, help="min-SNR weighting (e.g. 5); 0 = off")
    t.add_argument("--noise-offset", type=float, default=0.0)
    t.add_argument("--caption-dropout", type=float, default=0.0)
    t.add_argument("--resolution", type=int, default=512)
    t.add_argument("--augment", default="dihedral", choices=("none", "flip", "dihedral"))
    t.add_argument("--bands", default="1,2,3", help="1-based bands of multi-band images (default 1,2,3)")
    t.add_argument("--split", default="train", help="captions.jsonl split to use; 'all' for every row")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--save-every", type=int, default=0, help="write a resumable state every N steps beside --out")
    t.add_argument("--keep-states", type=int, default=3)
    t.add_argument("--resume", help="a state file written by --save-every")
    t.add_argument("--preview-every", type=int, default=0, help="write preview images every N steps")
    t.add_argument("--preview-steps", type=int, default=20)
    t.add_argument("--gradient-checkpointing", action="store_true")
    t.add_argument("--mixed-precision", default="no", choices=("no", "fp16", "bf16"),
                   help="bf16/fp16 autocast with the frozen weights stored in half precision (bf16 also on CPU)")
    t.add_argument("--deterministic", action="store_true",
                   help="bit-reproducible runs: deterministic kernels and one CPU thread (slower)")

    pt = sub.add_parser("pretrain", help="train the Word2Scene-mini base model from scratch on a scene dataset",
                        description="Fit the VAE, then train the UNet on every class in the shifted 'old aerial "
                        "photograph' look (the base model the concept LoRA then corrects).")
    pt.add_argument("dataset", help="captions.jsonl folder, kohya '10_name' folders or class folders (every class is used)")
    pt.add_argument("--out", required=True, help="checkpoint .safetensors to write (fp16 single file)")
    pt.add_argument("--overwrite", action="store_true")
    pt.add_argument("--vae-steps", type=int, default=600)
    pt.add_argument("--steps", type=int, default=2000, help="UNet steps")
    pt.add_argument("--batch", type=int, default=32, help="UNet batch size")
    pt.add_argument("--vae-batch", type=int, default=16)
    pt.add_argument("--lr", type=float, default=5e-4, help="UNet learning rate")
    pt.add_argument("--vae-lr", type=float, default=1e-3)
    pt.add_argument("--warmup", type=int, default=100)
    pt.add_argument("--resolution", type=int, default=128)
    pt.add_argument("--split", default="train", help="captions.jsonl split to use; 'all' for every row")
    pt.add_argument("--seed", type=int, default=0)
    pt.add_argument("--save-every", type=int, default=200, help="write a resumable state every N steps beside --out")
    pt.add_argument("--keep-states", type=int, default=2)
    pt.add_argument("--resume", help="a state file written by --save-every")

    gr = sub.add_parser("grid", help="epoch x strength grid: the same prompt and seed across strengths and concept files")
    gr.add_argument("word", help="scene word(s), expanded like generate")
    _add_model_args(gr)
    gr.add_argument("--concept", action="append", default=[], metavar="FILE", required=True,
                    help="concept file per row (e.g. one per epoch); repeat")
    gr.add_argument("--strengths", default="0,0.25,0.5,0.75,1", help="columns (default 0,0.25,0.5,0.75,1)")
    gr.add_argument("--style", default="word2scene", choices=("word2scene", "descriptive", "plain"))
    gr.add_argument("--detail", type=int, default=1, choices=range(4))
    gr.add_argument("--steps", type=_positive_int, default=30)
    gr.add_argument("--cfg", type=float, default=7.0)
    gr.add_argument("--seed", type=_positive_int, default=0)
    gr.add_argument("--width", type=_positive_int, default=512)
    gr.add_argument("--height", type=_positive_int, default=512)
    gr.add_argument("--out", required=True, help="grid PNG")
    gr.add_argument("--overwrite", action="store_true")

    def add_feature_args(p):
        p.add_argument("--features", metavar="FILE", help="feature extractor weights for GSHPS and FID/KID: a classifier "
                       "from `classifier train`, torchvision VGG16/Inception-v3, or pytorch-fid's FID Inception")
        p.add_argument("--gshps-features", metavar="FILE", help="GSHPS features (the paper: a VGG16 fine-tuned on scenes)")
        p.add_argument("--fid-features", metavar="FILE", help="FID/KID features (e.g. pt_inception-2015-12-05.pth)")
        p.add_argument("--clip", metavar="DIR", help="a local transformers CLIP folder: adds CLIP score")
        p.add_argument("--classifier-oa", action="store_true",
                       help="train scene classifiers on generated (test on real) and on real (test on generated)")
        p.add_argument("--oa-epochs", type=int, default=20, help="epochs of those classifiers (default 20)")
        p.add_argument("--reference-split", default="all", help="captions.jsonl split of the reference (default all)")
        p.add_argument("--kid-subsets", type=int, default=100)
        p.add_argument("--batch", type=int, default=32)

    ev = sub.add_parser("evaluate", help="GSHPS, FID, KID, CLIP score and classifier accuracy of generated vs real images")
    ev.add_argument("--generated", required=True, help="folder of generated images (class folders for per-class results)")
    ev.add_argument("--reference", required=True, help="folder of real images (class folders or captions.jsonl)")
    add_feature_args(ev)
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--out", help="write the report here (.md markdown, .json results)")

    pr = sub.add_parser("protocol", help="the paper's protocol: images per concept with fixed seeds, evaluation, grid",
                        description="Generate N images per concept (the paper's 11 trained + 19 zero-shot concepts) "
                        "with fixed seeds, evaluate them per concept and by split, and draw the strength x epochs grid. "
                        "Several GPUs or machines: accelerate launch -m word2scene protocol ... (same options); "
                        "a rerun skips images already written.")
    _add_model_args(pr)
    pr.add_argument("--concept", metavar="FILE", help="the concept (LoRA) file; without it, vanilla SD1.5")
    pr.add_argument("--out", required=True, help="output folder: images/<concept>/<seed>.png, report.md, results.json, grid.png")
    pr.add_argument("--reference", help="real images per class (e.g. shared/data/rs_scenes); without it no evaluation")
    pr.add_argument("--concepts", default="", help="comma-separated words, or trained / zero-shot (default: all 30)")
    pr.add_argument("--images", type=_positive_int, default=10, help="images per concept (default 10)")
    pr.add_argument("--seed", type=_positive_int, default=0, help="image k of each concept uses seed + k")
    pr.add_argument("--strength", type=float, default=1.0)
    pr.add_argument("--steps", type=_positive_int, default=30)
    pr.add_argument("--cfg", type=float, default=7.0)
    pr.add_argument("--size", type=_positive_int, default=512, help="image side in pixels (default 512)")
    pr.add_argument("--grid-concept", action="append", default=[], metavar="FILE",
                    help="grid rows: concept files, e.g. one per epoch (default: --concept)")
    pr.add_argument("--grid-word", default="church")
    pr.add_argument("--grid-strengths", default="0,0.25,0.5,0.75,1")
    pr.add_argument("--no-grid", action="store_true")
    add_feature_args(pr)
    pr.set_defaults(device="auto")

    cf = sub.add_parser("classifier", help="scene classifiers: train one offline, test its accuracy")
    cfs = cf.add_subparsers(dest="action", required=True)
    ct = cfs.add_parser("train", help="train a scene classifier on class folders / captions.jsonl")
    ct.add_argument("data", help="real images with classes (e.g. shared/data/rs_scenes)")
    ct.add_argument("--out", required=True, help="classifier .safetensors (use as --features)")
    ct.add_argument("--overwrite", action="store_true")
    ct.add_argument("--split", default="train", help="captions.jsonl split (default train; 'all' for every row)")
    ct.add_argument("--arch", default="scene-cnn", choices=("scene-cnn", "vgg16", "inception-v3"))
    ct.add_argument("--init", metavar="FILE", help="start from these weights (vgg16/inception: ImageNet weights)")
    ct.add_argument("--width", type=int, default=32, help="scene-cnn first-stage channels (default 32)")
    ct.add_argument("--size", type=int, default=112, help="scene-cnn input side in pixels (default 112)")
    ct.add_argument("--epochs", type=int, default=30)
    ct.add_argument("--batch", type=int, default=32)
    ct.add_argument("--lr", type=float, default=2e-3)
    ct.add_argument("--seed", type=int, default=0)
    ct.add_argument("--device", default="cpu", help="where the classifier trains, e.g. cpu, cuda (default: cpu)")
    cte = cfs.add_parser("test", help="overall and per-class accuracy of a classifier")
    cte.add_argument("data", help="real images with classes")
    cte.add_argument("--classifier", required=True, help="classifier .safetensors")
    cte.add_argument("--split", default="heldout", help="captions.jsonl split (default heldout; 'all' for every row)")

    i = sub.add_parser("info", help="print a concept file's metadata")
    i.add_argument("concept", help="concept (LoRA) .safetensors")
    i.add_argument("--json", action="store_true", help="print the metadata as one JSON object")
    return parser


def _load_concepts(args) -> list:
    applied = []
    for n, path in enumerate(args.concept):
        concept = load_concept(path, "--concept")
        strength = args.strength[n] if n < len(args.strength) else concept.info.recommended_strength
        strength_clip = args.strength_clip[n] if n < len(args.strength_clip) else strength
        applied.append((concept, strength, strength_clip))
    if len(args.strength) > len(args.concept):
        raise InputError("--strength", "given more often than --concept; give one per concept")
    return applied


def _default_out(word: str, seed: int) -> Path:
    stem = "".join(c if c.isalnum() else "_" for c in word.strip().lower()).strip("_") or "scene"
    folder = Path("outputs")
    n = 1
    while (folder / f"{stem}_{seed}_{n:05d}.png").exists():
        n += 1
    return folder / f"{stem}_{seed}_{n:05d}.png"


def cmd_generate(args) -> int:
    import torch


    word = args.word.strip()
    if not word:
        raise InputError("word", "is empty; give a scene word such as airport")
    settings = SamplingSettings(steps=args.steps, cfg=args.cfg, seed=args.seed, width=args.width,
                                height=args.height).check()
    applied = _load_concepts(args)
    out = Path(args.out) if args.out else _default_out(word, args.seed)
    if out.exists() and not args.overwrite:
        raise InputError("--out", f"{out} exists; pass --overwrite to replace it")
    sd = load_sd15(args.checkpoint, args.model, torch.float16 if args.half else torch.float32).to(args.device)
    apply_concepts(sd, applied)
    triggers = applied[0][0].info.trigger_words if applied else list(DEFAULT_TRIGGER_WORDS)
    expansion = expand(word, args.style, args.detail, args.seed, triggers, _knowledge(), sd.tokenizer)
    prompt = expansion.positive
    settings.negative = expansion.negative if args.negative is None else args.negative
    frames = []
    every = args.process_every or max(1, settings.steps // 10)
    progress = _progress(settings.steps)

    def on_step(step, total, latents, x0):
        progress(step, total)
        if args.process and (step % every == 0 or step == total):
            frames.append(decode(sd, x0)[0])
    image = generate(sd, prompt, settings, on_step=on_step)
    if args.process:
        save_animation(frames, args.process)
    params = {"prompt": prompt, **settings.as_dict(), "sampler": "DDIM", "model": sd.source, "style": args.style,
              "concepts": [{"file": str(c.path), "strength_model": s, "strength_clip": sc} for c, s, sc in applied]}
    save_png(image, out, params, overwrite=args.overwrite)
    print(f"wrote {out} ({image.width}x{image.height}) prompt: {prompt!r}")
    return 0


def _progress(total: int):
    def on_step(step: int, _total: int, *_latents) -> None:
        if sys.stderr.isatty() or step == total:
            print(f"\rsampling {step}/{total}", end="\n" if step == total else "", file=sys.stderr, flush=True)
    return on_step


def _safe_stem(text: str) -> str:
    return "_".join("".join(c if c.isalnum() else " " for c in text.lower()).split()) or "word"


def cmd_heatmap(args) -> int:
    import torch
    from PIL import Image


    words = [w.strip() for w in args.words.split(",") if w.strip()]
    applied = _load_concepts(args)
    out = Path(args.out)
    sd = load_sd15(args.checkpoint, args.model, torch.float16 if args.half else torch.float32).to(args.device)
    apply_concepts(sd, applied)
    frames = []
    if args.image:
        path = Path(args.image)
        if not path.is_file():
            raise InputError("--image", f"{path} does not exist")
        try:
            timesteps = [int(t) for t in args.timesteps.split(",") if t.strip()]
        except ValueError:
            raise InputError("--timesteps", f"{args.timesteps!r}; give integers like 100,300,500") from None
        with Image.open(path) as im:
            image, heat = explain_image(sd, im.convert("RGB"), args.prompt, timesteps, args.seed)
    else:
        settings = SamplingSettings(steps=args.steps, cfg=args.cfg, seed=args.seed, width=args.width,
                                    height=args.height, negative=args.negative).check()
        every = (args.process_every or max(1, settings.steps // 10)) if args.process else 0
        image, heat, frames = generate_with_heatmaps(sd, args.prompt, settings, every, words)
    labels, maps = heat.word_maps(words)
    shown = normalize(maps)[0]
    m = masks(maps, args.threshold)[0]
    out.mkdir(parents=True, exist_ok=True)
    save_png(image, out / "image.png", overwrite=True)
    overlays = []
    for i, label in enumerate(labels):
        overlays.append(overlay(image, shown[i], label))
        save_png(overlays[-1], out / f"overlay_{i:02d}_{_safe_stem(label)}.png", overwrite=True)
        save_png(mask_image(m[i]), out / f"mask_{i:02d}_{_safe_stem(label)}.png", overwrite=True)
    save_png(grid(overlays), out / "grid.png", overwrite=True)
    scores = {"prompt": args.prompt, "words": labels, "scores": word_scores(labels, maps, args.threshold),
              "threshold": args.threshold, "passes": heat.passes, "note": heat.note,
              "capture_bytes": heat.capture.nbytes()}
    (out / "scores.json").write_text(json.dumps(scores, indent=2, ensure_ascii=False))
    if args.process and frames:
        panels = [grid([x0] + [overlay(x0, maps_[j], lab) for j, lab in enumerate(labs)], columns=len(labs) + 1)
                  for x0, labs, maps_ in frames]
        save_animation(panels, args.process)
    note = f" ({heat.note})" if heat.note else ""
    print(f"wrote {len(labels)} heat maps to {out}: {', '.join(labels)}{note}")
    return 0


def _knowledge():
    kb = load_knowledge()
    for problem in kb.problems:
        print(f"word2scene: warning: skipped a user knowledge file: {problem}", file=sys.stderr)
    return kb


def cmd_prompt(args) -> int:
    triggers = None if args.trigger_words is None else [t for t in args.trigger_words.split(",")]
    expansion = expand(args.words, args.style, args.detail, args.seed, triggers, _knowledge())
    if args.json:
        print(json.dumps(expansion.as_dict(), ensure_ascii=False))
    else:
        print(f"positive: {expansion.positive}\nnegative: {expansion.negative}\n{expansion.report()}")
    return 0


def cmd_concepts(args) -> int:
    if args.concepts_command == "list":
        kb = _knowledge()
        rows = [{"id": c.id, "name": c.name, "paper": c.paper, "datasets": c.datasets, "aliases": c.aliases,
                 "source": c.source} for c in sorted(kb.concepts.values(), key=lambda c: c.id)]
        if args.json:
            print(json.dumps(rows, ensure_ascii=False))
        else:
            for r in rows:
                print(f"{r['id']:<24} {r['paper']:<10} {', '.join(r['datasets'])}")
        return 0
    if args.concepts_command == "check":
        _parse_file(Path(args.file))
        kb = load_knowledge(extra_dirs=[], files=[Path(args.file)], strict=True)
        print(f"{args.file}: ok ({len(kb.concepts)} concepts with the built-in ones)")
        return 0
    if args.concepts_command == "mine":
        mined = mine(read_captions(args.captions), top=args.top)
        out = write_review(mined, _knowledge(), args.out, args.captions, overwrite=args.overwrite)
        total = sum(len(v) for v in mined.values())
        print(f"wrote {out}: {total} proposals for {len(mined)} classes; mark each adopt/amend/annihilate, then "
              f"`python -m word2scene concepts merge {out} --into my_concepts.yaml`")
        return 0

    counts = merge_review(args.review, args.into, _knowledge())
    print(f"merged into {args.into}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def cmd_train(args) -> int:
    try:
        bands = tuple(int(b) for b in args.bands.split(","))
    except ValueError:
        raise InputError("--bands", f"{args.bands!r}; give 1-based band numbers like 1,2,3") from None
    if len(bands) != 3 or min(bands) < 1:
        raise InputError("--bands", f"{args.bands!r}; give three 1-based band numbers like 4,3,2")
    cfg = TrainConfig(concepts=args.concept, trigger_words=[w.strip() for w in args.trigger_words.split(",") if w.strip()],
                      steps=args.steps, epochs=args.epochs, rank=args.rank, alpha=args.alpha, rslora=args.rslora,
                      module_set=args.modules, text_encoder=args.text_encoder, learning_rate=args.lr,
                      lr_scheduler=args.lr_scheduler, warmup_steps=args.warmup, batch_size=args.batch,
                      grad_accumulation=args.grad_accumulation, max_grad_norm=args.max_grad_norm,
                      min_snr_gamma=args.min_snr_gamma, noise_offset=args.noise_offset,
                      caption_dropout=args.caption_dropout, resolution=args.resolution, augment=args.augment,
                      bands=bands, split=None if args.split == "all" else args.split, seed=args.seed,
                      save_every=args.save_every, keep_states=args.keep_states, preview_every=args.preview_every,
                      preview_steps=args.preview_steps, gradient_checkpointing=args.gradient_checkpointing,
                      mixed_precision=args.mixed_precision).check()
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise InputError("--out", f"{out} exists; pass --overwrite to replace it")
    import torch

    if args.deterministic:
        torch.use_deterministic_algorithms(True)
        if args.device == "cpu":
            torch.set_num_threads(1)
    # frozen weights straight in half precision for mixed-precision training (one copy in memory)
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.mixed_precision, torch.float32)
    sd = load_sd15(args.checkpoint, args.model, half)
    bar = _TrainBar()
    previews = out.with_name(out.stem + ".previews")

    def on_preview(step, images):
        for n, image in enumerate(images):
            save_png(image, previews / f"step_{step:06d}_{n}.png", overwrite=True)

    try:
        result = train(sd, args.dataset, out, cfg, kb=_knowledge(), resume=args.resume, overwrite=args.overwrite,
                       device=args.device, on_progress=bar.update, on_preview=on_preview,
                       release_unused=True)
    except TrainingError as exc:
        print(f"word2scene: error: {exc}", file=sys.stderr)
        return 1
    finally:
        bar.close()
    save_png(loss_curve(result.losses), out.with_name(out.stem + ".loss.png"), overwrite=True)
    skipped = result.summary["skipped_images"]
    print(f"wrote {out}: {result.summary['steps']} steps on {result.summary['images']} images, final loss "
          f"{result.summary['final_loss']:.4f}" + (f"; skipped {len(skipped)} unreadable: {', '.join(skipped)}" if skipped else ""))
    return 0


class _TrainBar:
    """tqdm bar with step, loss and ETA."""

    def __init__(self):
        self.bar, self.phase = None, None

    def update(self, p) -> None:
        from tqdm import tqdm

        phase = getattr(p, "phase", None)  # pretraining has two phases, each with its own bar
        if self.bar is not None and phase != self.phase:
            self.close()
        if self.bar is None:
            self.bar, self.phase = tqdm(total=p.total, initial=p.step - 1, unit="step", dynamic_ncols=True, desc=phase), phase
        self.bar.update(p.step - self.bar.n)
        if hasattr(p, "lr"):
            self.bar.set_postfix(loss=f"{p.loss:.4f}", lr=f"{p.lr:.2e}", img_s=f"{p.images_per_second:.2f}")
        else:
            self.bar.set_postfix(loss=f"{p.loss:.4f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def cmd_pretrain(args) -> int:
    cfg = PretrainConfig(vae_steps=args.vae_steps, unet_steps=args.steps, batch_size=args.batch,
                         vae_batch_size=args.vae_batch, learning_rate=args.lr, vae_learning_rate=args.vae_lr,
                         warmup_steps=args.warmup, resolution=args.resolution,
                         split=None if args.split == "all" else args.split, seed=args.seed,
                         save_every=args.save_every, keep_states=args.keep_states).check()
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise InputError("--out", f"{out} exists; pass --overwrite to replace it")
    bar = _TrainBar()
    try:
        pretrain(args.dataset, out, cfg, kb=_knowledge(), resume=args.resume, overwrite=args.overwrite,
                 on_progress=bar.update)
    except KeyboardInterrupt:
        bar.close()
        print(f"word2scene: stopped; resume with --resume on the newest {out.stem}.pretrain-*.pt beside {out}",
              file=sys.stderr)
        return 130
    finally:
        bar.close()
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)")
    return 0


def cmd_grid(args) -> int:
    import torch


    strengths = parse_strengths(args.strengths)
    settings = SamplingSettings(steps=args.steps, cfg=args.cfg, seed=args.seed, width=args.width, height=args.height).check()
    concepts = [load_concept(path, "--concept") for path in args.concept]
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise InputError("--out", f"{out} exists; pass --overwrite to replace it")
    sd = load_sd15(args.checkpoint, args.model, torch.float16 if args.half else torch.float32).to(args.device)
    expansion = expand(args.word, args.style, args.detail, args.seed, concepts[0].info.trigger_words, _knowledge(), sd.tokenizer)
    settings.negative = expansion.negative
    image, _ = strength_grid(sd, expansion.positive, concepts, strengths, settings)
    save_png(image, out, {"prompt": expansion.positive, **settings.as_dict(), "strengths": strengths,
                          "concepts": [str(c.path) for c in concepts]}, overwrite=args.overwrite)
    print(f"wrote {out}: {len(concepts)} concept(s) x {len(strengths)} strengths, prompt {expansion.positive!r}")
    return 0


def _split(value: str) -> str | None:
    return None if value == "all" else value


def _evaluation_settings(args):
    return EvaluationSettings(features=args.features, gshps_features=args.gshps_features, fid_features=args.fid_features,
                              clip=args.clip, classifier_oa=args.classifier_oa,
                              classifier=ClassifierConfig(epochs=args.oa_epochs), kid_subsets=args.kid_subsets,
                              batch_size=args.batch, device=getattr(args, "device", "cpu"))


def cmd_evaluate(args) -> int:
    generated = image_set(args.generated, "--generated")
    reference = image_set(args.reference, "--reference", _split(args.reference_split))
    report = evaluate(generated, reference, _evaluation_settings(args))
    text = report.to_markdown()
    if args.out:
        out = Path(args.out)
        write_text_atomic(out, report.to_json() if out.suffix.lower() == ".json" else text, overwrite=True)
    print(text, end="")
    return 0


def cmd_protocol(args) -> int:
    import torch
    from accelerate import PartialState


    kb = _knowledge()
    settings = ProtocolSettings(
        concepts=[w.strip() for w in args.concepts.split(",") if w.strip()], images_per_concept=args.images,
        seed=args.seed, strength=args.strength, grid=not args.no_grid, grid_word=args.grid_word,
        grid_strengths=parse_strengths(args.grid_strengths),
        sampling=SamplingSettings(steps=args.steps, cfg=args.cfg, width=args.size, height=args.size).check())
    concepts = resolve_concepts(kb, settings.concepts)
    reference = image_set(args.reference, "--reference", _split(args.reference_split)) if args.reference else None
    evaluation = _evaluation_settings(args) if reference else None
    if reference is not None:  # before generating anything: the reference covers the concepts, the weights load
        missing = sorted(set(concepts) - set(labels(reference)))
        if missing:
            raise InputError("--reference", f"no images of {missing} in {args.reference} (class folders or "
                                            f"captions.jsonl classes named like the concepts, e.g. {concepts[0]})")
        for name in ("features", "gshps_features", "fid_features"):
            path = getattr(args, name)
            if path:
                load_extractor(path, "--" + name.replace("_", "-"))  # kept loaded for the evaluation
    concept = load_concept(args.concept, "--concept") if args.concept else None
    grid_concepts = [load_concept(p, "--grid-concept") for p in args.grid_concept] or ([concept] if concept else [])
    # auto: each worker's own accelerator (accelerate launch), else the CPU; gloo across CPU workers (torchrun)
    state = PartialState(cpu=args.device == "cpu" or (args.device == "auto" and not torch.cuda.is_available()))
    device = state.device if args.device == "auto" else args.device
    if evaluation is not None:
        evaluation.device = str(device)
    sd = load_sd15(args.checkpoint, args.model, torch.float16 if args.half else torch.float32).to(device)
    total = len(concepts) * settings.images_per_concept
    done = [0]

    def on_image(path: Path, written: bool) -> None:
        done[0] += 1
        if written or done[0] == 1:
            print(f"[worker {state.process_index}] {done[0]} of its share of {total}: {path}", file=sys.stderr)
    written, skipped = generate_images(sd, kb, concept, settings, args.out, (state.process_index, state.num_processes),
                                       on_image)
    print(f"[worker {state.process_index}] wrote {written} images, skipped {skipped} already present", file=sys.stderr)
    state.wait_for_everyone()
    if not state.is_main_process:
        return 0
    if settings.grid and grid_concepts:
        path = protocol_grid(sd, kb, grid_concepts, settings, args.out)
        print(f"grid: {path or Path(args.out) / 'grid.png'}{'' if path else ' (already present)'}", file=sys.stderr)
    if reference is not None:
        print(evaluate_protocol(kb, settings, args.out, reference, evaluation), end="")
    return 0


def cmd_classifier(args) -> int:
    if args.action == "test":
        items = image_set(args.data, "data", _split(args.split))
        result = accuracy(load_extractor(args.classifier, "--classifier"), items)
        print(f"overall accuracy {result.overall:.1%} on {result.images} images")
        for cls, value in result.per_class.items():
            print(f"  {cls}: {value:.0%}")
        return 0
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise InputError("--out", f"{out} exists; pass --overwrite to replace it")
    items = image_set(args.data, "data", _split(args.split))
    config = ClassifierConfig(arch=args.arch, width=args.width, input_size=args.size, epochs=args.epochs,
                              batch_size=args.batch, learning_rate=args.lr, seed=args.seed, init=args.init)

    def on_epoch(epoch, epochs, loss):
        print(f"epoch {epoch}/{epochs} loss {loss:.4f}", file=sys.stderr)
    classifier = train_classifier(items, config, "data", on_epoch, device=args.device)
    save_classifier(classifier, out, overwrite=args.overwrite)
    print(f"wrote {out}: {classifier.arch}, {len(classifier.classes)} classes, {len(items)} images")
    return 0


def cmd_info(args) -> int:
    from dataclasses import asdict


    concept = read_concept(args.concept, "concept")
    if args.json:
        print(json.dumps({**asdict(concept.info), "modules": len(concept.lora)}, ensure_ascii=False))
    else:
        print(concept.describe())
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"generate": cmd_generate, "info": cmd_info, "prompt": cmd_prompt,
                "concepts": cmd_concepts, "train": cmd_train, "pretrain": cmd_pretrain, "heatmap": cmd_heatmap,
                "grid": cmd_grid, "evaluate": cmd_evaluate, "protocol": cmd_protocol,
                "classifier": cmd_classifier}[args.command](args)
    except InputError as exc:
        print(f"word2scene: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
