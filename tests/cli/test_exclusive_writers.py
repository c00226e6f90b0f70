"""Writers are exclusive and never write through what is not a regular file: runs released at
the same moment into one output (heat-map folders, generate's default names) never mix or
collide, and --out on a device, FIFO or symbolic link is refused, --overwrite or not."""
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import CLI_RUNNER, runner_input
from word2scene.cli import main

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--model", "tiny", "--steps", "2", "--width", "64"]

def released_together(trials: list[list[list[str]]], cwd: Path) -> list[list[dict]]:
    """For each trial, one command line per process, all sent at the same moment; the
    processes (one per command line of a trial) import everything once, beforehand."""
    procs = [subprocess.Popen([sys.executable, "-c", CLI_RUNNER], cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}) for _ in trials[0]]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        results = []
        for argvs in trials:
            for p, argv in zip(procs, argvs):
                p.stdin.write(runner_input([argv]))
                p.stdin.flush()
            results.append([json.loads(p.stdout.readline()) for p in procs])
            for r in results[-1]:
                assert "Traceback" not in r["stderr"], r["stderr"]
        return results
    finally:
        for p in procs:
            p.stdin.close()
            p.wait(timeout=60)


def test_generate_without_out_picks_its_name_when_it_writes(tmp_path):
    for results in released_together([[["generate", "airport", *TINY]] * 3] * 3, tmp_path):
        assert [r["rc"] for r in results] == [0, 0, 0], results
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == [f"airport_0_{n:05d}.png" for n in range(1, 10)]


def test_two_heatmap_runs_into_one_folder_never_mix_their_sets(tmp_path):
    outs = [tmp_path / f"maps{trial}" for trial in range(3)]
    trials = [[["heatmap", "airport runway", *TINY, "--out", str(out)], ["heatmap", "beach sand waves", *TINY, "--out",
                                                                          str(out)]] for out in outs]
    for trial, (out, results) in enumerate(zip(outs, released_together(trials, tmp_path))):
        assert sorted(r["rc"] for r in results) == [0, 2], results
        [refused] = [r for r in results if r["rc"] == 2]
        assert "error: --out: " in refused["stderr"]
        assert "being written by another run" in refused["stderr"] or "heat maps of an earlier run" in refused["stderr"]
        scores = json.loads((out / "scores.json").read_text())
        overlays = sorted(p.name for p in out.glob("overlay_*.png"))
        assert overlays == sorted(f"overlay_{i:02d}_{w}.png" for i, w in enumerate(scores["words"]))  # one run's set
        assert not (tmp_path / f"maps{trial}.lock").exists()


def _not_regular(tmp_path) -> dict[str, Path]:
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"keep")
    found = {"symlink": tmp_path / "link.png", "FIFO": tmp_path / "fifo.png"}
    found["symlink"].symlink_to(outside)
    os.mkfifo(found["FIFO"])
    try:
        os.mknod(tmp_path / "null.png", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        found["device"] = tmp_path / "null.png"
    except PermissionError:
        pass  # not root: a device node cannot be made here; the other kinds still run
    return found


@pytest.mark.parametrize("command", ["generate", "grid", "heatmap --process", "generate --process"])
def test_out_on_a_device_fifo_or_symlink_is_refused_even_with_overwrite(tmp_path, capsys, command):
    from helpers import make_concept, model_shapes
    from word2scene.concepts.file import save_concept
    from word2scene.models.sd15 import build_tiny

    concept = save_concept(make_concept(model_shapes(build_tiny())), tmp_path / "c.safetensors")
    for kind, target in _not_regular(tmp_path).items():
        before = os.lstat(target)
        argv = {"generate": ["generate", "airport", *TINY, "--out", str(target), "--overwrite"],
                "grid": ["grid", "airport", *TINY, "--concept", str(concept), "--strengths", "0,1", "--out", str(target),
                         "--overwrite"],
                "heatmap --process": ["heatmap", "airport", *TINY, "--out", str(tmp_path / "maps"), "--overwrite",
                                      "--process", str(target.with_suffix(".gif")) if kind == "device" else str(target)],
                "generate --process": ["generate", "airport", *TINY, "--out", str(tmp_path / "a.png"), "--overwrite",
                                       "--process", str(target)]}[command]
        if kind == "device" and command.endswith("--process"):
            os.rename(target, target.with_suffix(".gif"))  # an animation name: only its kind is wrong
            target = target.with_suffix(".gif")
            before = os.lstat(target)
            argv[-1] = str(target)
        elif command.endswith("--process"):
            target.rename(target.with_suffix(".webp"))
            target = target.with_suffix(".webp")
            before = os.lstat(target)
            argv[-1] = str(target)
        assert main(argv) == 2, (kind, command)
        err = capsys.readouterr().err
        flag = "--process" if command.endswith("--process") else "--out"
        assert f"error: {flag}: {target} is " in err and "not a regular file" in err, (kind, err)
        assert "sampling" not in err  # refused before any work
        after = os.lstat(target)
        assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode), kind
    assert (tmp_path / "outside.png").read_bytes() == b"keep"


def test_process_is_checked_before_sampling(tmp_path, capsys):
    assert main(["generate", "airport", *TINY, "--out", str(tmp_path / "a.png"), "--process", str(tmp_path / "p.mp4")]) == 2
    err = capsys.readouterr().err
    assert "error: --process: p.mp4: use a .webp or .gif file" in err and "sampling" not in err
    assert not (tmp_path / "a.png").exists()


def test_outputs_of_the_other_commands_that_are_not_regular_files_are_refused_at_once(tmp_path):
    import yaml

    review = tmp_path / "review.yaml"
    review.write_text(yaml.safe_dump({"classes": {"airport": {"concept": "airport", "add": [
        {"kind": "element", "text": "apron"}]}}}))
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    (tmp_path / "file").write_text("not a folder")
    commands = {  # a FIFO read for merging would block for ever: each must end at once, naming its option
        "concepts merge": (["concepts", "merge", str(review), "--into", str(fifo)], "--into"),
        "concepts mine": (["concepts", "mine", str(review), "--out", str(fifo), "--overwrite"], "--out"),
        "evaluate": (["evaluate", "--generated", str(tmp_path), "--reference", str(tmp_path), "--out", str(fifo)],
                     "--out"),
        "protocol": (["protocol", "--model", "tiny", "--out", str(tmp_path / "file")], "--out"),
    }
    for name, (argv, flag) in commands.items():
        done = subprocess.run([sys.executable, "-m", "word2scene", *argv], cwd=ROOT, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 2 and f"error: {flag}: " in done.stderr, (name, done.stderr[-2000:])
        assert "not a regular file" in done.stderr or "not a folder" in done.stderr, (name, done.stderr)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
