"""Commands that make scenes: generate, heatmap, grid, prompt."""
from __future__ import annotations

import json
from pathlib import Path

from ..concepts.file import load_concept
from ..concepts.patching import apply_concepts
from ..models.sd15 import load_sd15
from ..prompts.expander import expand
from ..scenes.heatmaps import check_explainable, explain_image, generate_with_heatmaps, parse_timesteps
from ..scenes.pipeline import make_scene, make_seed_sheet, scene_prompt
from ..scenes.render import check_animation_path, grid, mask_image, overlay, save_animation
from ..scenes.sampling import decode, SamplingSettings
from ..scenes.strength_study import PAPER_STRENGTHS, parse_strengths, strength_grid
from ..errors import InputError
from ..files import (check_output, check_output_folder, check_writable, file_set, output_lock, write_numbered,
                     write_text_atomic)
from ..imagery import open_image, save_png
from .common import (DEFAULT_FOLDER, add_concept_args, add_model_args, add_sampling_args, add_size_args, default_name,
                     image_size, knowledge, load_concepts, safe_stem, sampling_options, sampling_progress, seed_list,
                     whole_number)


def add_commands(sub) -> None:
    """Register this group's commands on the top-level subparsers."""
    g = sub.add_parser("generate", help="one word -> one remote-sensing scene image (PNG)")
    g.add_argument("word", help="scene concept, e.g. airport or 'dense residential'")
    add_model_args(g)
    add_concept_args(g)
    add_sampling_args(g)
    seeds = g.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=whole_number, default=0)
    seeds.add_argument("--seeds", type=seed_list, metavar="LIST",
                       help="draw one scene per seed and write them as one grid, e.g. 0-8 (a 3 x 3 sheet) or 1,5,9: "
                            "how varied and how stable the scenes of one prompt are")
    add_size_args(g)
    g.add_argument("--style", default="word2scene", choices=("word2scene", "descriptive", "plain"),
                   help="prompt style of the scene prompt expander (default: word2scene, the paper's form)")
    g.add_argument("--detail", type=int, default=1, choices=range(4), help="detail level 0-3 for descriptive/plain")
    g.add_argument("--negative", default=None, help="negative prompt (default: the expander's; empty for word2scene)")
    g.add_argument("--out", help="PNG to write (default: outputs/<word>_<seed>_NNNNN.png, never overwriting)")
    g.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    g.add_argument("--process", metavar="FILE", help="also write the denoising process (x0 prediction) as .webp or .gif")
    g.add_argument("--process-every", type=int, default=0, help="frame every K steps (default: steps/10)")
    g.set_defaults(handler=cmd_generate)

    h = sub.add_parser("heatmap", help="cross-attention heat maps: which words drive which pixels")
    h.add_argument("prompt", help="the prompt (ComfyUI '(word:1.2)' weights allowed)")
    add_model_args(h)
    add_concept_args(h)
    h.add_argument("--image", help="explain this real image instead of generating one")
    h.add_argument("--words", default="", help="comma-separated words or phrases (default: every content word)")
    h.add_argument("--timesteps", default="100,300,500", help="with --image: DDPM timesteps to noise at")
    h.add_argument("--threshold", type=float, default=0.4, help="mask threshold on the normalised map")
    add_sampling_args(h, sampler=False)
    h.add_argument("--seed", type=whole_number, default=0)
    add_size_args(h)
    h.add_argument("--negative", default="")
    h.add_argument("--process", metavar="FILE", help="the process as .webp/.gif: x0 prediction and the word maps forming")
    h.add_argument("--process-every", type=int, default=0, help="frame every K steps (default: steps/10)")
    h.add_argument("--out", required=True, help="folder for overlays, grid, masks and scores.json")
    h.add_argument("--overwrite", action="store_true", help="replace the heat maps of an earlier run in --out (all of them)")
    h.set_defaults(handler=cmd_heatmap)

    p = sub.add_parser("prompt", help="expand scene word(s) into a prompt (the scene prompt expander)")
    p.add_argument("words", help="a scene word or phrase, or several separated by commas")
    p.add_argument("--style", default="word2scene", help="word2scene | descriptive | plain")
    p.add_argument("--detail", type=int, default=1, help="detail level 0-3")
    p.add_argument("--seed", type=whole_number, default=0)
    p.add_argument("--trigger-words", default=None, help="comma-separated (default: gs, geographic scene)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_prompt)

    gr = sub.add_parser("grid", help="epoch x strength grid: the same prompt and seed across strengths and concept files")
    gr.add_argument("word", help="scene word(s), expanded like generate")
    add_model_args(gr)
    gr.add_argument("--concept", action="append", default=[], metavar="FILE", required=True,
                    help="concept file per row (e.g. one per epoch); repeat")
    gr.add_argument("--strengths", default=PAPER_STRENGTHS, help="columns (default: the paper's 0 to 1.0 in 0.1 steps)")
    gr.add_argument("--style", default="word2scene", choices=("word2scene", "descriptive", "plain"))
    gr.add_argument("--detail", type=int, default=1, choices=range(4))
    add_sampling_args(gr, sampler=False)
    gr.add_argument("--seed", type=whole_number, default=0)
    add_size_args(gr)
    gr.add_argument("--out", required=True, help="grid PNG")
    gr.add_argument("--overwrite", action="store_true")
    gr.set_defaults(handler=cmd_grid)



def cmd_generate(args) -> int:
    import torch

    word = args.word.strip()
    if not word:
        raise InputError("word", "is empty; give a scene word such as airport")
    settings = SamplingSettings(**sampling_options(args), seed=args.seed, **image_size(args)).check()
    applied = load_concepts(args)
    out = Path(args.out) if args.out else None  # None: a new numbered name, chosen when the image is written
    if out is not None:
        check_output(out, args.overwrite, "--out", "--overwrite")
    check_writable(out.parent if out else DEFAULT_FOLDER, "--out")
    if args.process:
        if args.seeds:
            raise InputError("--process", "draws one scene's process; leave out --seeds")
        check_animation_path(args.process, "--process")
    sd = load_sd15(args.checkpoint, args.model, torch.float16 if args.half else torch.float32).to(args.device)
    apply_concepts(sd, applied)
    triggers = applied[0][0].info.trigger_words if applied else None
    frames = []
    every = args.process_every or max(1, settings.steps // 10)
    progress = sampling_progress(settings.steps)

    def on_step(step, total, latents, x0):
        progress(step, total)
        if args.process and (step % every == 0 or step == total):
            frames.append(decode(sd, x0)[0])
    options = dict(style=args.style, detail=args.detail, trigger_words=triggers, kb=knowledge(), negative=args.negative,
                   on_step=on_step, parameters={"concepts": [{"file": str(c.path), "strength_model": s, "strength_clip": sc}
                                                             for c, s, sc in applied]})
    if args.seeds:
        scene = make_seed_sheet(sd, word, settings, args.seeds, **options)
    else:
        scene = make_scene(sd, word, settings, **options)
    if args.process:
        save_animation(frames, args.process)
    if out is None:
        label = f"{args.seeds[0]}-{args.seeds[-1]}" if args.seeds else args.seed
        out = write_numbered(default_name(word, label), lambda path: scene.save(path, input_name="--out"))
    else:
        scene.save(out, overwrite=args.overwrite, input_name="--out")
    print(f"wrote {out} ({scene.image.width}x{scene.image.height}) prompt: {scene.prompt!r}")
    return 0


HEATMAP_FILES = ("image.png", "grid.png", "scores.json", "overlay_*.png", "mask_*.png")


def heatmap_files(out: Path) -> list[Path]:
    """The files a heat-map run writes in `out` (what --overwrite replaces)."""
    return sorted({p for pattern in HEATMAP_FILES for p in out.glob(pattern)}) if out.is_dir() else []


def cmd_heatmap(args) -> int:
    words = [w.strip() for w in args.words.split(",") if w.strip()]
    out = Path(args.out)
    check_output_folder(out, "--out")
    with output_lock(out, "--out"):  # one run at a time writes a set into this folder
        return _heatmap(args, words, out)


def _heatmap(args, words: list[str], out: Path) -> int:
    import torch

    earlier = heatmap_files(out)
    if earlier and not args.overwrite:
        raise InputError("--out", f"{out} holds the heat maps of an earlier run ({len(earlier)} files); pass "
                                  f"--overwrite to replace them all, or choose another folder")
    applied = load_concepts(args)
    settings = SamplingSettings(**sampling_options(args), seed=args.seed, negative=args.negative,
                                **image_size(args)).check()
    if args.image:  # the same reader as training: 16-bit and multi-band imagery stretched to 8 bits
        real_image = open_image(args.image, "--image")
        check_explainable(*real_image.size, "--image")
        timesteps = parse_timesteps(args.timesteps, "--timesteps")
    if args.process:
        check_animation_path(args.process, "--process")
    check_writable(out, "--out")
    sd = load_sd15(args.checkpoint, args.model, torch.float16 if args.half else torch.float32).to(args.device)
    apply_concepts(sd, applied)
    frames = []
    if args.image:
        image, heat = explain_image(sd, real_image, args.prompt, timesteps, args.seed)
    else:
        every = (args.process_every or max(1, settings.steps // 10)) if args.process else 0
        image, heat, frames = generate_with_heatmaps(sd, args.prompt, settings, every, words)
    word_maps = heat.words(words, args.threshold)
    labels = word_maps.labels
    m = word_maps.masks()[0]
    overlays = word_maps.overlays([image])
    scores = {"prompt": args.prompt, "words": labels, "scores": word_maps.scores(),
              "threshold": args.threshold, "passes": heat.passes, "note": heat.note,
              "capture_bytes": heat.capture.nbytes()}
    # written as one set: it replaces the whole earlier set (no old word's overlay stays beside
    # the new ones), and a failed write leaves neither a partial set nor a damaged earlier one
    with file_set(out, earlier, "--out") as staging:
        save_png(image, staging / "image.png")
        for i, label in enumerate(labels):
            save_png(overlays[i], staging / f"overlay_{i:02d}_{safe_stem(label)}.png")
            save_png(mask_image(m[i]), staging / f"mask_{i:02d}_{safe_stem(label)}.png")
        save_png(grid(overlays), staging / "grid.png")
        write_text_atomic(staging / "scores.json", json.dumps(scores, indent=2, ensure_ascii=False))
    if args.process and frames:
        panels = [grid([x0] + [overlay(x0, maps_[j], lab) for j, lab in enumerate(labs)], columns=len(labs) + 1)
                  for x0, labs, maps_ in frames]
        save_animation(panels, args.process)
    note = f" ({heat.note})" if heat.note else ""
    print(f"wrote {len(labels)} heat maps to {out}: {', '.join(labels)}{note}")
    return 0


def cmd_prompt(args) -> int:
    triggers = None if args.trigger_words is None else [t for t in args.trigger_words.split(",")]
    expansion = expand(args.words, args.style, args.detail, args.seed, triggers, knowledge())
    if args.json:
        print(json.dumps(expansion.as_dict(), ensure_ascii=False))
    else:
        print(f"positive: {expansion.positive}\nnegative: {expansion.negative}\n{expansion.report()}")
    return 0


def cmd_grid(args) -> int:
    import torch

    strengths = parse_strengths(args.strengths)
    settings = SamplingSettings(**sampling_options(args), seed=args.seed, **image_size(args)).check()
    concepts = [load_concept(path, "--concept") for path in args.concept]
    out = check_output(args.out, args.overwrite, "--out", "--overwrite")
    check_writable(out.parent, "--out")
    sd = load_sd15(args.checkpoint, args.model, torch.float16 if args.half else torch.float32).to(args.device)
    expansion = scene_prompt(sd, args.word, style=args.style, detail=args.detail, seed=args.seed,
                             trigger_words=concepts[0].info.trigger_words, kb=knowledge())
    settings.negative = expansion.negative
    image, _ = strength_grid(sd, expansion.positive, concepts, strengths, settings)
    save_png(image, out, {"prompt": expansion.positive, **settings.as_dict(), "strengths": strengths,
                          "concepts": [str(c.path) for c in concepts]}, overwrite=args.overwrite, input_name="--out")
    print(f"wrote {out}: {len(concepts)} concept(s) x {len(strengths)} strengths, prompt {expansion.positive!r}")
    return 0
