"""The machine half of "hybrid intelligence": mine element and relation phrases per scene
class from captioned images, for an expert to adopt, amend, annihilate or add to.

Captions come from a captions.jsonl (lines with "class" and "caption"/"captions", as in
shared/data) or from kohya folders (image + .txt sidecar; the folder name, without its
"10_" repeat prefix, is the class). Phrases are scored by how much more often a class's
captions use them than other classes' do, so "runway" ranks high for airport and "green
trees" does not rank high everywhere.
"""
from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ..datasets import read_caption_rows
from ..errors import InputError

STOP = set("""a an the this that these those some many several lots lot of is are was were be been being has have
had with and or in on at by to for from as it its it's there here which who whom whose while where when into onto
over under near next beside besides around along between among across behind above below inside outside through
surrounded surrounding surround surrounds located lie lies lying sits sit sitting stand stands standing is are
very also other others another one two three four five six seven eight nine ten few both each all any no not
piece pieces kinds kind full much more most big large small little long short wide narrow we can see shows
shown image picture photo aerial view scene area areas part parts side sides middle center centre top bottom
left right up down like such so but than then too quite""".split())
PREPOSITIONS = ("next to", "close to", "surrounded by", "in front of", "on both sides of", "on one side of",
                "near", "beside", "around", "along", "between", "among", "across", "behind", "in the middle of",
                "on the edge of", "at the edge of", "in", "on", "with", "by", "through")
VERBS = set("is are was were has have had sits lies stands built parked arranged located covered planted scattered "
            "surrounded runs run passes pass crosses cross goes go".split())
TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?")


@dataclass
class Phrase:
    kind: str  # "element" or "relation"
    text: str
    count: int
    score: float
    examples: list[str] = field(default_factory=list)


def read_captions(source: str | Path) -> dict[str, list[str]]:
    """{class: [caption, ...]} from a captions.jsonl file or a kohya folder tree."""
    source = Path(source)
    if not source.exists():
        raise InputError("captions", f"{source} does not exist")
    by_class: dict[str, list[str]] = defaultdict(list)
    if source.is_file():
        for row in read_caption_rows(source, ("class",), "captions"):
            captions = row.get("captions") or [row.get("caption", "")]
            by_class[str(row["class"])].extend(c for c in captions if isinstance(c, str) and c.strip())
    else:
        for txt in sorted(source.rglob("*.txt")):
            folder = txt.parent.name
            cls = re.sub(r"^\d+_", "", folder).strip().replace(" ", "_").lower()
            by_class[cls].extend(line.strip() for line in txt.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip())
    if not by_class:
        raise InputError("captions", f"{source} holds no captions (a captions.jsonl, or folders of images with .txt captions)")
    return dict(by_class)


def element_phrases(caption: str) -> set[str]:
    """The element phrases (content 1-3-grams) of one caption: what mining counts, and the
    labels a tagger learns."""
    return _element_phrases(_tokens(caption))


def _tokens(caption: str) -> list[str]:
    return TOKEN.findall(caption.lower().replace("termial", "terminal"))


def _element_phrases(tokens: list[str]) -> set[str]:
    """Content n-grams (1-3 words) that neither start nor end with a stop word or verb."""
    out = set()
    for n in (1, 2, 3):
        for i in range(len(tokens) - n + 1):
            gram = tokens[i:i + n]
            if gram[0] in STOP or gram[-1] in STOP or any(t in VERBS for t in gram) or len(gram[-1]) < 3:
                continue
            if n > 1 and any(t in STOP for t in gram[1:-1]):
                continue
            out.add(" ".join(gram))
    return out


def _relation_phrases(tokens: list[str]) -> set[str]:
    """Preposition + the content words after it: "next to runways", "surrounded by trees"."""
    text = " ".join(tokens)
    out = set()
    for prep in PREPOSITIONS:
        for m in re.finditer(rf"\b{prep}\b((?: [a-z']+){{1,4}})", text):
            words = [w for w in m.group(1).split() if w not in ("a", "an", "the", "some", "many", "several", "lots", "of")]
            content = []
            for w in words:
                if w in STOP or w in VERBS:
                    break
                content.append(w)
            if content and len(content[-1]) >= 3:
                out.add(f"{prep} {' '.join(content[:3])}")
    return out


def mine(by_class: dict[str, list[str]], top: int = 12, min_count: int = 2, examples: int = 2) -> dict[str, list[Phrase]]:
    """Ranked element and relation phrases per class.

    score = count in class * log(1 + classes / classes using it): frequent in the class,
    rare elsewhere. A phrase is counted once per caption.
    """
    per_class: dict[str, dict[str, Counter]] = {}
    examples_of: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    used_by: dict[tuple[str, str], set[str]] = defaultdict(set)
    for cls, captions in by_class.items():
        counts = {"element": Counter(), "relation": Counter()}
        for caption in captions:
            tokens = _tokens(caption)
            for kind, phrases in (("element", _element_phrases(tokens)), ("relation", _relation_phrases(tokens))):
                for p in phrases:
                    counts[kind][p] += 1
                    used_by[(kind, p)].add(cls)
                    if len(examples_of[(cls, kind, p)]) < examples and caption not in examples_of[(cls, kind, p)]:
                        examples_of[(cls, kind, p)].append(caption.strip())
        per_class[cls] = counts
    n_classes = len(by_class)
    result = {}
    for cls, counts in per_class.items():
        ranked = []
        for kind, counter in counts.items():
            scored = [Phrase(kind, p, c, round(c * math.log(1 + n_classes / len(used_by[(kind, p)])), 3),
                             examples_of[(cls, kind, p)])
                      for p, c in counter.items() if c >= min_count]
            scored.sort(key=lambda ph: (-ph.score, -ph.count, ph.text))
            kept: list[Phrase] = []
            for ph in scored:  # drop a phrase that only repeats a longer kept one with the same count
                if any(ph.text in k.text and k.count == ph.count for k in kept):
                    continue
                kept.append(ph)
                if len(kept) == top:
                    break
            ranked.extend(kept)
        result[cls] = ranked
    return result
