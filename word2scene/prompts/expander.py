"""The scene prompt expander: one word (or a few) -> the prompt a concept LoRA was trained on.

Styles:
- "word2scene": trigger words + concept word(s), exactly the paper's form; empty negative.
- "descriptive": trigger words + concept + elements, relations and colours from the
  knowledge base (more with a higher detail level), chosen by the seed.
- "plain": the descriptive prompt without trigger words, framed as an aerial image.
The positive prompt always fits SD1.5's 77-token CLIP window: details are dropped to fit,
never the concept words or the trigger words.
"""
from __future__ import annotations

import difflib
import random
import re
import unicodedata
from dataclasses import asdict, dataclass, field

from ..concepts.file import DEFAULT_TRIGGER_WORDS
from ..models.sd15 import load_tokenizer
from ..errors import InputError
from .knowledge import KnowledgeBase, load_knowledge, lookup_keys, normalize

STYLES = ("word2scene", "descriptive", "plain")
MAX_INPUT_CHARS = 500
FUZZY_THRESHOLD = 0.84
TOKEN_WINDOW = 77  # BOS + 75 tokens + EOS
# details per detail level: (elements, relations, colours)
DETAIL = {0: (0, 0, 0), 1: (2, 0, 1), 2: (3, 1, 1), 3: (4, 2, 2)}
SEPARATORS = re.compile(r"[,;，、；\n]+")
CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+")


@dataclass
class Match:
    """What one input word matched: how is exact, alias, fuzzy or unknown."""
    input: str
    concept: str | None
    how: str
    score: float
    suggestion: str | None = None


@dataclass
class Expansion:
    positive: str
    negative: str
    matches: list[Match]
    truncated: list[str] = field(default_factory=list)
    tokens: int = 0

    def as_dict(self) -> dict:
        return {"positive": self.positive, "negative": self.negative,
                "matches": [{k: v for k, v in asdict(m).items() if k != "suggestion"} for m in self.matches],
                "truncated": list(self.truncated)}

    def file_stem(self) -> str:
        """A file-name stem naming the scene: the matched concepts' keys (the words as written,
        made safe, where unknown), joined by '_': "airport", "dense_residential_river"."""
        parts = [m.concept or "_".join("".join(c if c.isalnum() else " " for c in m.input.lower()).split())
                 for m in self.matches]
        return "_".join(p for p in parts if p) or "scene"

    def report(self) -> str:
        """Plain-text report for people: one line per input word, then what was dropped."""
        lines = []
        for m in self.matches:
            if m.how == "unknown":
                hint = f"; closest: {m.suggestion} ({m.score:.2f}), below {FUZZY_THRESHOLD}" if m.suggestion else ""
                lines.append(f"{m.input!r} -> unknown (used as written, zero-shot{hint})")
            elif m.how == "fuzzy":
                lines.append(f"{m.input!r} -> {m.concept} (fuzzy, score {m.score:.2f})")
            else:
                lines.append(f"{m.input!r} -> {m.concept} ({m.how})")
        if self.truncated:
            lines.append(f"dropped to fit {TOKEN_WINDOW} tokens: {', '.join(self.truncated)}")
        lines.append(f"positive prompt: {self.tokens} of {TOKEN_WINDOW} tokens")
        return "\n".join(lines)


def clean_input(text: str) -> list[str]:
    """Split user text into words/phrases; control characters become separators."""
    if not isinstance(text, str):
        raise InputError("words", f"expected text, got {type(text).__name__}")
    if len(text) > MAX_INPUT_CHARS:
        raise InputError("words", f"{len(text)} characters is too long; give one or a few scene words "
                                  f"(at most {MAX_INPUT_CHARS} characters)")
    text = "".join(" " if unicodedata.category(c) in ("Cc", "Cf") and c != "\n" else c for c in text)
    parts = []
    for raw in SEPARATORS.split(text):
        part = " ".join(raw.split()).strip(" .!?:\"'()[]{}")
        if normalize(part):
            parts.append(part)
    if not parts:
        raise InputError("words", "is empty or only punctuation; give a scene word such as airport or "
                                  "'dense residential'")
    return parts


def match_word(kb: KnowledgeBase, word: str) -> list[Match]:
    """Resolve one input phrase: exact id/name, alias, fuzzy (score >= threshold), or
    unknown. A phrase mixing scripts ("机场 airport") is split into its runs when whole
    lookup fails."""
    found = _match_one(kb, word, fuzzy=False)
    if found.how != "unknown":
        return [found]
    runs = [r.strip() for r in re.split(f"({CJK.pattern})", word) if normalize(r)]
    if len(runs) > 1:
        matches = [_match_one(kb, r) for r in runs]
        if all(m.how != "unknown" for m in matches):
            return matches
    return [_match_one(kb, word)]


