"""Train Concept: a folder of RS images in, a concept file (and its loss curve and previews) out."""
from __future__ import annotations

from ..word2scene.concepts.file import DEFAULT_TRIGGER_WORDS
from ..word2scene.prompts.knowledge import cached_knowledge
from ..word2scene.models.sd15 import load_sd15
from ..word2scene.training.lora import TrainConfig, TrainingInterrupted, concept_output_path, list_states, loss_curve, train
from . import comfy_bridge
from .concept_nodes import CATEGORY, CONCEPT


class TrainConcept:
    DESCRIPTION = ("Train a Word2Scene concept LoRA on a folder of remote-sensing images (captions.jsonl, kohya "
                   "'10_name' folders, class folders or images with .txt captions). Saves into models/loras/word2scene/ "
                   "with full metadata; Cancel leaves a resumable checkpoint.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (CONCEPT, "IMAGE", "IMAGE")
    RETURN_NAMES = ("concept", "loss_curve", "previews")
    OUTPUT_TOOLTIPS = ("The trained concept, for Apply Concept.", "Loss per step.", "Preview images over training.")
    OUTPUT_NODE = True
    FUNCTION = "train"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "ckpt_name": (comfy_bridge.checkpoint_names(), {"tooltip": "SD1.5 checkpoint to train on."}),
                "dataset": ("STRING", {"default": "", "tooltip": "Folder of training images (absolute, or relative to "
                                       "ComfyUI's input folder)."}),
                "concepts": ("STRING", {"default": "", "tooltip": "Concept word(s), comma-separated: restricts class "
                                        "folders, or names a flat folder's concept. Empty: every class."}),
                "trigger_words": ("STRING", {"default": ", ".join(DEFAULT_TRIGGER_WORDS)}),
                "steps": ("INT", {"default": 1000, "min": 1, "max": 1_000_000}),
                "epochs": ("INT", {"default": 0, "min": 0, "max": 10_000, "tooltip": "> 0: train whole epochs instead of steps."}),
                "rank": ("INT", {"default": 16, "min": 1, "max": 256}),
                "alpha": ("FLOAT", {"default": 16.0, "min": 0.01, "max": 1024.0, "step": 0.5}),
                "learning_rate": ("FLOAT", {"default": 1e-4, "min": 1e-7, "max": 0.1, "step": 1e-5, "round": False}),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 64}),
                "resolution": ("INT", {"default": 512, "min": 64, "max": 2048, "step": 64}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFF, "control_after_generate": True}),
                "save_name": ("STRING", {"default": "my_concept", "tooltip": "File name under models/loras/word2scene/."}),
                "preview_every": ("INT", {"default": 100, "min": 0, "max": 1_000_000, "tooltip": "0: only at the end."}),
                "resume": ("BOOLEAN", {"default": True, "tooltip": "Continue from the latest checkpoint of this save name."}),
            },
            "optional": {
                "module_set": (["attention", "kohya"], {"default": "attention"}),
                "text_encoder": ("BOOLEAN", {"default": False}),
                "save_every": ("INT", {"default": 100, "min": 0, "max": 1_000_000}),
                "preview_steps": ("INT", {"default": 20, "min": 1, "max": 200, "tooltip": "Sampling steps per preview."}),
                "overwrite": ("BOOLEAN", {"default": False}),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    def train(self, *args, **kwargs):
        import torch

        # ComfyUI executes nodes under inference mode; weights loaded there cannot be trained.
        with torch.inference_mode(False), torch.enable_grad():
            return self._train(*args, **kwargs)

    def _train(self, ckpt_name, dataset, concepts, trigger_words, steps, epochs, rank, alpha, learning_rate, batch_size,
              resolution, seed, save_name, preview_every, resume, module_set="attention", text_encoder=False,
              save_every=100, preview_steps=20, overwrite=False, unique_id=None):
        out = concept_output_path(comfy_bridge.concept_output_folder(), save_name)
        cfg = TrainConfig(concepts=[c.strip() for c in concepts.split(",") if c.strip()],
                          trigger_words=[t.strip() for t in trigger_words.split(",") if t.strip()], steps=steps,
                          epochs=epochs, rank=rank, alpha=alpha, learning_rate=learning_rate, batch_size=batch_size,
                          resolution=resolution, seed=seed, save_every=save_every, module_set=module_set,
                          text_encoder=text_encoder, preview_every=preview_every or steps,
                          preview_steps=preview_steps).check()
        states = list_states(out) if resume else []
        device = comfy_bridge.free_device_memory()
        sd = load_sd15(comfy_bridge.checkpoint_path(ckpt_name))
        reporter = comfy_bridge.TrainingReporter(str(unique_id), steps)
        try:
            result = train(sd, comfy_bridge.dataset_folder(dataset), out, cfg, kb=cached_knowledge(),
                           resume=states[-1] if states else None, overwrite=overwrite, device=device,
                           on_progress=reporter.progress, on_preview=reporter.preview,
                           should_stop=reporter.should_stop)
        except TrainingInterrupted:
            reporter.raise_interrupt()
            raise
        reporter.done(result.summary)
        previews = [im for _, images in result.previews for im in images]
        return {"ui": {"text": [result.concept.describe() + f"\nsaved: {out}"]},
                "result": (result.concept, comfy_bridge.images_to_tensor([loss_curve(result.losses)]),
                           comfy_bridge.images_to_tensor(previews))}
