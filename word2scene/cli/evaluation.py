"""Commands that measure: evaluate, protocol, classifier train/test."""
from __future__ import annotations

import sys
from pathlib import Path

from ..concepts.file import check_strength, load_concept
from ..evaluation.classifier import accuracy, ClassifierConfig, save_classifier, train_classifier
from ..evaluation.extractors import shipped_classifier
from ..evaluation.extractors import load_extractor
from ..evaluation.image_sets import held_out_split, image_set, labels
from ..evaluation.protocol import evaluate_protocol, generate_images, protocol_grid, ProtocolSettings, resolve_concepts
from ..evaluation.scoring import evaluate, EvaluationSettings
from ..models.sd15 import load_sd15, native_resolution
from ..scenes.sampling import SamplingSettings
from ..scenes.strength_study import PAPER_STRENGTHS, parse_strengths
from ..errors import InputError
from ..files import check_output, check_output_folder, check_writable, write_text_atomic
from .common import add_model_args, add_sampling_args, count, name_inputs, knowledge, sampling_options, split_arg, whole_number


def add_commands(sub) -> None:
    """Register this group's commands on the top-level subparsers."""
    def add_feature_args(p):
        p.add_argument("--features", metavar="FILE", default=shipped_classifier(),
                       help="feature extractor weights for GSHPS and FID/KID: a classifier from `classifier train`, "
                            "torchvision VGG16/Inception-v3, or pytorch-fid's FID Inception (default: the pack's "
                            "shipped scene classifier, aid-scene-cnn.safetensors, AID test OA 79.2 %%)")
        p.add_argument("--gshps-features", metavar="FILE", help="GSHPS features (the paper: a VGG16 fine-tuned on scenes)")
        p.add_argument("--fid-features", metavar="FILE", help="FID/KID features (e.g. pt_inception-2015-12-05.pth)")
        p.add_argument("--clip", metavar="DIR", help="a local transformers CLIP folder: adds CLIP score")
        p.add_argument("--classifier-oa", action="store_true",
                       help="train scene classifiers on generated (test on real) and on real (test on generated)")
        p.add_argument("--oa-epochs", type=int, default=20, help="epochs of those classifiers (default 20)")
        p.add_argument("--reference-split", default="all", help="captions.jsonl split of the reference (default all)")
        p.add_argument("--kid-subsets", type=count, default=100, help="KID subsets (default 100)")
        p.add_argument("--kid-subset-size", type=count, default=None,
                       help="KID subset size (default: the smaller set's size, at most 1000); larger than a set is an error")
        p.add_argument("--batch", type=count, default=32)


    ev = sub.add_parser("evaluate", help="GSHPS, FID, KID, CLIP score and classifier accuracy of generated vs real images")
    ev.add_argument("--generated", required=True, help="folder of generated images (class folders for per-class results)")
    ev.add_argument("--reference", required=True, help="folder of real images (class folders or captions.jsonl)")
    add_feature_args(ev)
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--out", help="write the report here (.md markdown, .json results)")
    ev.set_defaults(handler=cmd_evaluate)

    pr = sub.add_parser("protocol", help="the paper's protocol: images per concept with fixed seeds, evaluation, grid",
                        description="Generate N images per concept (the paper's 11 trained + 19 zero-shot concepts) "
                        "with fixed seeds, evaluate them per concept and by split, and draw the strength x epochs grid. "
                        "Several GPUs or machines: accelerate launch -m word2scene protocol ... (same options); "
                        "a rerun skips images already written.")
    add_model_args(pr)
    pr.add_argument("--concept", metavar="FILE", help="the concept (LoRA) file; without it, vanilla SD1.5")
    pr.add_argument("--out", required=True, help="output folder: images/<concept>/<seed>.png, report.md, results.json, grid.png")
    pr.add_argument("--reference", help="real images per class (e.g. shared/data/rs_scenes); without it no evaluation")
    pr.add_argument("--concepts", default="", help="comma-separated words, or trained / zero-shot (default: all 30)")
    pr.add_argument("--images", type=count, default=10, help="images per concept (default 10)")
    pr.add_argument("--seed", type=whole_number, default=0, help="image k of each concept uses seed + k")
    pr.add_argument("--strength", type=float, default=1.0)
    add_sampling_args(pr, sampler=False)
    pr.add_argument("--size", type=whole_number, default=None,
                    help="image side in pixels (default: the model's own: 512 for SD1.x, 128 for mini)")
    pr.add_argument("--grid-concept", action="append", default=[], metavar="FILE",
                    help="grid rows: concept files, e.g. one per epoch (default: --concept)")
    pr.add_argument("--grid-word", default="church")
    pr.add_argument("--grid-strengths", default=PAPER_STRENGTHS,
                    help="grid columns (default: the paper's 0 to 1.0 in 0.1 steps)")
    pr.add_argument("--no-grid", action="store_true")
    add_feature_args(pr)
    pr.set_defaults(device="auto")
    name_inputs(pr, width="--size", height="--size", strengths="--grid-strengths")
    pr.set_defaults(handler=cmd_protocol)

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
    ct.add_argument("--batch", type=count, default=32)
    ct.add_argument("--lr", type=float, default=2e-3)
    ct.add_argument("--seed", type=int, default=0)
    ct.add_argument("--device", default="cpu", help="where the classifier trains, e.g. cpu, cuda (default: cpu)")
    cte = cfs.add_parser("test", help="overall and per-class accuracy of a classifier")
    cte.add_argument("data", help="real images with classes")
    cte.add_argument("--classifier", default=shipped_classifier(),
                     help="classifier .safetensors (default: the shipped aid-scene-cnn.safetensors)")
    cte.add_argument("--split", default=None, help="captions.jsonl split (default: its held-out split, heldout or "
                     "test; 'all' for every image, needed for class folders without captions.jsonl)")
    cf.set_defaults(handler=cmd_classifier)



