"""The one place that talks to ComfyUI's internals, one module per thing it bridges:
model folders, model loading, LoRA patching, training progress, attention (heat maps) and
HTTP routes.

Imported only by the node modules. ComfyUI modules are imported inside functions so the
node definitions can be read (and checked in CI) without ComfyUI.
"""
from .attention import encode_prompt, explain_passes, heatmap_patched, prompt_columns, sample_image, sample_with_heatmaps
from .folders import (EVALUATION_FOLDER, KNOWLEDGE_FOLDER, LORA_FOLDER, checkpoint_names, checkpoint_path,
                      concept_names, concept_output_folder, concept_path, dataset_folder, evaluation_clip_names,
                      evaluation_path, evaluation_weight_names, file_fingerprint, fingerprint, knowledge_dirs,
                      model_names, model_path, public_text, register_knowledge_folder, sampler_names, scheduler_names,
                      temp_images, user_error, user_path)
from .models import load_narrow_checkpoint
from .lora import apply_concept
from .progress import TrainingReporter, free_device_memory, images_to_tensor, tensor_to_images
from .routes import concept_preview, register_routes

__all__ = ["EVALUATION_FOLDER", "KNOWLEDGE_FOLDER", "LORA_FOLDER", "TrainingReporter", "apply_concept", "checkpoint_names",
           "checkpoint_path", "concept_names", "concept_output_folder", "concept_path", "concept_preview",
           "dataset_folder", "encode_prompt", "evaluation_clip_names", "evaluation_path", "evaluation_weight_names",
           "explain_passes", "file_fingerprint", "fingerprint", "free_device_memory", "heatmap_patched",
           "images_to_tensor", "knowledge_dirs", "load_narrow_checkpoint", "model_names", "model_path",
           "prompt_columns", "public_text", "register_knowledge_folder", "register_routes", "sample_image",
           "sample_with_heatmaps", "sampler_names", "scheduler_names", "temp_images", "tensor_to_images", "user_error",
           "user_path"]
