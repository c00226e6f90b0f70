"""Commands on concept files and the knowledge base: info, concepts list/check/mine/merge."""
from __future__ import annotations

import json
from pathlib import Path

from ..concepts.file import read_concept
from ..files import check_output
from ..prompts.knowledge import _parse_file, load_knowledge
from ..prompts.mining import mine, read_captions
from ..prompts.review import merge_review, write_knowledge_review
from .common import count, knowledge, name_inputs


def add_commands(sub) -> None:
    """Register this group's commands on the top-level subparsers."""
    c = sub.add_parser("concepts", help="the RS concept knowledge base: list, check, mine, merge")
    csub = c.add_subparsers(dest="concepts_command", required=True)
    cl = csub.add_parser("list", help="list the concepts (built-in plus user files)")
    cl.add_argument("--json", action="store_true")
    cc = csub.add_parser("check", help="check a user knowledge file")
    cc.add_argument("file")
    cm = csub.add_parser("mine", help="mine element/relation phrases per class from captions")
    cm.add_argument("captions", help="captions.jsonl, or a folder of class folders with .txt captions (kohya)")
    cm.add_argument("--out", required=True, help="review YAML to write")
    cm.add_argument("--top", type=count, default=12, help="phrases per kind and class (default 12)")
    cm.add_argument("--overwrite", action="store_true")
    cg = csub.add_parser("merge", help="merge an expert-reviewed file into a user knowledge file")
    cg.add_argument("review")
    cg.add_argument("--into", required=True, help="user knowledge YAML (created or updated)")
    name_inputs(cg, out="--into")
    c.set_defaults(handler=cmd_concepts)

    i = sub.add_parser("info", help="print a concept file's metadata")
    i.add_argument("concept", help="concept (LoRA) .safetensors")
    i.add_argument("--json", action="store_true", help="print the metadata as one JSON object")
    i.set_defaults(handler=cmd_info)



def cmd_concepts(args) -> int:
    if args.concepts_command == "list":
        kb = knowledge()
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
        check_output(args.out, args.overwrite, "--out", "--overwrite")
        mined = mine(read_captions(args.captions), top=args.top)
        out = write_knowledge_review(mined, knowledge(), args.out, args.captions, overwrite=args.overwrite)
        total = sum(len(v) for v in mined.values())
        print(f"wrote {out}: {total} proposals for {len(mined)} classes; mark each adopt/amend/annihilate, then "
              f"`python -m word2scene concepts merge {out} --into my_concepts.yaml`")
        return 0

    counts = merge_review(args.review, args.into, knowledge())
    print(f"merged into {args.into}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def cmd_info(args) -> int:
    from dataclasses import asdict


    concept = read_concept(args.concept, "concept")
    if args.json:
        print(json.dumps({**asdict(concept.info), "modules": len(concept.lora)}, ensure_ascii=False))
    else:
        print(concept.describe())
    return 0
