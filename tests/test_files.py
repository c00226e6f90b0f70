"""Atomic writes (files.py): nothing half-written, modes that follow the umask, clear errors."""
import os
import stat

import pytest
from safetensors.torch import save_file
import torch

from word2scene.errors import InputError
from word2scene.files import atomic_path, check_writable, output_lock, safe_relative_name, write_text_atomic


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
    with pytest.raises(InputError, match="already exists"):
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
