"""Test helpers shared by the test modules (plain functions, no fixtures)."""
from __future__ import annotations

import torch

from word2scene.concepts import keys as lora_keys
from word2scene.concepts.file import Concept, ConceptInfo, LoraWeights, TrainingFacts


def model_shapes(sd) -> dict[str, tuple]:
    """Canonical LoRA name -> weight shape of a loaded diffusers SD15 bundle."""
    from word2scene.concepts.patching import lora_modules

    return {name: tuple(m.weight.shape) for name, m in lora_modules(sd).items()}


def sd15_full_shapes() -> dict[str, tuple]:
    from word2scene.models.sd15 import sd15_module_shapes

    return {lora_keys.kohya_name(c, p): s for c, paths in sd15_module_shapes().items() for p, s in paths.items()}


def make_concept(shapes: dict[str, tuple], rank: int = 4, alpha: float = 2.0, seed: int = 0,
                 module_set: str = "attention", text_encoder: bool = False, name: str = "test_concept") -> Concept:
    """A concept with random (non-zero) down and up weights for the chosen modules."""
    gen = torch.Generator().manual_seed(seed)
    suffixes = {"attention": lora_keys.ATTENTION_SUFFIXES,
                "kohya": lora_keys.ATTENTION_SUFFIXES + lora_keys.KOHYA_EXTRA_SUFFIXES}[module_set]
    targets = lora_keys.sd15_targets()
    lora = {}
    for name_, shape in sorted(shapes.items()):
        component, path = targets.get(name_, (None, ""))
        chosen = (component == "unet" and path.endswith(suffixes)) or (
            text_encoder and component == "text_encoder" and path.endswith(("q_proj", "k_proj", "v_proj", "out_proj")))
        if not chosen:
            continue
        out, inp = shape[0], shape[1]
        kernel = tuple(shape[2:])
        down = torch.randn((rank, inp) + kernel, generator=gen) * 0.1
        up = torch.randn((out, rank) + (1,) * len(kernel), generator=gen) * 0.1
        lora[name_] = LoraWeights(down, up, alpha)
    info = ConceptInfo(name=name, concepts=["airport", "dense residential"], rank=rank, alpha=alpha,
                       training=TrainingFacts(steps=100, epochs=2, resolution=64, dataset_size=20,
                                              dataset_hash="abc123", learning_rate=1e-4, seed=seed),
                       recommended_strength=0.8, base_model_hash="deadbeef")
    return Concept(info, lora)


def ctrl_c_after_progress(argv: list[str], progress: str, cwd) -> tuple[int, str]:
    """Run `python -m word2scene ARGV`, press Ctrl-C (SIGINT) once its stderr shows `progress`
    (a regular expression: a step done), and return its exit status and stderr."""
    import re
    import signal
    import subprocess
    import sys
    import threading
    import time

    proc = subprocess.Popen([sys.executable, "-m", "word2scene", *argv], cwd=cwd, stderr=subprocess.PIPE, text=True)
    seen = []
    reader = threading.Thread(target=lambda: seen.extend(iter(lambda: proc.stderr.read(1), "")), daemon=True)
    reader.start()
    deadline = time.time() + 240
    while not re.search(progress, "".join(seen)) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    rc = proc.wait(timeout=120)
    reader.join(timeout=10)
    return rc, "".join(seen)


# Runs command lines through the CLI's main() in one Python process (torch imported once): says
# "ready", then for each line on stdin (a JSON list of arguments) prints one JSON result line.
CLI_RUNNER = r"""
import contextlib, io, json, sys, traceback
from word2scene.cli import main
print("ready", flush=True)
for line in sys.stdin:
    argv = json.loads(line)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except SystemExit as exc:
            rc = exc.code
        except BaseException:
            traceback.print_exc(file=err)
            rc = "traceback"
    print(json.dumps({"argv": argv, "rc": rc, "stderr": err.getvalue()}), flush=True)
"""


def runner_input(commands: list[list[str]]) -> str:
    """CLI_RUNNER's stdin for these command lines."""
    import json

    return "".join(json.dumps(argv) + "\n" for argv in commands)
