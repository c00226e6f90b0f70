"""Training inside ComfyUI: device memory, the progress bar, live messages and Cancel;
IMAGE tensors to and from PIL."""
from __future__ import annotations


def tensor_to_images(image) -> list:
    """ComfyUI IMAGE (B x H x W x 3, 0-1) -> PIL RGB images."""
    import numpy as np
    from PIL import Image

    return [Image.fromarray((im.cpu().numpy().clip(0, 1) * 255).round().astype(np.uint8)) for im in image]


def images_to_tensor(images):
    """PIL images (same size) -> ComfyUI IMAGE, B x H x W x 3 floats in 0-1."""
    import numpy as np
    import torch

    return torch.from_numpy(np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0 for im in images]))


def free_device_memory() -> str:
    """Unload ComfyUI's models from the device before training; returns the device to train on."""
    import comfy.model_management as mm

    mm.unload_all_models()
    mm.soft_empty_cache()
    device = mm.get_torch_device()
    return "cpu" if device.type == "cpu" else str(device)


class TrainingReporter:
    """Progress bar, live messages for the frontend (phase, loss, ETA, previews) and Cancel.

    Each message carries the node id; a phase message says what the run is doing between
    steps (loading, encoding, drawing previews, saving) and how it ended (done, error), so
    the panel never shows a stale step count while something else takes the time."""

    EVENT = "word2scene.training"

    def __init__(self, node_id: str, total: int, preview_every: int = 0):
        import comfy.utils

        self.node_id = node_id
        self.preview_every = preview_every
        self.bar = comfy.utils.ProgressBar(total)

    def _send(self, payload: dict) -> None:
        try:
            from server import PromptServer

            PromptServer.instance.send_sync(self.EVENT, {"node": self.node_id, **payload})
        except Exception:  # no server (in-process use): progress bar only
            pass

    def phase(self, name: str, status: str) -> None:
        """name: loading | encoding | training | previews | saving | done | error; status: the line to show."""
        self._send({"phase": name, "status": status})

    def progress(self, p) -> None:
        if not self.should_stop():  # ComfyUI's progress hook raises on Cancel; let training save its state first
            self.bar.update_absolute(p.step, p.total)
        self.last_total = p.total
        self._send({"phase": "training", "step": p.step, "total": p.total, "loss": p.loss, "lr": p.lr, "eta": p.eta,
                    "elapsed": p.elapsed, "images_per_second": p.images_per_second})
        if self.preview_every and (p.step % self.preview_every == 0 or p.step == p.total):
            self.phase("previews", f"step {p.step}/{p.total}: drawing previews")
        elif p.step == p.total:
            self.phase("saving", f"step {p.step}/{p.total}: saving the concept")

    def preview(self, step: int, images) -> None:
        import base64
        import io

        encoded = []
        for image in images[:4]:
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            encoded.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
        self._send({"step": step, "previews": encoded})
        if step == getattr(self, "last_total", None):
            self.phase("saving", f"step {step}/{step}: saving the concept")

    def done(self, summary: dict) -> None:
        self._send({"phase": "done", "summary": summary})

    @staticmethod
    def should_stop() -> bool:
        import comfy.model_management as mm

        return bool(mm.processing_interrupted())

    @staticmethod
    def raise_interrupt() -> None:
        import comfy.model_management as mm

        mm.throw_exception_if_processing_interrupted()
