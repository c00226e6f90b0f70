"""The pack's node categories: Word2Scene/<part>, one per family of nodes."""

ROOT = "Word2Scene"
CONCEPTS = f"{ROOT}/concepts"
PROMPTS = f"{ROOT}/prompts"
SAMPLING = f"{ROOT}/sampling"
INTERPRETABILITY = f"{ROOT}/interpretability"
TRAINING = f"{ROOT}/training"
EVALUATION = f"{ROOT}/evaluation"