def _evaluation_settings(args):
    return EvaluationSettings(features=args.features, gshps_features=args.gshps_features, fid_features=args.fid_features,
                              clip=args.clip, classifier_oa=args.classifier_oa,
                              classifier=ClassifierConfig(epochs=args.oa_epochs), kid_subsets=args.kid_subsets,
                              kid_subset_size=args.kid_subset_size,
                              batch_size=args.batch, device=getattr(args, "device", "cpu"))


def cmd_evaluate(args) -> int:
    if args.out:
        check_output(args.out, True, "--out")
    generated = image_set(args.generated, "--generated")
    reference = image_set(args.reference, "--reference", split_arg(args.reference_split), "--reference-split")
    if args.out:
        check_writable(Path(args.out).parent, "--out")
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


    kb = knowledge()
    check_strength("--strength", args.strength)
    settings = ProtocolSettings(
        concepts=[w.strip() for w in args.concepts.split(",") if w.strip()], images_per_concept=args.images,
        seed=args.seed, strength=args.strength, grid=not args.no_grid, grid_word=args.grid_word,
        grid_strengths=parse_strengths(args.grid_strengths),
        sampling=SamplingSettings(**sampling_options(args), width=args.size or native_resolution(args.checkpoint, args.model),
                                  height=args.size or native_resolution(args.checkpoint, args.model)).check())
    concepts = resolve_concepts(kb, settings.concepts)
    reference = image_set(args.reference, "--reference", split_arg(args.reference_split), "--reference-split") \
        if args.reference else None
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
    check_output_folder(args.out, "--out")
    check_writable(args.out, "--out")
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
        items = image_set(args.data, "data", split_arg(args.split or held_out_split(args.data)), "--split")
        result = accuracy(load_extractor(args.classifier, "--classifier"), items)
        print(f"overall accuracy {result.overall:.1%} on {result.images} images ({result.network})")
        for cls, value in result.per_class.items():
            print(f"  {cls}: {value:.0%}")
        return 0
    out = check_output(args.out, args.overwrite, "--out", "--overwrite")
    items = image_set(args.data, "data", split_arg(args.split), "--split")
    check_writable(out.parent, "--out")
    config = ClassifierConfig(arch=args.arch, width=args.width, input_size=args.size, epochs=args.epochs,
                              batch_size=args.batch, learning_rate=args.lr, seed=args.seed, init=args.init)

    def on_epoch(epoch, epochs, loss):
        print(f"epoch {epoch}/{epochs} loss {loss:.4f}", file=sys.stderr)
    classifier = train_classifier(items, config, "data", on_epoch, device=args.device)
    save_classifier(classifier, out, overwrite=args.overwrite)
    print(f"wrote {out}: {classifier.arch}, {len(classifier.classes)} classes, {len(items)} images")
    return 0
