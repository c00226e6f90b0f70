"""Every command that writes, on a read-only and on a full file system: one line naming the
option the user set for the output, exit 2, no traceback, and nothing left behind.

The file systems are real: a tmpfs mounted in a private mount namespace (`unshare -m`),
remounted read-only or filled to the last byte. Where mounting is not allowed (no root, no
user namespaces) the test is skipped with that reason.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import SHARED
from helpers import CLI_RUNNER, make_concept, model_shapes, runner_input
from word2scene.concepts.file import save_concept

SCENES = SHARED / "data" / "rs_scenes"
TINY = ["--model", "tiny", "--steps", "1"]

PREPARE = {
    "read-only": "mount -o remount,ro {mnt}",
    "full": "dd if=/dev/zero of={mnt}/filler bs=4096 2>/dev/null; dd if=/dev/zero of={mnt}/filler2 bs=1 2>/dev/null; true",
}
REASON = {"read-only": "Read-only file system", "full": "No space left on device"}


def _can_mount(tmp_path) -> str | None:
    if shutil.which("unshare") is None:
        return "no unshare command"
    mnt = tmp_path / "probe"
    mnt.mkdir()
    done = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {mnt}"],
                          capture_output=True, text=True)
    return None if done.returncode == 0 else f"cannot mount a tmpfs here ({done.stderr.strip()[:120]})"


def _in_a_tmpfs(tmp_path, script: str, *runs: list[list[str]], env: dict | None = None) -> tuple[Path, list[str]]:
    """Run `script` (sh) in a private mount namespace where {mnt} is a fresh mount point and
    {runK} runs the CLI commands of runs[K - 1] (CLI_RUNNER: one JSON result line each). Returns the mount point and the lines it printed. Skips where mounting is not
    allowed."""
    reason = _can_mount(tmp_path)
    if reason:
        pytest.skip(reason)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = script.format(mnt=mnt, **{f"run{k}": f'printf %s "${k}" | "$0" -c "$RUNNER"'
                                       for k in range(1, len(runs) + 1)})
    done = subprocess.run(["unshare", "-m", "sh", "-c", script, sys.executable, *map(runner_input, runs)],
                          capture_output=True, text=True, timeout=600,
                          env={**(env or os.environ), "RUNNER": CLI_RUNNER})
    assert done.returncode == 0, done.stderr[-3000:]
    return mnt, [line for line in done.stdout.strip().splitlines() if line != "ready"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny):
    """Small real inputs outside the mount: a dataset, a reference and generated set, a tiny
    concept, a classifier for the metrics, a reviewed knowledge file."""
    from word2scene.evaluation.classifier import ClassifierConfig, save_classifier, train_classifier
    from word2scene.evaluation.image_sets import image_set

    root = tmp_path_factory.mktemp("inputs")
    for cls in ("airport", "beach"):
        for folder in ("data", "reference", "generated"):
            (root / folder / cls).mkdir(parents=True)
        for n, image in enumerate(sorted((SCENES / cls).glob("*.jpg"))[:3]):
            for folder in ("data", "reference", "generated"):
                shutil.copy(image, root / folder / cls / f"{n}.jpg")
    concept = save_concept(make_concept(model_shapes(tiny)), root / "concept.safetensors")
    save_classifier(train_classifier(image_set(root / "reference", "data"), ClassifierConfig(width=4, input_size=32,
                                                                                          epochs=1)),
                    root / "classifier.safetensors")
    review = {"classes": {"airport": {"concept": "airport", "add": [{"kind": "element", "text": "apron"}],
                                      "proposals": [{"kind": "element", "text": "runway", "decision": "adopt"}]}}}
    (root / "review.yaml").write_text(yaml.safe_dump(review))
    return root


def _commands(i: Path, out: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (argv, the option that names the output)."""
    return {
        "generate": (["generate", "airport", *TINY, "--out", f"{out}/a.png"], "--out"),
        "heatmap": (["heatmap", "airport runway", *TINY, "--out", f"{out}/maps"], "--out"),
        "heatmap --image": (["heatmap", "airport", "--model", "tiny", "--timesteps", "100",
                             "--image", str(i / "data" / "airport" / "0.jpg"), "--out", f"{out}/real"], "--out"),
        "grid": (["grid", "airport", *TINY, "--concept", str(i / "concept.safetensors"), "--strengths", "0,1",
                  "--out", f"{out}/grid.png"], "--out"),
        "concepts mine": (["concepts", "mine", str(SCENES / "captions.jsonl"), "--out", f"{out}/review.yaml"], "--out"),
        "concepts merge": (["concepts", "merge", str(i / "review.yaml"), "--into", f"{out}/mine.yaml"], "--into"),
        "evaluate": (["evaluate", "--generated", str(i / "generated"), "--reference", str(i / "reference"),
                      "--features", str(i / "classifier.safetensors"), "--kid-subsets", "2", "--out",
                      f"{out}/report.md"], "--out"),
        "protocol": (["protocol", *TINY, "--concepts", "airport", "--images", "1", "--size", "64", "--no-grid",
                      "--device", "cpu", "--out", f"{out}/protocol"], "--out"),
        "train --save-every": (["train", str(i / "data"), "--model", "tiny", "--steps", "2", "--save-every", "1",
                                "--resolution", "64", "--out", f"{out}/c.safetensors"], "--out"),
        "classifier train": (["classifier", "train", str(i / "data"), "--split", "all", "--epochs", "1", "--size", "32",
                              "--width", "4", "--out", f"{out}/clf.safetensors"], "--out"),
    }


