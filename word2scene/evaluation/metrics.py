"""Image-set metrics on features (N x D float arrays): the paper's GSHPS, FID, KID, and
CLIP score from a user's CLIP weights."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..models.sd15 import load_tokenizer
from ..errors import InputError
from ..imagery import fit_square


def _two_sets(a: np.ndarray, b: np.ndarray, least: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise InputError("features", f"need two N x D arrays with the same D; got {a.shape} and {b.shape}")
    if len(a) < least or len(b) < least:
        raise InputError("images", f"this metric needs at least {least} images per set; got {len(a)} and {len(b)}")
    return a, b


def gshps(generated: np.ndarray, reference: np.ndarray) -> float:
    """The paper's geographic scene holistic perceptual similarity: cosine similarity of the
    mean conv feature (VGG16: 512 x 7 x 7 flattened) of the generated set and of the
    reference set. 1 = the same mean; higher is better."""
    a, b = _two_sets(generated, reference, 1)
    ma, mb = a.mean(0), b.mean(0)
    denom = np.linalg.norm(ma) * np.linalg.norm(mb)
    if denom == 0:
        raise InputError("features", "a mean feature is all zeros; cosine similarity is undefined")
    return float(ma @ mb / denom)


def fid(generated: np.ndarray, reference: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets:
    |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2)).

    tr((S_a S_b)^(1/2)) is computed exactly as the nuclear norm of A B^T / sqrt((n_a-1)(n_b-1))
    with A, B the centred feature rows: its singular values are the square roots of the
    eigenvalues of S_a S_b. This needs no matrix square root (no scipy) and costs
    n_a x n_b x D, not D^3, so a 25,088-d feature is as cheap as a 2,048-d one."""
    a, b = _two_sets(generated, reference, 2)
    ca, cb = a - a.mean(0), b - b.mean(0)
    scale = np.sqrt((len(a) - 1) * (len(b) - 1))
    cross = np.linalg.svd(ca @ cb.T / scale, compute_uv=False).sum()
    trace_a = (ca * ca).sum() / (len(a) - 1)
    trace_b = (cb * cb).sum() / (len(b) - 1)
    mean_term = float(((a.mean(0) - b.mean(0)) ** 2).sum())
    return max(0.0, mean_term + float(trace_a + trace_b - 2.0 * cross))


KID_SUBSET_SIZE = 1000  # torch-fidelity's default subset size


def kid(generated: np.ndarray, reference: np.ndarray, subsets: int = 100, subset_size: int = KID_SUBSET_SIZE,
        seed: int = 0) -> tuple[float, float]:
    """Kernel inception distance: unbiased MMD^2 with the cubic polynomial kernel
    k(x, y) = (x.y / D + 1)^3, averaged over random subsets of `subset_size` drawn from each
    set. A subset larger than either set is an error, as in torch-fidelity (no silent cap).
    Returns (mean, standard deviation over subsets)."""
    a, b = _two_sets(generated, reference, 2)
    if not 2 <= subset_size <= min(len(a), len(b)):
        raise InputError("kid_subset_size", f"{subset_size} is not accepted for sets of {len(a)} generated and "
                                            f"{len(b)} reference images; use 2 to {min(len(a), len(b))}")
    m = subset_size
    rng = np.random.default_rng(seed)
    d = a.shape[1]
    values = []
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        values.append((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                      - 2 * kxy.mean())
    return float(np.mean(values)), float(np.std(values))


class ClipScorer:
    """CLIP score = 100 x max(cosine(image embedding, text embedding), 0), from a local
    transformers CLIP folder (config.json + weights; tokenizer files optional: SD1.5's
    bundled CLIP tokenizer is used when absent). Nothing is downloaded."""

    def __init__(self, folder: str | Path, device: str = "cpu"):
        from transformers import CLIPModel

        folder = Path(folder) if folder else None
        if folder is None or not (folder / "config.json").is_file():
            raise InputError("clip", f"{folder} is not a CLIP folder; pass a local transformers CLIP model folder "
                                     "(config.json + model.safetensors), e.g. an RS CLIP you saved with save_pretrained")
        try:
            self.model = CLIPModel.from_pretrained(str(folder), local_files_only=True).eval().to(device)
        except Exception as exc:  # noqa: BLE001 - a broken folder is the user's input
            raise InputError("clip", f"{folder} cannot be loaded as a CLIP model ({type(exc).__name__}: {exc})") from None
        self.tokenizer = self._tokenizer(folder)
        self.device = device
        self.name = f"CLIP ({folder.name})"
        vision = self.model.config.vision_config
        self.size = int(vision.image_size)
        self.mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
        self.std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)

    @staticmethod
    def _tokenizer(folder: Path):
        from transformers import CLIPTokenizer

        if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
            return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)

        return load_tokenizer()

    @torch.no_grad()
    def scores(self, images: list[Image.Image], texts: list[str], batch_size: int = 32) -> np.ndarray:
        """One score per (image, text) pair."""

        if len(images) != len(texts):
            raise InputError("texts", f"{len(texts)} texts for {len(images)} images; give one per image")
        out = []
        limit = self.model.config.text_config.max_position_embeddings
        for i in range(0, len(images), batch_size):
            pixels = np.stack([np.asarray(fit_square(im.convert("RGB"), self.size)) for im in images[i:i + batch_size]])
            x = (torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255.0 - self.mean) / self.std
            ids = self.tokenizer(texts[i:i + batch_size], padding="max_length", truncation=True, max_length=limit,
                                 return_tensors="pt")
            image_embeds = self.model.get_image_features(pixel_values=x.to(self.device))
            text_embeds = self.model.get_text_features(input_ids=ids.input_ids.to(self.device),
                                                       attention_mask=ids.attention_mask.to(self.device))
            image_embeds = getattr(image_embeds, "pooler_output", image_embeds)
            text_embeds = getattr(text_embeds, "pooler_output", text_embeds)
            cos = torch.nn.functional.cosine_similarity(image_embeds.float(), text_embeds.float(), dim=-1)
            out.append((100.0 * cos.clamp(min=0)).cpu().numpy())
        return np.concatenate(out).astype(np.float64)


_SCORERS: dict = {}


def clip_scorer(folder: str | Path, device: str = "cpu") -> ClipScorer:
    """A ClipScorer, kept while the folder's files are unchanged (the last one loaded)."""
    folder = Path(folder)
    stamp = tuple(sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in folder.iterdir() if p.is_file())) \
        if folder.is_dir() else ()
    key = (str(folder.resolve()), stamp, device)
    if key not in _SCORERS:
        _SCORERS.clear()
        _SCORERS[key] = ClipScorer(folder, device)
    return _SCORERS[key]
