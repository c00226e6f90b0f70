"""Train Concept: a folder of RS images in, a concept file (and its loss curve and previews) out."""
from __future__ import annotations

from word2scene.errors import InputError
from word2scene.models.sd15 import load_sd15
from word2scene.prompts.knowledge import cached_knowledge
from word2scene.settings import node_input
from word2scene.scenes.render import loss_curve
from word2scene.training.config import TrainConfig
from word2scene.training.lora import list_states, train
from word2scene.training.outputs import blank_preview, concept_output_path
from word2scene.training.states import TrainingInterrupted
from word2scene.training.reruns import finished_run, next_free_name
from . import comfy_bridge
from .categories import TRAINING
from .concept_nodes import CONCEPT
from .inputs import check_numbers


class TrainConcept:
    NODE_ID = "W2S_TrainConcept"  # saved workflows refer to it: never changes
    DISPLAY_NAME = "Word2Scene Train Concept"
    DESCRIPTION = ("Train a Word2Scene concept LoRA on a folder of remote-sensing images (captions.jsonl, kohya "
                   "'10_name' folders, class folders or images with .txt captions). Saves into models/loras/word2scene/ "
                   "with full metadata; Cancel leaves a resumable checkpoint. Run again unchanged, it gives the finished "
                   "concept back; with other settings it saves under the next free name (NAME-2) unless overwrite is on. "
                   "On a CPU: word2scene-mini.safetensors at resolution 128 trains in minutes; SD1.5 at 512 px takes "
                   "hours.")
    CATEGORY = TRAINING
    RETURN_TYPES = (CONCEPT, "IMAGE", "IMAGE")
    RETURN_NAMES = ("concept", "loss_curve", "previews")
    OUTPUT_TOOLTIPS = ("The trained concept, for Apply Concept.", "Loss per step (chart with axes).",
                       "Preview images over training (one black image when previews are off).")
    OUTPUT_NODE = True
    FUNCTION = "train"
    CORE_INPUTS = {"out": "save_name"}  # the core's name for what this node calls save_name

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "ckpt_name": (comfy_bridge.checkpoint_names(), {"tooltip": "The base model: an SD1.5 checkpoint in "
                              "models/checkpoints, or word2scene-mini.safetensors (shipped; 128 px, CPU-sized)."}),
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
                "save_name": ("STRING", {"default": "my_concept", "tooltip": "File name under models/loras/word2scene/ "
                                         "(subfolders allowed). Taken: the same run gives its concept back, another "
                                         "one saves as NAME-2 unless overwrite is on."}),
                # in the graph, previews and states are the point of watching a run: on by default
                "preview_every": node_input(TrainConfig, "preview_every", default=100),
                "resume": ("BOOLEAN", {"default": True, "tooltip": "Continue from the latest checkpoint of this save "
                                       "name, and give a finished identical run's concept back without training."}),
            },
            "optional": {
                "module_set": node_input(TrainConfig, "module_set"),
                "text_encoder": node_input(TrainConfig, "text_encoder"),
                "save_every": node_input(TrainConfig, "save_every", default=100),
                "preview_steps": node_input(TrainConfig, "preview_steps"),
                "overwrite": ("BOOLEAN", {"default": False, "tooltip": "Replace a concept already saved under "
                                          "save_name (and start afresh) instead of saving under the next free name."}),
                # last: widget values of workflows saved before it keep their places
                "save_every_epoch": node_input(TrainConfig, "save_every_epoch"),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    @classmethod
    def VALIDATE_INPUTS(cls, learning_rate=None, alpha=None):
        return check_numbers(cls, learning_rate=learning_rate, alpha=alpha)

    @classmethod
    def IS_CHANGED(cls, ckpt_name, dataset, save_name, **kwargs):
        # the data, the base model and what is saved under the name: a change to any re-runs the node
        return comfy_bridge.file_fingerprint(lambda: [
            comfy_bridge.checkpoint_path(ckpt_name), comfy_bridge.dataset_folder(dataset),
            *[p for p in [concept_output_path(comfy_bridge.concept_output_folder(), save_name)] if p.exists()]])

    def train(self, *args, **kwargs):
        import torch

        # ComfyUI executes nodes under inference mode; weights loaded there cannot be trained.
        with torch.inference_mode(False), torch.enable_grad():
            return self._train(*args, **kwargs)

    def _train(self, ckpt_name, dataset, concepts, trigger_words, steps, epochs, rank, alpha, learning_rate, batch_size,
               resolution, seed, save_name, preview_every, resume, module_set="attention", text_encoder=False,
               save_every=100, preview_steps=20, overwrite=False, save_every_epoch=False, unique_id=None):
        cfg = TrainConfig(concepts=[c.strip() for c in concepts.split(",") if c.strip()],
                          trigger_words=[t.strip() for t in trigger_words.split(",") if t.strip()], steps=steps,
                          epochs=epochs, rank=rank, alpha=alpha, learning_rate=learning_rate, batch_size=batch_size,
                          resolution=resolution, seed=seed, save_every=save_every, module_set=module_set,
                          text_encoder=text_encoder, preview_every=preview_every, save_every_epoch=save_every_epoch,
                          preview_steps=preview_steps).check()
        out = concept_output_path(comfy_bridge.concept_output_folder(), save_name)
        folder = comfy_bridge.dataset_folder(dataset)
        reporter = comfy_bridge.TrainingReporter(str(unique_id), steps or 1, preview_every)  # the bar learns the real total
        kb = cached_knowledge()
        try:
            return self._run(ckpt_name, folder, cfg, out, resume, overwrite, reporter, kb)
        except TrainingInterrupted:
            reporter.phase("error", "cancelled: a resumable checkpoint was kept; run again with resume on to continue")
            reporter.raise_interrupt()
            raise
        except InputError as exc:
            reporter.phase("error", f"error: {comfy_bridge.user_error(exc, self.CORE_INPUTS)}")
            raise
        except Exception as exc:
            reporter.phase("error", f"error: {type(exc).__name__}: {comfy_bridge.public_text(str(exc))}")
            raise

    def _run(self, ckpt_name, folder, cfg, out, resume, overwrite, reporter, kb):
        if resume and not overwrite:
            done = finished_run(out, cfg, folder, kb)
            if done is not None:
                name = comfy_bridge.user_path(out)
                reporter.phase("done", f"done: {name} is this run, finished (same settings and data); not trained "
                                       "again. Change a setting, or turn overwrite on, to train anew")
                return self._result(done, name, [], [blank_preview(cfg)], f"unchanged: {name} (this run, finished)")
        asked = out
        if not overwrite and out.exists():
            out = next_free_name(out)
        states = list_states(out) if resume and not overwrite else []
        reporter.phase("loading", f"loading {ckpt_name}")
        device = comfy_bridge.free_device_memory()
        sd = load_sd15(comfy_bridge.checkpoint_path(ckpt_name))
        reporter.phase("encoding", "reading the images and encoding them (latents, captions)")
        result = train(sd, folder, out, cfg, kb=kb, resume=states[-1] if states else None, overwrite=overwrite,
                       device=device, on_progress=reporter.progress, on_preview=reporter.preview,
                       should_stop=reporter.should_stop, input_names=self.CORE_INPUTS)
        name = comfy_bridge.user_path(out)
        reporter.done({**result.summary, "out": name})
        note = "" if out == asked else f" ({comfy_bridge.user_path(asked)} holds another run; overwrite replaces it)"
        previews = [im for _, images in result.previews for im in images] or [blank_preview(cfg)]
        return self._result(result.concept, name, result.losses, previews, f"saved: {name}{note}")

    @staticmethod
    def _result(concept, name, losses, previews, line):
        return {"ui": {"text": [concept.describe() + f"\n{line}"], "saved": [name]},
                "result": (concept, comfy_bridge.images_to_tensor([loss_curve(losses)]),
                           comfy_bridge.images_to_tensor(previews))}
