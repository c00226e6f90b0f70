"""Derive SD1.5's CLIP tokenizer files (vocab.json, merges.txt) from the CLIP BPE merges list.

The merges list (bpe_simple_vocab_16e6.txt.gz, MIT licence, OpenAI CLIP) is the single
source; the vocabulary is its byte alphabet, the same with end-of-word marks, every merge
in order, then the two special tokens. This is how CLIP's own SimpleTokenizer builds it,
and it yields the 49,408-entry vocabulary of SD1.5's tokenizer.

Usage: python scripts/derive_clip_tokenizer.py PATH/TO/bpe_simple_vocab_16e6.txt.gz
"""
import gzip
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "word2scene" / "assets" / "sd15" / "tokenizer"


def bytes_to_unicode():
    """CLIP's reversible byte -> printable unicode table (256 entries)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def main(bpe_path: str) -> None:
    lines = gzip.open(bpe_path).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408, len(vocab)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False), encoding="utf-8")
    (OUT / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8")
    print(f"wrote {OUT}/vocab.json ({len(vocab)} tokens) and merges.txt ({len(merges)} merges)")


if __name__ == "__main__":
    main(sys.argv[1])
