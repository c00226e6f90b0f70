"""Caption proposals against human captions (hybrid intelligence, the machine half).

The tagger and the neighbour captioner learn from the captioned rs_scenes train split (600
images x 5 RSICD captions, 30 classes) and propose for the 150 held-out images, whose own 5
human captions are the references (--data aid: AID's captioned train and test images, 4 classes). The scene classifier gives the features and the scene
class (--classifier; default: one trained here on the rs_scenes train split).

Rows, with their references named:
- tags: micro precision / recall / F1 against the vocabulary phrases of the image's human
  captions; the tagger (seeds 0-2: mean and spread) against the class prior (the most frequent
  tags of the predicted class's training captions, as many as the tagger proposes on average);
- sentences: corpus BLEU-4 and CIDEr-D (word2scene.captions.quality) of the nearest captioned
  neighbour's caption, against "an aerial image of <class>" (predicted and true class) and a
  control that could fail: a random captioned image's caption (3 seeds).

    python bench/bench_captions.py [--classifier FILE] [--data rs_scenes|aid] [--out FILE.md]
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from word2scene.captions.proposals import (dataset_samples, encode, NeighbourCaptioner, ProposalSettings,  # noqa: E402
                                           tag_labels, tag_vocabulary, tagger_features, train_tagger)
from word2scene.captions.quality import bleu4, cider_d, tag_scores  # noqa: E402
from word2scene.evaluation.classifier import ClassifierConfig, save_classifier, train_classifier  # noqa: E402
from word2scene.evaluation.extractors import load_extractor  # noqa: E402
from word2scene.evaluation.image_sets import class_key, image_set  # noqa: E402

SCENES = ROOT.parent / "shared" / "data" / "rs_scenes"
DATA = {"rs_scenes": (SCENES, "heldout"), "aid": (ROOT.parent / "shared" / "data" / "aid", "test")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--classifier", help="scene classifier (default: trained here on the rs_scenes train split)")
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--data", default="rs_scenes", choices=sorted(DATA),
                    help="rs_scenes: 600 captioned train / 150 held-out images, 30 classes; aid: AID's RSICD-captioned "
                         "images, 1,038 train / 187 test, which cover only 4 classes")
    ap.add_argument("--out", help="markdown table (default: bench/results/captions_<data>.md)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    clf_path = Path(args.classifier) if args.classifier else Path("/tmp/bench_captions/rs_scene_cnn.safetensors")
    if not clf_path.is_file():
        clf_path.parent.mkdir(parents=True, exist_ok=True)
        save_classifier(train_classifier(image_set(SCENES, "data", "train"), ClassifierConfig(input_size=64, epochs=30)),
                        clf_path)
    classifier = load_extractor(clf_path)
    settings = ProposalSettings(classifier=str(clf_path))
    folder, held_out = DATA[args.data]
    train = [s for s in dataset_samples(folder, "train") if s.captions]
    test = [s for s in dataset_samples(folder, held_out) if s.captions]
    known, held = encode(classifier, train, settings, "train"), encode(classifier, test, settings, "test")
    vocabulary = tag_vocabulary(train, settings.vocabulary)
    truth = [set(np.array(vocabulary)[row.astype(bool)]) for row in tag_labels(test, vocabulary)]
    predicted_class = [classifier.classes[k] for k in held["probs"].argmax(1)]
    true_class = [class_key(s.concept) for s in test]
    oa = float(np.mean([p == t for p, t in zip(predicted_class, true_class)]))

    rows = []
    tagger_runs, counts = [], []
    for seed in (0, 1, 2):
        tagger = train_tagger(tagger_features(known), tag_labels(train, vocabulary), vocabulary, settings.tagger_epochs,
                              seed)
        probs = tagger.probabilities(tagger_features(held))
        tags = [[vocabulary[j] for j in np.argsort(-p)[:settings.tags] if p[j] >= args.threshold] for p in probs]
        counts.append(np.mean([len(t) for t in tags]))
        tagger_runs.append(tag_scores(tags, truth))
    k = max(1, round(float(np.mean(counts))))
    prior = {}
    for s in train:
        prior.setdefault(class_key(s.concept), Counter()).update(
            {t for t, y in zip(vocabulary, tag_labels([s], vocabulary)[0]) if y})
    prior_tags = [[t for t, _ in prior.get(c, Counter()).most_common(k)] for c in predicted_class]
    prior_scores = tag_scores(prior_tags, truth)

    def spread(runs, key):
        values = [r[key] for r in runs]
        return f"{np.mean(values):.3f} ± {np.std(values):.3f}"
    rows.append(("tags: tagger (seeds 0-2)", spread(tagger_runs, "precision"), spread(tagger_runs, "recall"),
                 spread(tagger_runs, "f1"), f"{np.mean(counts):.1f} tags/image"))
    rows.append(("tags: class prior (predicted class)", f"{prior_scores['precision']:.3f}",
                 f"{prior_scores['recall']:.3f}", f"{prior_scores['f1']:.3f}", f"{k} tags/image"))

    references = [list(s.captions) for s in test]
    files = [s.image.name for s in train]
    neighbours = NeighbourCaptioner(known["pooled"], train, files)
    nearest = [neighbours.sentences(held["pooled"][i], "", 1)[0].text for i in range(len(test))]
    sentence_rows = [("sentences: nearest captioned neighbour", nearest)]
    sentence_rows.append(("sentences: 'an aerial image of <predicted class>'",
                          [f"an aerial image of {c.replace('_', ' ')}" for c in predicted_class]))
    sentence_rows.append(("sentences: 'an aerial image of <true class>'",
                          [f"an aerial image of {c.replace('_', ' ')}" for c in true_class]))
    for name, candidates in sentence_rows:
        rows.append((name, f"{bleu4(candidates, references):.3f}", f"{cider_d(candidates, references):.3f}", "", ""))
    random_runs = []
    for seed in (0, 1, 2):
        rng = np.random.default_rng(seed)
        random_runs.append({"bleu": bleu4([train[j].captions[0] for j in rng.integers(0, len(train), len(test))],
                                          references),
                            "cider": cider_d([train[j].captions[0] for j in rng.integers(0, len(train), len(test))],
                                             references)})
    rows.append(("sentences: control, a random captioned image (seeds 0-2)", spread(random_runs, "bleu"),
                 spread(random_runs, "cider"), "", ""))

    head = (f"Caption proposals on the {len(test)} held-out {args.data} images ({len(set(true_class))} classes, RSICD "
            f"captions), learned from the {len(train)} captioned train images; scene classifier {classifier.name}, "
            f"held-out OA {oa:.1%}; "
            f"{len(vocabulary)} tags; {time.perf_counter() - t0:.0f} s.\n\n")
    table = ("| row | tag precision / BLEU-4 | tag recall / CIDEr-D | tag F1 | note |\n|---|---|---|---|---|\n"
             + "\n".join("| " + " | ".join(r) + " |" for r in rows) + "\n")
    print(head + table)
    out = Path(args.out or ROOT / "bench" / "results" / f"captions_{args.data}.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(head + table)


if __name__ == "__main__":
    main()
