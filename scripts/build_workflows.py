"""Write the example workflows (ComfyUI UI format) from compact graph descriptions.

The JSON files in workflows/ are generated here and committed; edit this file, then run
`python scripts/build_workflows.py`. Each graph is a list of nodes:
(id, type, widget values, {input name: (source id, source slot)}), laid out in columns
(lists of node ids, top to bottom) with room for what each node grows to after a run (its
panels and images), so that no two nodes overlap in either frontend (tests/nodes/test_browser.py
measures them).
"""
from __future__ import annotations

import json
from pathlib import Path

# ComfyUI's template browser lists and serves <pack>/workflows/*.json too (app/custom_node_manager.py
# accepts example_workflows, example, examples, workflow and workflows); a second copy would be listed twice.
WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"

# Output slots (name, type) of the node types these graphs use.
OUTPUTS = {
    "CheckpointLoaderSimple": [("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")],
    "W2S_ConceptLoader": [("concept", "W2S_CONCEPT"), ("metadata", "STRING")],
    "W2S_ApplyConcept": [("MODEL", "MODEL"), ("CLIP", "CLIP")],
    "CLIPTextEncode": [("CONDITIONING", "CONDITIONING")],
    "EmptyLatentImage": [("LATENT", "LATENT")],
    "KSampler": [("LATENT", "LATENT")],
    "VAEDecode": [("IMAGE", "IMAGE")],
    "SaveImage": [],
    "W2S_TrainConcept": [("concept", "W2S_CONCEPT"), ("loss_curve", "IMAGE"), ("previews", "IMAGE")],
    "PreviewImage": [],
    "W2S_KSamplerHeatmaps": [("LATENT", "LATENT"), ("heatmaps", "W2S_HEATMAPS")],
    "W2S_ExplainImage": [("heatmaps", "W2S_HEATMAPS")],
    "W2S_Heatmap": [("overlays", "IMAGE"), ("masks", "MASK"), ("scores", "STRING")],
    "MaskToImage": [("IMAGE", "IMAGE")],
    "W2S_StrengthGrid": [("grid", "IMAGE"), ("cells", "IMAGE")],
    "LoadImage": [("IMAGE", "IMAGE"), ("MASK", "MASK")],
    "W2S_Evaluate": [("report", "STRING"), ("gshps", "FLOAT"), ("fid", "FLOAT"), ("kid", "FLOAT")],
    "W2S_ScenePrompt": [("positive", "STRING"), ("negative", "STRING"), ("report", "STRING"),
                        ("positive_cond", "CONDITIONING"), ("negative_cond", "CONDITIONING"), ("filename_prefix", "STRING")],
    "W2S_MiniLoader": [("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")],
    "Note": [],
}
# Input slots (name, type) in the order ComfyUI lists them (links only, not widgets).
INPUTS = {
    "W2S_ApplyConcept": [("model", "MODEL"), ("clip", "CLIP"), ("concept", "W2S_CONCEPT")],
    "CLIPTextEncode": [("clip", "CLIP")],
    "KSampler": [("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"), ("latent_image", "LATENT")],
    "VAEDecode": [("samples", "LATENT"), ("vae", "VAE")],
    "SaveImage": [("images", "IMAGE"), ("filename_prefix", "STRING")],
    "W2S_ScenePrompt": [("concept", "W2S_CONCEPT"), ("clip", "CLIP")],
    "PreviewImage": [("images", "IMAGE")],
    "W2S_KSamplerHeatmaps": [("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                             ("latent_image", "LATENT"), ("clip", "CLIP"), ("prompt", "STRING")],
    "W2S_ExplainImage": [("image", "IMAGE"), ("model", "MODEL"), ("clip", "CLIP"), ("vae", "VAE")],
    "W2S_Heatmap": [("heatmaps", "W2S_HEATMAPS"), ("image", "IMAGE")],
    "MaskToImage": [("mask", "MASK")],
    "W2S_StrengthGrid": [("model", "MODEL"), ("clip", "CLIP"), ("vae", "VAE")],
    "W2S_Evaluate": [("images", "IMAGE")],
}
# Inputs that are widgets fed by a link (shown as a socket on the widget; its value stays in widgets_values).
WIDGET_INPUTS = {("SaveImage", "filename_prefix"), ("W2S_KSamplerHeatmaps", "prompt")}
TITLES = {"W2S_ConceptLoader": "Word2Scene Concept Loader", "W2S_ApplyConcept": "Word2Scene Apply Concept",
          "W2S_ScenePrompt": "Word2Scene Scene Prompt", "W2S_TrainConcept": "Word2Scene Train Concept",
          "W2S_KSamplerHeatmaps": "Word2Scene KSampler (Heat Maps)", "W2S_ExplainImage": "Word2Scene Explain Image",
          "W2S_Heatmap": "Word2Scene Heat Map", "W2S_StrengthGrid": "Word2Scene Strength Grid",
          "W2S_Evaluate": "Word2Scene Evaluate", "W2S_MiniLoader": "Word2Scene Mini Loader"}
# Width x height each node type is given, at least what either frontend draws it at after a run
# (panels, image previews); measured in tests/nodes/test_browser.py.
SIZES = {
    "CheckpointLoaderSimple": (320, 140), "W2S_MiniLoader": (320, 140), "W2S_ConceptLoader": (340, 370),
    "W2S_ApplyConcept": (320, 170), "CLIPTextEncode": (400, 210), "EmptyLatentImage": (320, 140),
    "KSampler": (320, 280), "W2S_KSamplerHeatmaps": (340, 390), "VAEDecode": (230, 70), "SaveImage": (340, 390),
    "PreviewImage": (340, 390), "W2S_ScenePrompt": (400, 440), "W2S_TrainConcept": (400, 980),
    "W2S_Heatmap": (360, 410), "MaskToImage": (230, 70), "LoadImage": (320, 400), "W2S_ExplainImage": (340, 260),
    "W2S_StrengthGrid": (400, 530), "W2S_Evaluate": (560, 660), "Note": (400, 160),
}
GAP_X, GAP_Y, LEFT, TOP = 60, 50, 40, 40


def layout(graph, columns: list[list[int]]) -> dict[int, tuple[int, int]]:
    """Positions: each column's nodes stacked top to bottom, columns left to right, with gaps."""
    kinds = {node_id: node_type for node_id, node_type, _, _ in graph}
    placed = {n for column in columns for n in column}
    assert placed == set(kinds) and len(placed) == sum(map(len, columns)), "every node in exactly one column"
    positions, x = {}, LEFT
    for column in columns:
        y = TOP
        for node_id in column:
            positions[node_id] = (x, y)
            y += SIZES[kinds[node_id]][1] + GAP_Y
        x += max(SIZES[kinds[n]][0] for n in column) + GAP_X
    return positions


def note(node_id: int, text: str) -> tuple:
    return (node_id, "Note", [text], {})


def build(graph, columns) -> dict:
    positions = layout(graph, columns)
    nodes, links = [], []
    out_links: dict[tuple[int, int], list[int]] = {}
    for node_id, node_type, _widgets, inputs in graph:
        for input_name, (src, slot) in inputs.items():
            link_id = len(links) + 1
            link_type = next(t for n, t in INPUTS[node_type] if n == input_name)
            slots = [n for n, _ in _slots(node_type, inputs)]
            links.append([link_id, src, slot, node_id, slots.index(input_name), link_type])
            out_links.setdefault((src, slot), []).append(link_id)
    for order, (node_id, node_type, widgets, inputs) in enumerate(graph):
        link_of = {l[4]: l[0] for l in links if l[3] == node_id}
        slots = []
        for i, (n, t) in enumerate(_slots(node_type, inputs)):
            slot = {"name": n, "type": t, "link": link_of.get(i)}
            if (node_type, n) in WIDGET_INPUTS:
                slot["widget"] = {"name": n}
            slots.append(slot)
        node = {
            "id": node_id, "type": node_type, "pos": list(positions[node_id]), "size": list(SIZES[node_type]),
            "flags": {}, "order": order, "mode": 0, "inputs": slots,
            "outputs": [{"name": n, "type": t, "links": out_links.get((node_id, i), []), "slot_index": i}
                        for i, (n, t) in enumerate(OUTPUTS[node_type])],
            "properties": {"Node name for S&R": node_type},
            "widgets_values": widgets,
        }
        if node_type in TITLES:
            node["title"] = TITLES[node_type]
        if node_type == "Note":
            node["title"] = "Note: files this workflow needs"
            node["color"], node["bgcolor"] = "#432", "#653"
        nodes.append(node)
    return {"last_node_id": max(n["id"] for n in nodes), "last_link_id": len(links), "nodes": nodes,
            "links": links, "groups": [], "config": {}, "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}},
            "version": 0.4}


def _slots(node_type: str, inputs: dict) -> list[tuple[str, str]]:
    """Input slots of a node: link inputs in ComfyUI's order, then the widget inputs this node feeds by a link."""
    return [(n, t) for n, t in INPUTS.get(node_type, []) if (node_type, n) not in WIDGET_INPUTS or n in inputs]


SD15_FILES = ("Needs two files that do not ship with the pack:\n"
              "- models/checkpoints/v1-5-pruned-emaonly.safetensors: Stable Diffusion 1.5 (runwayml / "
              "stable-diffusion-v1-5 on Hugging Face, or any SD1.5 checkpoint: pick it in Load Checkpoint)\n"
              "- models/loras/word2scene.safetensors: a Word2Scene concept for SD1.5 (from the paper's authors, or "
              "trained with the workflow word2scene_train_then_generate or `python -m word2scene train`)\n"
              "Without them, open word2scene_mini_scene: it runs with what ships with the pack.")
CPU_NOTE = "On a CPU, 512 x 512 px with 30 steps takes minutes per image; Word2Scene-mini (128 px) takes seconds."


def generation(prompt: str, batch: int = 1) -> list:
    """Nodes 1-8: checkpoint, concept, prompt and empty negative prompt, KSampler with the
    paper's settings (DDIM, 30 steps, CFG 7, 512 x 512, strength 1), VAE Decode."""
    return [
        (1, "CheckpointLoaderSimple", ["v1-5-pruned-emaonly.safetensors"], {}),
        (2, "W2S_ConceptLoader", ["word2scene.safetensors"], {}),
        (3, "W2S_ApplyConcept", [1.0, 1.0], {"model": (1, 0), "clip": (1, 1), "concept": (2, 0)}),
        (4, "CLIPTextEncode", [prompt], {"clip": (3, 1)}),
        (5, "CLIPTextEncode", [""], {"clip": (3, 1)}),
        (6, "EmptyLatentImage", [512, 512, batch], {}),
        (7, "KSampler", [0, "fixed", 30, 7.0, "ddim", "ddim_uniform", 1.0],
         {"model": (3, 0), "positive": (4, 0), "negative": (5, 0), "latent_image": (6, 0)}),
        (8, "VAEDecode", [], {"samples": (7, 0), "vae": (1, 2)}),
    ]


def one_word_scene() -> dict:
    """One word to scene, the paper's settings: DDIM, 30 steps, CFG 7, 512 x 512, strength 1."""
    graph = generation("gs, geographic scene, airport") + [
        (9, "SaveImage", ["word2scene/airport"], {"images": (8, 0)}),
        note(10, SD15_FILES + "\n" + CPU_NOTE)]
    return build(graph, [[10, 1, 2], [3, 6], [4, 5], [7, 8], [9]])


def scene_prompt() -> dict:
    """One word through the Scene Prompt expander (descriptive style) straight into KSampler;
    images are saved under the word (the prompt's filename_prefix)."""
    graph = [
        (1, "CheckpointLoaderSimple", ["v1-5-pruned-emaonly.safetensors"], {}),
        (2, "W2S_ConceptLoader", ["word2scene.safetensors"], {}),
        (3, "W2S_ApplyConcept", [1.0, 1.0], {"model": (1, 0), "clip": (1, 1), "concept": (2, 0)}),
        (4, "W2S_ScenePrompt", ["dense residential", "descriptive", 2, 0, "fixed"], {"concept": (2, 0), "clip": (3, 1)}),
        (6, "EmptyLatentImage", [512, 512, 1], {}),
        (7, "KSampler", [0, "fixed", 30, 7.0, "ddim", "ddim_uniform", 1.0],
         {"model": (3, 0), "positive": (4, 3), "negative": (4, 4), "latent_image": (6, 0)}),
        (8, "VAEDecode", [], {"samples": (7, 0), "vae": (1, 2)}),
        (9, "SaveImage", ["word2scene/dense_residential"], {"images": (8, 0), "filename_prefix": (4, 5)}),
        note(10, SD15_FILES + "\n" + CPU_NOTE),
    ]
    return build(graph, [[10, 1, 2], [3, 6], [4], [7, 8], [9]])


def mini_scene() -> dict:
    """Runs on a fresh install: Word2Scene-mini and its concept Word2Scene-C (both shipped),
    one word through Scene Prompt, sampled at mini's 128 px with heat maps of the prompt's
    words; the CLI's `python -m word2scene generate airport` with the same settings."""
    prompt = "gs, geographic scene, airport"
    graph = [
        (1, "W2S_MiniLoader", ["word2scene-mini.safetensors"], {}),
        (2, "W2S_ConceptLoader", ["word2scene-mini-c.safetensors"], {}),
        (3, "W2S_ApplyConcept", [1.0, 1.0], {"model": (1, 0), "clip": (1, 1), "concept": (2, 0)}),
        (4, "W2S_ScenePrompt", ["airport", "word2scene", 1, 0, "fixed"], {"concept": (2, 0), "clip": (3, 1)}),
        (5, "EmptyLatentImage", [128, 128, 1], {}),
        (6, "W2S_KSamplerHeatmaps", [0, "fixed", 30, 7.0, "ddim", "ddim_uniform", 1.0, prompt],
         {"model": (3, 0), "positive": (4, 3), "negative": (4, 4), "latent_image": (5, 0), "clip": (3, 1),
          "prompt": (4, 0)}),
        (7, "VAEDecode", [], {"samples": (6, 0), "vae": (1, 2)}),
        (8, "SaveImage", ["word2scene/airport"], {"images": (7, 0), "filename_prefix": (4, 5)}),
        (9, "W2S_Heatmap", ["", 0.4], {"heatmaps": (6, 1), "image": (7, 0)}),
        note(10, "Runs as it is: Word2Scene-mini (word2scene-mini.safetensors) and its concept Word2Scene-C "
                 "(word2scene-mini-c.safetensors, all 30 AID classes) ship with the pack. Change the word in Scene "
                 "Prompt and Run: a 128 x 128 scene in seconds on a CPU, saved as output/word2scene/<word>_NNNNN_.png, "
                 "with a heat map per word (click a word on the Heat Map node). Same image as `python -m word2scene "
                 "generate <word>` up to the schedule (see the docs)."),
    ]
    return build(graph, [[10, 1, 2], [3, 5], [4], [6, 7], [8, 9]])


def train_then_generate() -> dict:
    """Train a concept from a folder (in ComfyUI's input folder), then generate with it."""
    graph = [
        (1, "CheckpointLoaderSimple", ["v1-5-pruned-emaonly.safetensors"], {}),
        (2, "W2S_TrainConcept", ["v1-5-pruned-emaonly.safetensors", "word2scene_dataset", "airport",
                                 "gs, geographic scene", 0, 10, 16, 16.0, 1e-4, 1, 512, 0, "fixed", "airport_concept", 100, True,
                                 "attention", False, 100, 20, False, True], {}),
        (3, "W2S_ApplyConcept", [1.0, 1.0], {"model": (1, 0), "clip": (1, 1), "concept": (2, 0)}),
        (4, "W2S_ScenePrompt", ["airport", "word2scene", 1, 0, "fixed"], {"concept": (2, 0), "clip": (3, 1)}),
        (6, "EmptyLatentImage", [512, 512, 1], {}),
        (7, "KSampler", [0, "fixed", 30, 7.0, "ddim", "ddim_uniform", 1.0],
         {"model": (3, 0), "positive": (4, 3), "negative": (4, 4), "latent_image": (6, 0)}),
        (8, "VAEDecode", [], {"samples": (7, 0), "vae": (1, 2)}),
        (9, "SaveImage", ["word2scene/trained_airport"], {"images": (8, 0), "filename_prefix": (4, 5)}),
        (10, "PreviewImage", [], {"images": (2, 1)}),
        (11, "PreviewImage", [], {"images": (2, 2)}),
        note(12, "Needs models/checkpoints/v1-5-pruned-emaonly.safetensors (Stable Diffusion 1.5; any SD1.5 "
                 "checkpoint, picked in both loaders) and training images in ComfyUI's input folder: "
                 "input/word2scene_dataset/ with class folders (airport/...), captions.jsonl or images with .txt "
                 "captions. The concept is saved as models/loras/word2scene/airport_concept.safetensors.\n"
                 "On a CPU, 10 epochs at 512 px take hours: pick word2scene-mini.safetensors (shipped) as the Train "
                 "node's ckpt_name with resolution 128 and use it through Word2Scene Mini Loader, as in "
                 "word2scene_mini_scene."),
    ]
    return build(graph, [[12, 1, 2], [10, 11], [3, 6], [4], [7, 8], [9]])


def interpretability() -> dict:
    """Generate with heat maps, and explain a real image (input/word2scene_church.jpg)."""
    prompt = "gs, geographic scene, a church with a blue roof near red buildings"
    graph = [
        (1, "CheckpointLoaderSimple", ["v1-5-pruned-emaonly.safetensors"], {}),
        (2, "W2S_ConceptLoader", ["word2scene.safetensors"], {}),
        (3, "W2S_ApplyConcept", [1.0, 1.0], {"model": (1, 0), "clip": (1, 1), "concept": (2, 0)}),
        (4, "CLIPTextEncode", [prompt], {"clip": (3, 1)}),
        (5, "CLIPTextEncode", [""], {"clip": (3, 1)}),
        (6, "EmptyLatentImage", [512, 512, 1], {}),
        (7, "W2S_KSamplerHeatmaps", [0, "fixed", 30, 7.0, "ddim", "ddim_uniform", 1.0, prompt],
         {"model": (3, 0), "positive": (4, 0), "negative": (5, 0), "latent_image": (6, 0), "clip": (3, 1)}),
        (8, "VAEDecode", [], {"samples": (7, 0), "vae": (1, 2)}),
        (9, "W2S_Heatmap", ["gs, geographic scene, church, blue roof, red buildings", 0.4],
         {"heatmaps": (7, 1), "image": (8, 0)}),
        (10, "SaveImage", ["word2scene/heatmap_overlay"], {"images": (9, 0)}),
        (11, "MaskToImage", [], {"mask": (9, 1)}),
        (12, "SaveImage", ["word2scene/heatmap_mask"], {"images": (11, 0)}),
        (13, "LoadImage", ["word2scene_church.jpg", "image"], {}),
        (14, "W2S_ExplainImage", ["gs, geographic scene, church, blue roof", "100, 300, 500", 0, "fixed"],
         {"image": (13, 0), "model": (3, 0), "clip": (3, 1), "vae": (1, 2)}),
        (15, "W2S_Heatmap", ["gs, geographic scene, church, blue roof", 0.4], {"heatmaps": (14, 0), "image": (13, 0)}),
        (16, "SaveImage", ["word2scene/explained"], {"images": (15, 0)}),
        note(17, SD15_FILES + "\nExplain Image reads input/word2scene_church.jpg: any aerial image, uploaded "
                 "through Load Image.\n" + CPU_NOTE),
    ]
    return build(graph, [[17, 1, 2], [3, 6, 13], [4, 5], [7, 14], [8, 11, 9, 15], [10, 12, 16]])


def strength_grid() -> dict:
    """The paper's epoch x strength study: rows = concept files (epochs), columns = strengths."""
    graph = [
        (1, "CheckpointLoaderSimple", ["v1-5-pruned-emaonly.safetensors"], {}),
        (2, "W2S_StrengthGrid", ["word2scene/church-epoch05.safetensors, word2scene/church-epoch10.safetensors",
                                 "0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1", "gs, geographic scene, church", "", 0, "fixed", 30, 7.0, "ddim",
                                 "ddim_uniform", 512, 512], {"model": (1, 0), "clip": (1, 1), "vae": (1, 2)}),
        (3, "SaveImage", ["word2scene/strength_grid"], {"images": (2, 0)}),
        note(4, "Needs models/checkpoints/v1-5-pruned-emaonly.safetensors (Stable Diffusion 1.5) and concept "
                "files per row in models/loras, e.g. word2scene/church-epoch05.safetensors and -epoch10 (written by "
                "Train Concept with save_every_epoch on). 2 rows x 11 strengths = 22 images: on a CPU at 512 px "
                "that is about an hour; use 128 px and Word2Scene-mini's concepts for a quick look."),
    ]
    return build(graph, [[4, 1], [2], [3]])


def evaluate() -> dict:
    """Generate a batch of one concept and evaluate it against real images of its class
    (input/word2scene_reference/, e.g. a copy of shared/data/rs_scenes) with the scene
    classifier shipped with the pack."""
    prompt = "gs, geographic scene, airport"
    graph = generation(prompt, batch=8) + [
        (9, "SaveImage", ["word2scene/evaluated_airport"], {"images": (8, 0)}),
        (10, "W2S_Evaluate", ["word2scene_reference", "airport", "aid-scene-cnn.safetensors", "(same as features)", "all",
                              "none", prompt], {"images": (8, 0)}),
        note(11, SD15_FILES + "\nReal images of the class go in input/word2scene_reference/airport/ (class folders, "
                 "or a captions.jsonl). The scene classifier aid-scene-cnn.safetensors ships with the pack. FID and KID "
                 "need more images than their features have dimensions: the report flags them for a batch of 8.\n"
                 + CPU_NOTE),
    ]
    return build(graph, [[11, 1, 2], [3, 6], [4, 5], [7, 8], [9], [10]])


WORKFLOW_SOURCES = {"word2scene_mini_scene": mini_scene, "word2scene_one_word_scene": one_word_scene,
                    "word2scene_scene_prompt": scene_prompt, "word2scene_train_then_generate": train_then_generate,
                    "word2scene_interpretability": interpretability, "word2scene_strength_grid": strength_grid,
                    "word2scene_evaluate": evaluate}


def main() -> None:
    WORKFLOWS.mkdir(exist_ok=True)
    for name, make in WORKFLOW_SOURCES.items():
        (WORKFLOWS / f"{name}.json").write_text(json.dumps(make(), indent=2) + "\n")
        print(f"wrote workflows/{name}.json")


if __name__ == "__main__":
    main()