def _match_one(kb: KnowledgeBase, word: str, fuzzy: bool = True) -> Match:
    concept_id = kb.find(word)
    if concept_id is not None:
        concept = kb[concept_id]
        exact = lookup_keys(word) & (lookup_keys(concept.id.replace("_", " ")) | lookup_keys(concept.name))
        return Match(word, concept_id, "exact" if exact else "alias", 1.0)
    if not fuzzy:
        return Match(word, None, "unknown", 0.0)
    key = normalize(word).replace(" ", "")
    best, best_score = None, 0.0
    for alias_key, cid in kb.index.items():
        if " " in alias_key or CJK.search(alias_key):
            continue
        score = difflib.SequenceMatcher(None, key, alias_key).ratio()
        if score > best_score:
            best, best_score = cid, score
    if best is not None and best_score >= FUZZY_THRESHOLD and len(key) >= 4:
        return Match(word, best, "fuzzy", round(best_score, 3))
    return Match(word, None, "unknown", round(best_score, 3), best)


def count_tokens(tokenizer, text: str) -> int:
    """CLIP tokens including BOS and EOS."""
    return len(tokenizer(text, truncation=False).input_ids)


def expand(words: str, style: str = "word2scene", detail: int = 1, seed: int = 0,
           trigger_words: list[str] | None = None, kb: KnowledgeBase | None = None, tokenizer=None) -> Expansion:
    """One word (or comma-separated words) -> positive and negative prompt with a report."""
    if style not in STYLES:
        raise InputError("style", f"{style!r} is not a style; accepted: {', '.join(STYLES)}")
    if not isinstance(detail, int) or detail not in DETAIL:
        raise InputError("detail", f"{detail!r} is not accepted; use 0, 1, 2 or 3")
    kb = kb or load_knowledge()
    tokenizer = tokenizer or load_tokenizer()
    triggers = [t.strip() for t in (trigger_words if trigger_words is not None else DEFAULT_TRIGGER_WORDS) if t.strip()]
    matches = [m for part in clean_input(words) for m in match_word(kb, part)]

    subjects, seen = [], set()
    for m in matches:
        label = kb[m.concept].name if m.concept else " ".join(m.input.split())
        if label.lower() not in seen:
            seen.add(label.lower())
            subjects.append(label)
    head = ([] if style == "plain" else triggers) + subjects
    if style == "plain":
        head = [f"aerial view of {subjects[0]}"] + subjects[1:]

    details: list[str] = []
    negatives: list[str] = []
    if style != "word2scene":
        rng = random.Random(f"{seed}:{'|'.join(subjects)}")
        n_el, n_rel, n_col = DETAIL[detail]
        known = [kb[m.concept] for m in matches if m.concept]
        for concept in dict.fromkeys(c.id for c in known):
            c = kb[concept]
            share = max(1, len(set(c.id for c in known)))
            for pool, n in ((c.elements, n_el), (c.relations, n_rel), (c.colours, n_col)):
                k = min(len(pool), -(-n // share) if n else 0)
                details += [d for d in rng.sample(pool, k) if d not in details]
            negatives += [x for x in c.negatives if x not in negatives]
        if detail > 0:
            details.append("top-down view" if style != "plain" else "satellite image, top-down view")
        negatives = [x for x in kb.negatives if x not in negatives] + negatives

    positive, truncated = _fit(tokenizer, head, details)
    if count_tokens(tokenizer, positive) > TOKEN_WINDOW:
        raise InputError("words", f"the trigger words and scene words alone take {count_tokens(tokenizer, positive)} "
                                  f"tokens, more than SD1.5's {TOKEN_WINDOW}; give fewer or shorter words")
    negative, _ = _fit(tokenizer, [], negatives)
    return Expansion(positive, negative, matches, truncated, count_tokens(tokenizer, positive))


def _fit(tokenizer, head: list[str], details: list[str]) -> tuple[str, list[str]]:
    """Join head + details with commas, dropping details from the end until it fits."""
    kept = list(details)
    dropped: list[str] = []
    while True:
        text = ", ".join(head + kept)
        if count_tokens(tokenizer, text) <= TOKEN_WINDOW or not kept:
            return text, dropped[::-1]
        dropped.append(kept.pop())
