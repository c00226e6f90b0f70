import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
SHARED = Path(os.environ.get("W2S_SHARED", ROOT.parent / "shared"))
# the secret that seals a review's dataset (captions.review): one for the test session, not the user's
os.environ.setdefault("W2S_REVIEW_KEY", str(Path(tempfile.mkdtemp(prefix="w2s-review-key-")) / "review.key"))


@pytest.fixture(scope="session")
def tiny():
    from word2scene.models.sd15 import build_tiny

    return build_tiny()


@pytest.fixture
def fresh_tiny():
    """A tiny model a test may patch (the session one must stay unpatched)."""
    from word2scene.models.sd15 import build_tiny

    return build_tiny()


CACHE = Path(os.environ.get("W2S_TEST_CACHE", Path.home() / ".cache" / "word2scene-tests"))


@pytest.fixture(scope="session")
def sd15_random_checkpoint() -> Path:
    """A random-weight, full-size SD1.5 single-file checkpoint (fp16, ~2 GB), built once
    and cached in W2S_TEST_CACHE (default ~/.cache/word2scene-tests)."""
    from word2scene.models.sd15 import build_random, save_single_file, sd15_configs

    path = CACHE / "sd15-random-fp16.safetensors"
    if not path.exists():
        import torch

        save_single_file(build_random(sd15_configs(), seed=0, name="sd15-random"), path, dtype=torch.float16)
    return path


@pytest.fixture(scope="session")
def sd15_concept_file(tmp_path_factory) -> Path:
    """A concept for full-size SD1.5 (kohya module set plus text encoder)."""
    from helpers import make_concept, sd15_full_shapes
    from word2scene.concepts.file import save_concept

    path = tmp_path_factory.mktemp("concepts") / "test_concept.safetensors"
    return save_concept(make_concept(sd15_full_shapes(), rank=4, alpha=2.0, module_set="kohya", text_encoder=True), path)
