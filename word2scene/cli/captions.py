"""Commands for training captions by hybrid intelligence: captions propose, captions apply."""
from __future__ import annotations

import sys

from ..captions.proposals import ProposalSettings, propose
from ..captions.review import apply_review, FORMATS, write_caption_review
from ..evaluation.extractors import shipped_classifier
from ..files import check_output, check_writable
from .common import count, knowledge, name_inputs, split_arg


def add_commands(sub) -> None:
    """Register this group's commands on the top-level subparsers."""
    c = sub.add_parser("captions", help="training captions by hybrid intelligence: machines propose, experts decide")
    csub = c.add_subparsers(dest="captions_command", required=True)
    p = csub.add_parser("propose", help="machine caption proposals for every image, in a review file",
                        description="For each image of DATASET: element tags (a tagger trained on mined caption "
                        "phrases, cleaned against the knowledge base), relation sentences (the nearest captioned "
                        "images' captions, or a local image-to-text model) and the scene class (the scene "
                        "classifier), each with its source and confidence, all pending review.")
    p.add_argument("dataset", help="images to caption: class folders, captions.jsonl, kohya folders or a plain folder")
    p.add_argument("--classifier", default=shipped_classifier(), metavar="FILE",
                   help="a scene classifier from `classifier train` (scene level, and the features tags and "
                        "neighbours use; default: the pack's shipped aid-scene-cnn.safetensors)")
    p.add_argument("--out", required=True, help="review file to write (.yaml)")
    p.add_argument("--from", dest="captioned", metavar="DATASET",
                   help="captioned images the tagger and the neighbours learn from (default: DATASET's own)")
    p.add_argument("--split", default="all", help="captions.jsonl split of DATASET to propose for (default all)")
    p.add_argument("--tags", type=count, default=6, help="tags per image at most (default 6)")
    p.add_argument("--tag-threshold", type=float, default=0.5, help="tagger probability a tag needs (default 0.5)")
    p.add_argument("--sentences", type=count, default=2, help="neighbour sentences per image (default 2)")
    p.add_argument("--captioner", metavar="DIR", help="a local transformers image-to-text model folder (BLIP, GIT, ...)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--overwrite", action="store_true")
    name_inputs(p, captioned="--from", classifier="--classifier")
    a = csub.add_parser("apply", help="write the reviewed captions as a training folder")
    a.add_argument("review", help="a review file from `captions propose`, with decisions")
    a.add_argument("--out", required=True, help="training folder to write (class folders with the images)")
    a.add_argument("--format", default="kohya", choices=FORMATS,
                   help="kohya: one .txt per image, a caption per line; jsonl: one captions.jsonl (default kohya)")
    a.add_argument("--include-pending", action="store_true",
                   help="also use proposals nobody reviewed (default: only adopted, amended and added ones)")
    a.add_argument("--dataset", metavar="FOLDER",
                   help="the folder the reviewed images are in (default: the review's own `dataset`, used only when "
                        "your own `captions propose` wrote it; a review from elsewhere needs this)")
    c.set_defaults(handler=cmd_captions)


def cmd_captions(args) -> int:
    if args.captions_command == "apply":
        summary = apply_review(args.review, args.out, args.format, args.include_pending, args.dataset)
        print(f"wrote {args.out} ({args.format}): {summary.report()}")
        return 0
    settings = ProposalSettings(classifier=args.classifier, captioned=args.captioned, split=split_arg(args.split),
                                tags=args.tags, tag_threshold=args.tag_threshold, sentences=args.sentences,
                                captioner=args.captioner, seed=args.seed, device=args.device).check()
    out = check_output(args.out, args.overwrite, "--out", "--overwrite")
    check_writable(out.parent, "--out")

    def on_progress(done, total):
        print(f"\rproposed for {done}/{total} images", end="\n" if done == total else "", file=sys.stderr, flush=True)
    proposals, facts = propose(args.dataset, settings, knowledge(), on_progress)
    write_caption_review(proposals, facts, args.dataset, out, overwrite=args.overwrite)
    counts = (sum(len(p.tags) for p in proposals), sum(len(p.sentences) for p in proposals))
    print(f"wrote {out}: {len(proposals)} images, {counts[0]} tags, {counts[1]} sentences and a scene class each, "
          f"all pending; set each decision, then `python -m word2scene captions apply {out} --out FOLDER`")
    return 0
