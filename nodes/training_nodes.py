"""Train Concept: a folder of RS images in, a concept file (and its loss curve and previews) out."""
from __future__ import annotations

from ..word2scene.prompts.knowledge import cached_knowledge
from ..word2scene.models.sd15 import load_sd15
from ..word2scene.settings import node_input
from ..word2scene.training.lora import TrainConfig, blank_preview, TrainingInterrupted, concept_output_path, list_states, loss_curve, train
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
                "trigger_words": node_input(TrainConfig, "trigger_words"),
                "steps": node_input(TrainConfig, "steps"),
                "epochs": node_input(TrainConfig, "epochs"),
                "rank": node_input(TrainConfig, "rank"),
                "alpha": node_input(TrainConfig, "alpha", step=0.5),
                "learning_rate": node_input(TrainConfig, "learning_rate", step=1e-5),
                "batch_size": node_input(TrainConfig, "batch_size"),
                "resolution": node_input(TrainConfig, "resolution", step=64),
                "seed": node_input(TrainConfig, "seed", control_after_generate=True),
                "save_name": ("STRING", {"default": "my_concept", "tooltip": "File name under models/loras/word2scene/."}),
                # in the graph, previews and states are the point of watching a run: on by default
                "preview_every": node_input(TrainConfig, "preview_every", default=100),
                "resume": ("BOOLEAN", {"default": True, "tooltip": "Continue from the latest checkpoint of this save name."}),
            },
            "optional": {
                "module_set": node_input(TrainConfig, "module_set"),
                "text_encoder": node_input(TrainConfig, "text_encoder"),
                "save_every": node_input(TrainConfig, "save_every", default=100),
                "preview_steps": node_input(TrainConfig, "preview_steps"),
                "overwrite": ("BOOLEAN", {"default": False}),
                # last: widget values of workflows saved before it keep their places
                "save_every_epoch": node_input(TrainConfig, "save_every_epoch"),
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
              save_every=100, preview_steps=20, overwrite=False, save_every_epoch=False, unique_id=None):
        out = concept_output_path(comfy_bridge.concept_output_folder(), save_name)
        cfg = TrainConfig(concepts=[c.strip() for c in concepts.split(",") if c.strip()],
                          trigger_words=[t.strip() for t in trigger_words.split(",") if t.strip()], steps=steps,
                          epochs=epochs, rank=rank, alpha=alpha, learning_rate=learning_rate, batch_size=batch_size,
                          resolution=resolution, seed=seed, save_every=save_every, module_set=module_set,
                          text_encoder=text_encoder, preview_every=preview_every, save_every_epoch=save_every_epoch,
                          preview_steps=preview_steps).check()
        states = list_states(out) if resume else []
        device = comfy_bridge.free_device_memory()
        sd = load_sd15(comfy_bridge.checkpoint_path(ckpt_name))
        reporter = comfy_bridge.TrainingReporter(str(unique_id), steps or 1)  # the bar learns the real total
        try:
            result = train(sd, comfy_bridge.dataset_folder(dataset), out, cfg, kb=cached_knowledge(),
                           resume=states[-1] if states else None, overwrite=overwrite, device=device,
                           on_progress=reporter.progress, on_preview=reporter.preview,
                           should_stop=reporter.should_stop)
        except TrainingInterrupted:
            reporter.raise_interrupt()
            raise
        reporter.done(result.summary)
        previews = [im for _, images in result.previews for im in images] or [blank_preview(cfg)]
        return {"ui": {"text": [result.concept.describe() + f"\nsaved: {out}"]},
                "result": (result.concept, comfy_bridge.images_to_tensor([loss_curve(result.losses)]),
                           comfy_bridge.images_to_tensor(previews))}
