"""Every command that writes, on a read-only and on a full file system: one line naming the
option the user set for the output, exit 2, no traceback, and nothing left behind.

The file systems are real: a tmpfs mounted in a private mount namespace (`unshare -m`),
remounted read-only or filled to the last byte. Where mounting is not allowed (no root, no
user namespaces) the test is skipped with that reason.
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import SHARED
from helpers import make_concept, model_shapes
from word2scene.concepts.file import save_concept

SCENES = SHARED / "data" / "rs_scenes"
TINY = ["--model", "tiny", "--steps", "1"]

# Each command runs in one Python process (torch is imported once) through the CLI's main().
HARNESS = r"""
import contextlib, io, json, sys, traceback
from word2scene.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except SystemExit as exc:
            rc = exc.code
        except BaseException:
            traceback.print_exc(file=err)
            rc = "traceback"
    results.append({"argv": argv, "rc": rc, "stderr": err.getvalue()})
print(json.dumps(results))
"""

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
    reason = _can_mount(tmp_path)
    if reason:
        pytest.skip(reason)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    commands = _commands(inputs, mnt)
    script = (f"mount -t tmpfs -o size=256k tmpfs {mnt} && {PREPARE[kind].format(mnt=mnt)} && "
              f'"$0" -c "$1" "$2" && ls -A {mnt}')
    done = subprocess.run(["unshare", "-m", "sh", "-c", script, sys.executable, HARNESS,
                           json.dumps([argv for argv, _ in commands.values()])],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    results = json.loads(lines[0])
    left = set(lines[1:]) - {"filler", "filler2"}
    for (name, (_, flag)), result in zip(commands.items(), results):
        stderr = result["stderr"].strip().splitlines()
        assert result["rc"] == 2, (name, result)
        assert "Traceback" not in result["stderr"], (name, result["stderr"])
        assert stderr[-1].startswith(f"word2scene: error: {flag}: "), (name, stderr)
        assert REASON[kind] in stderr[-1], (name, stderr)
    assert not left, f"left on the {kind} disk: {left}"  # no temp files, locks or half-written outputs
