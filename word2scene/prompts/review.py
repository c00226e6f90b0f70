"""The human half of "hybrid intelligence": a review file of mined proposals that an
expert marks adopt / amend / annihilate (the paper's four operations, with add), merged
into a user knowledge file the expander loads."""
from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from ..errors import InputError
from ..files import check_output, load_yaml, write_text_atomic
from .knowledge import KnowledgeBase, LIST_FIELDS, _parse_file
from .mining import Phrase

DECISIONS = ("pending", "adopt", "amend", "annihilate")
KIND_FIELD = {"element": "elements", "relation": "relations", "colour": "colours", "negative": "negatives",
              "alias": "aliases"}
HEADER = """\
# Word2Scene review file: machine-mined phrases per scene concept, for an expert to judge.
# For each proposal set `decision` to one of:
#   adopt       keep the phrase as it is
#   amend       keep it, rewritten: put the new text in `amended`
#   annihilate  drop it
#   pending     not decided yet (left out of the merge)
# Add your own phrases under `add` as {kind: element|relation|colour|negative|alias, text: ...}.
# Then: python -m word2scene concepts merge THIS_FILE --into my_concepts.yaml
"""


def write_knowledge_review(mined: dict[str, list[Phrase]], kb: KnowledgeBase, path: str | os.PathLike, source: str,
                           overwrite: bool = False) -> Path:
    """The review file of knowledge-base additions: the phrases mined from captions, per
    class, for an expert to accept or reject (`concepts merge` applies the decisions); classes
    are resolved to knowledge-base ids where possible."""
    classes = {}
    for cls, phrases in sorted(mined.items()):
        concept = kb.find(cls)
        classes[cls] = {
            "concept": concept,
            "proposals": [{"kind": p.kind, "text": p.text, "count": p.count, "score": p.score,
                           "examples": p.examples, "decision": "pending"} for p in phrases],
            "add": [],
        }
    body = yaml.safe_dump({"source": str(source), "classes": classes}, sort_keys=False, allow_unicode=True, width=110)
    return write_text_atomic(path, HEADER + body, overwrite=overwrite)


def merge_review(review: str | os.PathLike, into: str | os.PathLike, kb: KnowledgeBase) -> dict[str, int]:
    """Apply the decisions of a review file to a user knowledge file (created if missing).

    Returns counts per decision. Errors name the review file, class and proposal.
    """
    review = Path(review)
    into = check_output(into, True, "into")  # a FIFO or device would be read (and block), then replaced
    data = load_yaml(review, "review")
    if not isinstance(data, dict) or not isinstance(data.get("classes"), dict):
        raise InputError("review", f"{review}: expected a 'classes' mapping, as `concepts mine` writes")
    if into.exists():
        _parse_file(into)  # refuse to merge into a malformed file
        existing = load_yaml(into, "into") or {}
    else:
        existing = {}
    target = existing.setdefault("concepts", {})
    existing.setdefault("schema", 1)
    counts = {d: 0 for d in DECISIONS} | {"added": 0}
    for cls, entry in data["classes"].items():
        where = f"{review}: classes.{cls}"
        if not isinstance(entry, dict):
            raise InputError("review", f"{where}: expected a mapping with proposals")
        concept = entry.get("concept")
        if concept is not None and not isinstance(concept, str):
            raise InputError("review", f"{where}.concept: expected a concept id such as airport; found {concept!r}")
        concept = concept or kb.find(str(cls)) or _snake(str(cls), where)
        kept: list[tuple[str, str]] = []
        proposals = entry.get("proposals") or []
        if not isinstance(proposals, list):
            raise InputError("review", f"{where}.proposals: expected a list of proposals, as `concepts mine` writes")
        for n, proposal in enumerate(proposals):
            if not isinstance(proposal, dict):
                raise InputError("review", f"{where}.proposals[{n}]: expected a mapping with kind, text and decision; "
                                           f"found {proposal!r}")
            decision = str(proposal.get("decision", "pending")).strip().lower()
            if decision not in DECISIONS:
                raise InputError("review", f"{where}.proposals[{n}] ({proposal.get('text')!r}): decision {decision!r}; "
                                           f"accepted: {', '.join(DECISIONS)}")
            counts[decision] += 1
            text = proposal.get("amended") if decision == "amend" else proposal.get("text")
            if decision == "amend" and not (isinstance(text, str) and text.strip()):
                raise InputError("review", f"{where}.proposals[{n}]: decision amend needs the new text in `amended`")
            if decision == "adopt" and not (isinstance(text, str) and text.strip()):
                raise InputError("review", f"{where}.proposals[{n}]: decision adopt needs a `text`; found {text!r}")
            if decision in ("adopt", "amend"):
                kept.append((_field(proposal.get("kind"), f"{where}.proposals[{n}]"), text.strip()))
        added_list = entry.get("add") or []
        if not isinstance(added_list, list):
            raise InputError("review", f"{where}.add: expected a list of {{kind: element, text: ...}}")
        for n, added in enumerate(added_list):
            if not isinstance(added, dict) or not str(added.get("text", "")).strip():
                raise InputError("review", f"{where}.add[{n}]: expected {{kind: element, text: ...}}")
            kept.append((_field(added.get("kind"), f"{where}.add[{n}]"), str(added["text"]).strip()))
            counts["added"] += 1
        if not kept:
            continue
        slot = target.setdefault(concept, {})
        for field_name, text in kept:
            values = slot.setdefault(field_name, [])
            if text not in values:
                values.append(text)
    write_text_atomic(into, "# Word2Scene user knowledge file (merged from expert review).\n"
                      + yaml.safe_dump(existing, sort_keys=False, allow_unicode=True, width=110), overwrite=True)
    _parse_file(into)
    return counts


def _snake(name: str, where: str) -> str:
    snake = "_".join(re.findall(r"[a-z0-9]+", name.lower()))
    if not snake or not snake[0].isalpha():
        raise InputError("review", f"{where}: class {name!r} gives no usable concept id; set `concept` to a snake_case id")
    return snake


def _field(kind, where: str) -> str:
    if not isinstance(kind, str) or kind not in KIND_FIELD:
        raise InputError("review", f"{where}: kind {kind!r}; accepted: {', '.join(KIND_FIELD)}")
    field_name = KIND_FIELD[kind]
    assert field_name in LIST_FIELDS
    return field_name
