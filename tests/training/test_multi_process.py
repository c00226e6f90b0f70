"""Training on several processes, as `torchrun` / `accelerate launch` run it: two CPU workers
(gloo) with batch 1 each train the concept one process trains with batch 2, only the main
process writes, and a two-worker run resumes to its uninterrupted result."""
import os
import re
import shutil
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import SHARED

SCENES = SHARED / "data" / "rs_scenes"
# a cosine schedule with warm-up: a schedule stepped once per process would show at once
TRAIN = ["-m", "word2scene", "train", "--model", "tiny", "--resolution", "64", "--steps", "4", "--lr", "1e-3",
         "--lr-scheduler", "cosine", "--warmup", "1", "--save-every", "2", "--keep-states", "0", "--rank", "4"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # torchrun's per-worker default: the same float rounding in both runs


def _port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def _run(workers: int, args: list[str]) -> subprocess.CompletedProcess:
    launcher = ["-m", "torch.distributed.run", "--nproc_per_node", str(workers), "--master_addr", "127.0.0.1",
                "--master_port", _port()] if workers > 1 else []
    done = subprocess.run([sys.executable, *launcher, *TRAIN, *args], env=ENV, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.skipif(not SCENES.is_dir(), reason=f"shared data not found at {SCENES}")
def test_two_workers_train_the_one_process_concept_and_resume(tmp_path):
    data = tmp_path / "data"
    for cls in ("airport", "beach"):
        (data / cls).mkdir(parents=True)
        for image in sorted((SCENES / cls).glob("*.jpg"))[:2]:
            shutil.copy(image, data / cls / image.name)

    one = _run(1, [str(data), "--batch", "2", "--out", str(tmp_path / "one" / "c.safetensors")])
    two = _run(2, [str(data), "--batch", "1", "--out", str(tmp_path / "two" / "c.safetensors")])

    a, b = load_file(str(tmp_path / "one" / "c.safetensors")), load_file(str(tmp_path / "two" / "c.safetensors"))
    assert a.keys() == b.keys() and len(a) > 0
    up = [k for k in a if k.endswith("lora_up.weight")]
    assert max(float(a[k].abs().max()) for k in up) > 1e-3  # trained: LoRA up weights start at zero
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    # measured 7e-6: gloo's all-reduce rounding, which Adam can lift toward lr for near-zero gradients; other
    # draws, data or a schedule stepped once per process differ by the order of lr (1e-3) per step
    assert worst < 1e-4, f"two workers differ from one process by {worst}"

    # only the main process writes: the same files as one process, one report line, no temp files or locks
    names = lambda run: sorted(p.name for p in (tmp_path / run).iterdir())
    assert names("two") == names("one") == ["c.loss.png", "c.safetensors", "c.state-000002.pt"]
    assert len(re.findall(r"^wrote ", two.stdout, re.M)) == 1

    # resume on two workers from the step-2 state: the uninterrupted two-worker concept
    resumed = tmp_path / "resumed" / "c.safetensors"
    _run(2, [str(data), "--batch", "1", "--resume", str(tmp_path / "two" / "c.state-000002.pt"), "--out", str(resumed)])
    c = load_file(str(resumed))
    assert all(torch.equal(b[k], c[k]) for k in b)
