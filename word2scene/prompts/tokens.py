"""Where each word of a prompt sits in the text encoder's token columns.

CLIP sees 77 columns per chunk (BOS, up to 75 tokens, EOS, padding); prompts past 75
tokens take 154, 231, ... columns. ComfyUI's "(word:1.2)" weights change no positions but
must be parsed away. CLIP's pre-tokenizer splits letters, single digits and punctuation
runs before BPE, so tokenizing unit by unit gives exactly the tokens of the whole prompt.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import InputError

BOS, EOS = 49406, 49407
CHUNK = 77
# CLIP's pre-tokenizer: contractions, runs of letters, single digits, punctuation runs
UNIT = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|[^\s\w]+|_+", re.IGNORECASE)
WEIGHT = re.compile(r":\s*[-+]?\d*\.?\d+\s*$")
STOP_WORDS = frozenset("a an the of and or in on at to with by for from is are near next some many".split())


def strip_weights(text: str) -> str:
    """ComfyUI prompt weights -> plain text: "(blue roof:1.2), ((church))" -> "blue roof, church".
    Escaped parentheses "\\(" and "\\)" stay as literal characters. The one weight parser is
    weighted_segments; this is its text without the weights."""
    return "".join(segment for segment, _ in weighted_segments(text))


@dataclass
class Word:
    text: str  # lower-case word as written
    occurrence: int  # 1 for the first "church", 2 for the second ...
    columns: list[int] = field(default_factory=list)  # token columns across all chunks

    @property
    def label(self) -> str:
        return self.text if self.occurrence == 1 else f"{self.text}#{self.occurrence}"


def check_prompt_text(text: str, input_name: str = "prompt") -> str:
    """Refuse control characters (tab and newline aside): ComfyUI's tokenizer reads \\x00 and
    \\x01 as its own escapes, and none of them is a word."""
    bad = next(((i, c) for i, c in enumerate(text) if ord(c) < 32 and c not in "\t\n\r"), None)
    if bad is not None:
        raise InputError(input_name, f"holds the control character U+{ord(bad[1]):04X} at position {bad[0]}; "
                                     "remove it (only printable text, tabs and newlines are accepted)")
    return text


class PromptLayout:
    """Words of a prompt and their token columns, aligned to the columns a text encoder saw."""
    def __init__(self, text: str, column_tokens: list[int], tokenizer):
        self.text = check_prompt_text(text)
        self.column_tokens = list(column_tokens)
        plain = strip_weights(text)
        units = [(m.group(0), tokenizer(m.group(0), add_special_tokens=False).input_ids) for m in UNIT.finditer(plain)]
        content = [i for i, t in enumerate(self.column_tokens) if t not in (BOS, EOS)]
        self.words: list[Word] = []
        seen: dict[str, int] = {}
        pos = 0
        for unit, ids in units:
            cols = content[pos:pos + len(ids)]
            if [self.column_tokens[c] for c in cols] != ids:
                if pos >= len(content):
                    break  # the encoder's columns end here (text past its last chunk is not seen)
                raise ValueError(f"prompt text does not match the encoder's tokens at {unit!r}")
            pos += len(ids)
            if any(ch.isalnum() for ch in unit):
                key = unit.lower()
                seen[key] = seen.get(key, 0) + 1
                self.words.append(Word(key, seen[key], cols))

    @property
    def chunks(self) -> int:
        return len(self.column_tokens) // CHUNK

    def labels(self) -> list[str]:
        return [w.label for w in self.words]

    def content_words(self) -> list[str]:
        """Labels of words worth a map (no stop words or single digits), in prompt order."""
        return [w.label for w in self.words if w.text not in STOP_WORDS and not w.text.isdigit()]

    def resolve(self, request: str) -> list[int]:
        """Columns of a requested word or phrase ("church", "church#2", "blue roof").
        A plain word or phrase covers all its occurrences; "#n" picks the n-th."""
        request = request.strip()
        m = re.fullmatch(r"(.+?)#(\d+)", request)
        wanted, nth = (m[1], int(m[2])) if m else (request, None)
        parts = [u.lower() for u in UNIT.findall(strip_weights(wanted)) if any(c.isalnum() for c in u)]
        if not parts:
            raise ValueError(f"{request!r} has no words")
        texts = [w.text for w in self.words]
        hits = [i for i in range(len(texts) - len(parts) + 1) if texts[i:i + len(parts)] == parts]
        if nth is not None:
            hits = hits[nth - 1:nth] if 0 < nth <= len(hits) else []
        if not hits:
            raise KeyError(request)
        return sorted({c for i in hits for w in self.words[i:i + len(parts)] for c in w.columns})


def weighted_segments(text: str, weight: float = 1.0) -> list[tuple[str, float]]:
    """ComfyUI's prompt weights: "(x)" multiplies by 1.1 per level, "(x:1.3)" sets 1.3;
    escaped "\\(" / "\\)" are literal. Returns (text, weight) segments in order."""
    text = text.replace("\\(", "\0").replace("\\)", "\1")
    out: list[tuple[str, float]] = []
    depth, start, plain = 0, 0, ""
    for i, char in enumerate(text):
        if char == "(":
            if depth == 0:
                if plain:
                    out.append((plain, weight))
                plain, start = "", i
            depth += 1
        elif char == ")" and depth > 0:
            depth -= 1
            if depth == 0:
                inner, inner_weight = text[start + 1:i], weight * 1.1
                m = WEIGHT.search(inner)
                if m and inner.rfind(":") > 0:
                    try:
                        inner_weight = float(m.group(0).lstrip(": ").strip())
                        inner = inner[:m.start()]
                    except ValueError:
                        pass
                out += weighted_segments(inner.replace("\0", "\\(").replace("\1", "\\)"), inner_weight)
        elif depth == 0:
            plain += char
    if depth > 0:  # unclosed "(": ComfyUI keeps it as a weighted group
        out += weighted_segments(text[start + 1:].replace("\0", "\\(").replace("\1", "\\)"), weight * 1.1)
    elif plain:
        out.append((plain, weight))
    return [(seg.replace("\0", "(").replace("\1", ")"), w) for seg, w in out]


def chunk_tokens(tokenizer, text: str, with_weights: bool = False):
    """Column token ids (and weights) as ComfyUI's SD1 tokenizer lays them out: 75 tokens per
    chunk, a space-separated word shorter than 8 tokens moves whole to the next chunk, EOS pads."""
    groups = []
    for segment, weight in weighted_segments(text):
        for word in segment.replace("\n", " ").split(" "):
            if word:
                groups.append([(t, weight) for t in tokenizer(word, add_special_tokens=False).input_ids])
    chunks: list[list[tuple[int, float]]] = [[(BOS, 1.0)]]
    for group in groups:
        large = len(group) >= 8
        while group:
            batch = chunks[-1]
            if len(batch) + len(group) > CHUNK - 1:
                room = CHUNK - 1 - len(batch)
                if large:
                    batch.extend(group[:room])
                    group = group[room:]
                batch.extend([(EOS, 1.0)] * (CHUNK - len(batch)))
                chunks.append([(BOS, 1.0)])
            else:
                batch.extend(group)
                group = []
    chunks[-1].extend([(EOS, 1.0)] * (CHUNK - len(chunks[-1])))
    columns = [t for chunk in chunks for t, _ in chunk]
    return (columns, [w for chunk in chunks for _, w in chunk]) if with_weights else columns
