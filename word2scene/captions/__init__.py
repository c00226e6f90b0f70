"""Hybrid intelligence for training captions, per image (the paper's companion method):
machines propose captions at three levels (element tags, relation sentences, the scene class),
experts adopt, amend, annihilate or add, and the reviewed captions become a training set.

proposals: the machine half (a tagger, a nearest-neighbour captioner, the scene classifier);
review: the review file, and applying it to a kohya or captions.jsonl training folder;
quality: how good proposals are against human captions (tag precision/recall, BLEU-4, CIDEr-D).
"""
