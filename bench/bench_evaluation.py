"""Benchmark of evaluation against the reference implementations, in one run, on the same
random weights and real images (shared/data/rs_scenes, upscaled to each network's input):

- FID Inception feature extraction: ours vs pytorch-fid's InceptionV3 (images/s);
- Fréchet distance: ours (nuclear norm of the cross-covariance, no sqrtm) vs pytorch-fid's
  calculate_frechet_distance (scipy sqrtm), 2048-d, and the value difference;
- VGG16 conv features (GSHPS): ours vs torchvision's vgg16 (images/s);
- the scene classifier: training time on the 30 classes and held-out accuracy.

Needs torchvision and pytorch-fid (run it with ComfyUI's Python, see README):
  $COMFYUI_PYTHON bench/bench_evaluation.py [--images 64]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from word2scene.evaluation.backbones import InceptionV3, VGG16  # noqa: E402
from word2scene.evaluation.classifier import ClassifierConfig, accuracy, train_classifier  # noqa: E402
from word2scene.evaluation.extractors import FeatureExtractor  # noqa: E402
from word2scene.evaluation.image_sets import image_set, read_images  # noqa: E402
from word2scene.evaluation.metrics import fid  # noqa: E402

SCENES = ROOT.parent / "shared" / "data" / "rs_scenes"


def timed(fn, repeats: int = 2):
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=64, help="images per feature-extraction run")
    ap.add_argument("--classifier-epochs", type=int, default=30)
    args = ap.parse_args()
    import pytorch_fid.inception as pf
    import torchvision.models as tvm
    from pytorch_fid.fid_score import calculate_frechet_distance

    items = image_set(SCENES, "reference")[: args.images]
    images = read_images(items, "reference")
    rows = []
    torch.manual_seed(0)
    with torch.no_grad():
        ours = InceptionV3(num_classes=1008, fid=True).eval()
        pf.load_state_dict_from_url = lambda *a, **k: ours.state_dict()  # never download: same random weights
        reference = pf.InceptionV3([3], resize_input=False, normalize_input=False).eval()
        x = FeatureExtractor("inception", ours, "inception-v3-fid").to_tensor(images)
        t_ours, f_ours = timed(lambda: torch.cat([ours.forward_features(b)["pooled"] for b in x.split(16)]))
        t_ref, f_ref = timed(lambda: torch.cat([reference(b)[0].flatten(1) for b in x.split(16)]))
        rows.append(("FID Inception features (299 px)", "pytorch-fid InceptionV3", len(x) / t_ours, len(x) / t_ref,
                     "images/s", f"max abs diff {float((f_ours - f_ref).abs().max()):.1e}"))
        vgg = VGG16(num_classes=30).eval()
        tv = tvm.vgg16(weights=None, num_classes=30).eval()
        tv.load_state_dict(vgg.state_dict())
        x = FeatureExtractor("vgg16", vgg, "vgg16").to_tensor(images[:32])
        t_ours, c_ours = timed(lambda: torch.cat([vgg.forward_features(b)["conv"] for b in x.split(16)]))
        t_ref, c_ref = timed(lambda: torch.cat([tv.avgpool(tv.features(b)) for b in x.split(16)]))
        rows.append(("VGG16 conv features (224 px, GSHPS)", "torchvision vgg16", len(x) / t_ours, len(x) / t_ref,
                     "images/s", f"max abs diff {float((c_ours - c_ref).abs().max()):.1e}"))
    rng = np.random.default_rng(0)
    for n in (500, 2000):
        a = rng.normal(size=(n, 2048)) @ (rng.normal(size=(2048, 2048)) / 45)
        b = rng.normal(size=(n, 2048)) @ (rng.normal(size=(2048, 2048)) / 45) + 0.1
        t_ours, v_ours = timed(lambda: fid(a, b), 1)

        def reference_fid():
            return calculate_frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
        t_ref, v_ref = timed(reference_fid, 1)
        rows.append((f"Fréchet distance, 2 x {n} x 2048", "pytorch-fid (scipy sqrtm)", 1 / t_ours, 1 / t_ref, "per s",
                     f"relative diff {abs(v_ours - v_ref) / v_ref:.1e}"))
    train = [i for i in image_set(SCENES, "reference", "train")]
    held = [i for i in image_set(SCENES, "reference", "heldout")]
    t = time.perf_counter()
    clf = train_classifier(train, ClassifierConfig(epochs=args.classifier_epochs))
    elapsed = time.perf_counter() - t
    oa = accuracy(clf, held).overall

    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads; images from {SCENES}\n")
    print("| what | reference | ours | reference | ratio (ours / reference) | agreement |")
    print("|---|---|---|---|---|---|")
    for what, ref_name, ours_rate, ref_rate, unit, agree in rows:
        print(f"| {what} | {ref_name} | {ours_rate:.2f} {unit} | {ref_rate:.2f} {unit} | {ours_rate / ref_rate:.2f}x | {agree} |")
    print(f"\nScene classifier (scene-cnn, width 32, 112 px): {args.classifier_epochs} epochs on {len(train)} images "
          f"(30 classes) in {elapsed:.0f} s; held-out overall accuracy {oa:.1%} on {len(held)} images (chance 3.3%).")


if __name__ == "__main__":
    main()
