"""How good caption proposals are against human captions, with the field's metrics written
out here (no download, no Java): tag precision and recall, corpus BLEU-4 (Papineni et al.
2002, uniform weights, brevity penalty, no smoothing) and CIDEr-D (Vedantam et al. 2015:
tf-idf n-gram cosine, n = 1-4, clipped counts, Gaussian length penalty sigma 6, x 10; the
idf from the reference sets of the evaluated images, as the coco-caption code does).
Tokens: lower-case words, as the RSICD captions are written.
"""
from __future__ import annotations

import math
import re
from collections import Counter

TOKEN = re.compile(r"[a-z0-9]+")


def tokens(text: str) -> list[str]:
    return TOKEN.findall(text.lower())


def _ngrams(words: list[str], n: int) -> Counter:
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def bleu4(candidates: list[str], references: list[list[str]]) -> float:
    """Corpus BLEU-4 of one candidate per image against its references."""
    matched, total = [0] * 4, [0] * 4
    length, closest = 0, 0
    for cand, refs in zip(candidates, references):
        c = tokens(cand)
        r = [tokens(x) for x in refs]
        length += len(c)
        closest += min((abs(len(x) - len(c)), len(x)) for x in r)[1]
        for n in range(1, 5):
            counts = _ngrams(c, n)
            best = Counter()
            for x in r:
                best |= _ngrams(x, n)
            matched[n - 1] += sum(min(v, best[g]) for g, v in counts.items())
            total[n - 1] += max(len(c) - n + 1, 0)
    if min(matched) == 0 or length == 0:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matched, total)) / 4
    brevity = 1.0 if length > closest else math.exp(1 - closest / length)
    return brevity * math.exp(log_precision)


def cider_d(candidates: list[str], references: list[list[str]], sigma: float = 6.0) -> float:
    """Mean CIDEr-D of one candidate per image against its references."""
    refs = [[tokens(x) for x in r] for r in references]
    document_frequency = [Counter() for _ in range(4)]
    for r in refs:
        for n in range(4):
            for gram in set().union(*(set(_ngrams(x, n + 1)) for x in r)):
                document_frequency[n][gram] += 1
    log_images = math.log(max(len(refs), 1))

    def vector(words: list[str], n: int) -> tuple[dict, float]:
        counts = _ngrams(words, n + 1)
        vec = {g: c * (log_images - math.log(max(1.0, document_frequency[n][g]))) for g, c in counts.items()}
        return vec, math.sqrt(sum(v * v for v in vec.values()))

    scores = []
    for cand, r in zip(candidates, refs):
        c = tokens(cand)
        per_n = []
        for n in range(4):
            vc, norm_c = vector(c, n)
            total = 0.0
            for x in r:
                vr, norm_r = vector(x, n)
                dot = sum(min(v, vr.get(g, 0.0)) * vr.get(g, 0.0) for g, v in vc.items())  # CIDEr-D clips counts
                if norm_c and norm_r:
                    total += dot / (norm_c * norm_r) * math.exp(-((len(c) - len(x)) ** 2) / (2 * sigma ** 2))
            per_n.append(total / len(r))
        scores.append(10.0 * sum(per_n) / 4)
    return sum(scores) / len(scores) if scores else 0.0


def tag_scores(predicted: list[list[str]], truth: list[set[str]]) -> dict[str, float]:
    """Micro precision, recall and F1 of proposed tags against the tags of human captions."""
    hits = sum(len(set(p) & t) for p, t in zip(predicted, truth))
    proposed = sum(len(set(p)) for p in predicted)
    actual = sum(len(t) for t in truth)
    precision = hits / proposed if proposed else 0.0
    recall = hits / actual if actual else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}
