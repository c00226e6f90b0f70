"""Atomic writes (files.py): nothing half-written, modes that follow the umask, clear errors."""
import os
import stat
from pathlib import Path

import pytest
from safetensors.torch import save_file
import torch

from word2scene.errors import InputError
from word2scene.files import (ExistingOutput, atomic_path, check_output, check_writable, file_set, keep_elsewhere,
                              load_yaml, output_lock, safe_relative_name, temp_name, write_text_atomic)


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = write_text_atomic(tmp_path / "report.md", "x")
        with atomic_path(tmp_path / "lora.safetensors") as tmp:
            save_file({"w": torch.zeros(2)}, str(tmp))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "lora.safetensors").stat().st_mode) == mode


def test_a_failed_write_keeps_the_old_file_and_names_the_output(tmp_path):
    path = write_text_atomic(tmp_path / "a.txt", "old")
    with pytest.raises(InputError, match=r"^out: could not write .*a\.txt: No space left"):
        with atomic_path(path, overwrite=True) as tmp:
            tmp.write_text("new")
            raise OSError(28, "No space left on device")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    with pytest.raises(InputError, match="exists; pass overwrite to replace it"):
        write_text_atomic(path, "again")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_named(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(InputError, match="^out: cannot write in"):
            write_text_atomic(folder / "a.txt", "x")
    finally:
        folder.chmod(0o700)


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a//b", "a/./b", "C:/x", "a\0b", ""])
def test_names_that_would_leave_their_folder_are_refused(name):
    with pytest.raises(InputError):
        safe_relative_name("concept_name", name)


def test_one_writer_per_output_and_stale_locks_are_taken_over(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "concept.safetensors"
    with output_lock(out) as lock:
        assert lock.read_text() == str(os.getpid())
        with pytest.raises(InputError, match=r"^out: .*concept.safetensors is being written by another run"):
            with output_lock(out):
                pass
    assert not lock.exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock.write_text(dead.stdout.strip())  # a killed run's lock
    with output_lock(out):
        assert lock.read_text() == str(os.getpid())


def test_an_unwritable_destination_is_found_before_work_starts(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(InputError, match="^out: cannot write in"):
        check_writable(blocker / "sub")


def _not_regular_targets(tmp_path):
    """name -> a path holding something that is not a regular file, and how to tell it is intact."""
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    targets = {}
    link = tmp_path / "link.png"
    link.symlink_to(outside)
    targets["symlink"] = (link, lambda: link.is_symlink() and outside.read_text() == "keep me")
    dangling = tmp_path / "dangling.png"
    dangling.symlink_to(tmp_path / "nowhere.png")
    targets["dangling symlink"] = (dangling, lambda: dangling.is_symlink() and not (tmp_path / "nowhere.png").exists())
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    targets["FIFO"] = (fifo, lambda: stat.S_ISFIFO(os.lstat(fifo).st_mode))
    folder = tmp_path / "folder.png"
    folder.mkdir()
    targets["folder"] = (folder, lambda: folder.is_dir())
    device = tmp_path / "null.png"
    try:
        os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a second /dev/null
        targets["device"] = (device, lambda: stat.S_ISCHR(os.lstat(device).st_mode))
    except PermissionError:
        pass  # not root: the other kinds still run
    return targets


@pytest.mark.parametrize("overwrite", [False, True])
def test_targets_that_are_not_regular_files_are_refused_even_with_overwrite(tmp_path, overwrite):
    for kind, (target, intact) in _not_regular_targets(tmp_path).items():
        with pytest.raises(InputError, match=r"^out: .* is .*not a regular file"):
            write_text_atomic(target, "x", overwrite=overwrite)
        with pytest.raises(InputError, match=r"^--out: .* not a regular file"):
            check_output(target, overwrite, "--out")
        assert intact(), kind
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def _race(worker, n: int, *args) -> list:
    """Run worker(barrier, *args) in n processes released together; their results."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=lambda: results.put(worker(barrier, *args))) for _ in range(n)]
    for p in procs:
        p.start()
    out = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    return out


def _exclusive_writer(barrier, path):
    barrier.wait()
    try:
        write_text_atomic(path, str(os.getpid()))
        return "written"
    except ExistingOutput:
        return "refused"


def test_of_several_simultaneous_new_writers_exactly_one_succeeds(tmp_path):
    for trial in range(10):
        path = tmp_path / f"out{trial}.txt"
        results = _race(_exclusive_writer, 4, path)
        assert sorted(results) == ["refused"] * 3 + ["written"], (trial, results)
        assert path.read_text().isdigit()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def _lock_holder(barrier, out, inside):
    barrier.wait()
    try:
        with output_lock(out):
            try:  # only one holder may be here at a time
                os.close(os.open(inside, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return "two holders"
            for _ in range(2000):
                os.stat(out.parent)  # hold it a while without sleeping
            os.unlink(inside)
            return "held"
    except InputError:
        return "refused"


def test_the_output_lock_has_one_holder_at_a_time(tmp_path):
    out = tmp_path / "concept.safetensors"
    held = 0
    for trial in range(100):  # the old lock let two hold it in about 1 trial of 30
        results = _race(_lock_holder, 8, out, tmp_path / "inside")
        assert "two holders" not in results, (trial, results)
        held += results.count("held")
        assert not (tmp_path / "concept.safetensors.lock").exists()
    assert held >= 100


def test_an_empty_lock_file_of_a_live_holder_is_not_taken_over(tmp_path):
    out = tmp_path / "c.safetensors"
    with output_lock(out) as lock:
        os.truncate(lock, 0)  # as a holder that has not written its pid yet looks
        with pytest.raises(InputError, match=r"^out: .* is being written by another run \(lock c.safetensors.lock\)"):
            with output_lock(out):
                pass


def test_temp_files_of_a_killed_writer_are_removed_by_the_next_write(tmp_path):
    import signal
    import subprocess
    import sys

    path = tmp_path / "big.bin"
    script = ("import sys, time; from pathlib import Path; from word2scene.files import atomic_path\n"
              "with atomic_path(Path(sys.argv[1])) as tmp:\n"
              "    tmp.write_bytes(b'x' * 1000); print(tmp, flush=True); time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    leftover = Path(proc.stdout.readline().strip())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert leftover.is_file() and leftover.name.startswith(".big.bin.")  # what kill -9 leaves
    os.utime(leftover, (0, 0))  # unchanged for long: its writer is gone, not merely slow
    fresh = temp_name(tmp_path, "other.bin")
    fresh.write_text("a live writer's file")  # this process is alive: kept
    write_text_atomic(tmp_path / "another.txt", "x")
    assert not leftover.exists() and fresh.exists()


def test_a_failed_set_keeps_the_earlier_set_whole(tmp_path):
    folder = tmp_path / "maps"
    folder.mkdir()
    earlier = [folder / "image.png", folder / "overlay_00_a.png", folder / "overlay_01_b.png"]
    for p in earlier:
        p.write_text("old")
    with pytest.raises(InputError, match=r"^out: could not write the set in .*maps: No space left on device"):
        with file_set(folder, earlier) as staging:
            write_text_atomic(staging / "image.png", "new")
            raise OSError(28, "No space left on device")
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in earlier)
    assert all(p.read_text() == "old" for p in earlier)
    with file_set(folder, earlier) as staging:
        write_text_atomic(staging / "image.png", "new")
        write_text_atomic(staging / "overlay_00_c.png", "new")
    assert sorted(p.name for p in folder.iterdir()) == ["image.png", "overlay_00_c.png"]


def test_yaml_aliases_and_oversized_files_are_refused(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                    "c: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n")
    with pytest.raises(InputError, match=r"^review: .*bomb.yaml:2: the alias \*a is not accepted"):
        load_yaml(bomb, "review")
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * 2000 + "\n")
    with pytest.raises(InputError, match=r"^review: .*big.yaml: 0.0 MiB; accepted: YAML files up to 0 MiB"):
        load_yaml(big, "review", max_bytes=1000)
    plain = tmp_path / "plain.yaml"
    plain.write_text("a: '*not an alias*'\nb: [1, 2]\n")
    assert load_yaml(plain, "review") == {"a": "*not an alias*", "b": [1, 2]}
    tagged = tmp_path / "tagged.yaml"
    tagged.write_text("a: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(InputError, match="cannot be read as YAML"):
        load_yaml(tagged, "review")


def test_weights_that_could_not_be_saved_are_kept_beside_or_in_the_temp_folder(tmp_path, monkeypatch):
    out = tmp_path / "run" / "c.safetensors"
    out.parent.mkdir()
    save = lambda p: write_text_atomic(p, "weights")
    assert keep_elsewhere(out, save).startswith(f"the trained weights are kept in {out.parent / 'c.kept-1.safetensors'}")
    assert keep_elsewhere(out, save).startswith(f"the trained weights are kept in {out.parent / 'c.kept-2.safetensors'}")
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(temp))
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    text = keep_elsewhere(blocked / "c.safetensors", save)
    assert text.startswith(f"the trained weights are kept in {temp / 'c.kept-1.safetensors'}")
    assert (temp / "c.kept-1.safetensors").read_text() == "weights"
