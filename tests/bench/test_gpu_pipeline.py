"""The prepared GPU run (bench/gpu_pipeline.py) at its tiny scale on the CPU: every stage
runs and writes its files, and a second call resumes (skips what is done)."""
import json
import shutil
import subprocess
import sys

import pytest

from conftest import SHARED


AID, RS = SHARED / "data" / "aid", SHARED / "data" / "rs_scenes"
pytestmark = pytest.mark.skipif(not AID.is_dir() or not RS.is_dir(), reason=f"shared data not found at {SHARED / 'data'}")
CLASSES = ("church", "airport")  # one of the paper's 11 concepts, one of the 19


def subset(source, dest, keep) -> None:
    rows = [json.loads(line) for line in (source / "captions.jsonl").read_text().splitlines() if line.strip()]
    rows = keep(rows)
    for r in rows:
        (dest / r["file"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / r["file"], dest / r["file"])
    (dest / "captions.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def test_the_prepared_gpu_run_runs_every_stage_at_tiny_scale_and_resumes(tmp_path):
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    data, described, out = tmp_path / "aid", tmp_path / "described", tmp_path / "out"
    subset(AID, data, lambda rows: [r for c in CLASSES for s, n in (("train", 4), ("test", 2))
                                    for r in [r for r in rows if r["class"] == c and r["split"] == s][:n]])
    subset(RS, described, lambda rows: [r for c in CLASSES for r in [r for r in rows if r["class"] == c
                                                                     and r["split"] == "heldout"][:2]])
    command = [sys.executable, str(root / "bench" / "gpu_pipeline.py"), "--out", str(out), "--device", "cpu",
               "--scale", "tiny", "--dataset", str(data), "--described", str(described)]
    first = subprocess.run(command, capture_output=True, text=True, cwd=root)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for name in ("word2scene-mini.safetensors", "word2scene-mini-c.safetensors", "word2scene-mini-concept.safetensors",
                 "bench_vae/report.md", "bench_vae/reconstructions.png", "bench_mini/report.md",
                 "bench_mini/results.json"):
        assert (out / name).is_file(), name
    timings = json.loads((out / "timings.json").read_text())
    assert set(timings) == {"pretrain", "concept_c", "concept_11", "bench_vae", "bench_mini"}
    results = json.loads((out / "bench_mini" / "results.json").read_text())
    description_rows = [r for r in results["rows"] if r.startswith("test-set descriptions")]
    assert len(description_rows) == 1 and results["rows"][description_rows[0]]["images"] == 4  # 2 classes x 2 held-out images x 1 caption
    assert set(results["diversity"]) == set(CLASSES)
    assert "thumbnail" in (out / "bench_vae" / "report.md").read_text()
    again = subprocess.run(command, capture_output=True, text=True, cwd=root)
    assert again.returncode == 0 and again.stdout.count("already done") == 5