@pytest.mark.skipif(not SCENES.is_dir(), reason=f"shared data not found at {SCENES}")
@pytest.mark.parametrize("kind", ["read-only", "full"])
def test_every_writer_names_its_output_on_a_read_only_or_full_disk(inputs, tmp_path, kind):
    commands = _commands(inputs, tmp_path / "mnt")
    mnt, lines = _in_a_tmpfs(tmp_path, "mount -t tmpfs -o size=256k tmpfs {mnt} && " + PREPARE[kind] + " && {run1} && "
                             "ls -A {mnt}", [argv for argv, _ in commands.values()])
    results = [json.loads(line) for line in lines[:len(commands)]]
    left = set(lines[len(commands):]) - {"filler", "filler2"}
    for (name, (_, flag)), result in zip(commands.items(), results):
        stderr = result["stderr"].strip().splitlines()
        assert result["rc"] == 2, (name, result)
        assert "Traceback" not in result["stderr"], (name, result["stderr"])
        assert stderr[-1].startswith(f"word2scene: error: {flag}: "), (name, stderr)
        assert REASON[kind] in stderr[-1], (name, stderr)
    assert not left, f"left on the {kind} disk: {left}"  # no temp files, locks or half-written outputs


@pytest.mark.skipif(not SCENES.is_dir(), reason=f"shared data not found at {SCENES}")
def test_a_final_save_on_a_full_disk_keeps_the_weights_in_the_temp_folder_and_says_where(inputs, tmp_path):
    from word2scene.concepts.file import read_concept
    from word2scene.models.sd15 import load_sd15

    temp = tmp_path / "temp"
    temp.mkdir()
    mnt = tmp_path / "mnt"
    commands = [["train", str(inputs / "data"), "--model", "tiny", "--steps", "1", "--resolution", "64", "--rank", "4",
                 "--out", f"{mnt}/c.safetensors"],
                ["pretrain", str(inputs / "data"), "--model", "tiny", "--vae-steps", "1", "--steps", "1", "--batch", "2",
                 "--vae-batch", "2", "--resolution", "64", "--vae-crop", "32", "--save-every", "0",
                 "--out", f"{mnt}/m.safetensors"]]
    # 2 pages free: the run starts (its lock takes one), but its weights do not fit at the end
    mnt, lines = _in_a_tmpfs(tmp_path, "mount -t tmpfs -o size=256k tmpfs {mnt} && dd if=/dev/zero of={mnt}/filler "
                             "bs=4096 count=62 2>/dev/null && {run1} && ls -A {mnt}", commands,
                             env={**os.environ, "TMPDIR": str(temp)})
    results = [json.loads(line) for line in lines[:2]]
    for result, name in zip(results, ("c", "m")):
        last = result["stderr"].strip().splitlines()[-1]
        assert result["rc"] == 2 and "Traceback" not in result["stderr"], result
        assert last.startswith(f"word2scene: error: --out: could not write {mnt}/{name}.safetensors: No space left on "
                               f"device; any previous file there is intact; the trained weights are kept in "
                               f"{temp}/{name}.kept-1.safetensors"), last
    assert read_concept(temp / "c.kept-1.safetensors").info.training.steps == 1
    assert load_sd15(temp / "m.kept-1.safetensors").configs["unet"]["block_out_channels"] == [16, 32, 64, 64]
    assert set(lines[2:]) == {"filler"}  # nothing left on the full disk


def test_a_heatmap_set_that_does_not_fit_leaves_the_earlier_set_whole(tmp_path):
    maps = tmp_path / "mnt" / "maps"
    first = [["heatmap", "airport runway", *TINY, "--width", "64", "--out", str(maps)]]
    second = [["heatmap", "beach sand waves", *TINY, "--width", "64", "--out", str(maps), "--overwrite"]]
    # the first set is written, then the disk is filled to 3 free pages: some of the second set fits, not all
    mnt, lines = _in_a_tmpfs(tmp_path, "mount -t tmpfs -o size=1m tmpfs {mnt} && {run1} && ls -A {mnt}/maps && "
                             "free=$(df -B4096 --output=avail {mnt} | tail -1) && "
                             "dd if=/dev/zero of={mnt}/filler bs=4096 count=$((free - 3)) 2>/dev/null && "
                             "{run2} && echo ---- && ls -A {mnt} {mnt}/maps", first, second)
    assert json.loads(lines[0])["rc"] == 0
    split = next(n for n, line in enumerate(lines) if n and line.startswith("{"))
    earlier, result = lines[1:split], json.loads(lines[split])
    last = result["stderr"].strip().splitlines()[-1]
    assert result["rc"] == 2 and last.startswith(f"word2scene: error: --out: could not write the set in {maps}: No "
                                                 "space left on device; nothing of it was kept"), result
    after = lines[lines.index("----") + 1:]
    assert "overlay_00_airport.png" in earlier and "overlay_00_beach.png" not in after
    assert sorted(line for line in after if line and not line.endswith(":")) == sorted(["filler", "maps", *earlier])
