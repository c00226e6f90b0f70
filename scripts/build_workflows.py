"""Write the example workflows (ComfyUI UI format) from compact graph descriptions.

The JSON files in workflows/ are generated here and committed; edit this file, then run
`python scripts/build_workflows.py`. Each graph is a list of nodes:
(id, type, widget values, {input name: (source id, source slot)}).
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
                        ("positive_cond", "CONDITIONING"), ("negative_cond", "CONDITIONING")],
}
# Input slots (name, type) in the order ComfyUI lists them (links only, not widgets).
INPUTS = {
    "W2S_ApplyConcept": [("model", "MODEL"), ("clip", "CLIP"), ("concept", "W2S_CONCEPT")],
    "CLIPTextEncode": [("clip", "CLIP")],
    "KSampler": [("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"), ("latent_image", "LATENT")],
    "VAEDecode": [("samples", "LATENT"), ("vae", "VAE")],
    "SaveImage": [("images", "IMAGE")],
    "W2S_ScenePrompt": [("concept", "W2S_CONCEPT"), ("clip", "CLIP")],
    "PreviewImage": [("images", "IMAGE")],
    "W2S_KSamplerHeatmaps": [("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                             ("latent_image", "LATENT"), ("clip", "CLIP")],
    "W2S_ExplainImage": [("image", "IMAGE"), ("model", "MODEL"), ("clip", "CLIP"), ("vae", "VAE")],
    "W2S_Heatmap": [("heatmaps", "W2S_HEATMAPS"), ("image", "IMAGE")],
    "MaskToImage": [("mask", "MASK")],
    "W2S_StrengthGrid": [("model", "MODEL"), ("clip", "CLIP"), ("vae", "VAE")],
    "W2S_Evaluate": [("images", "IMAGE")],
}
TITLES = {"W2S_ConceptLoader": "Word2Scene Concept Loader", "W2S_ApplyConcept": "Word2Scene Apply Concept",
          "W2S_ScenePrompt": "Word2Scene Scene Prompt", "W2S_TrainConcept": "Word2Scene Train Concept",
          "W2S_KSamplerHeatmaps": "Word2Scene KSampler (Heat Maps)", "W2S_ExplainImage": "Word2Scene Explain Image",
          "W2S_Heatmap": "Word2Scene Heat Map", "W2S_StrengthGrid": "Word2Scene Strength Grid",
          "W2S_Evaluate": "Word2Scene Evaluate"}


def build(graph, positions) -> dict:
    nodes, links = [], []
    out_links: dict[tuple[int, int], list[int]] = {}
    for node_id, node_type, _widgets, inputs in graph:
        for input_name, (src, slot) in inputs.items():
            link_id = len(links) + 1
            link_type = next(t for n, t in INPUTS[node_type] if n == input_name)
            links.append([link_id, src, slot, node_id, [n for n, _ in INPUTS[node_type]].index(input_name), link_type])
            out_links.setdefault((src, slot), []).append(link_id)
    for order, (node_id, node_type, widgets, inputs) in enumerate(graph):
        link_of = {l[4]: l[0] for l in links if l[3] == node_id}
        node = {
            "id": node_id, "type": node_type, "pos": list(positions[node_id]), "size": [320, 110],
            "flags": {}, "order": order, "mode": 0,
            "inputs": [{"name": n, "type": t, "link": link_of.get(i)} for i, (n, t) in enumerate(INPUTS.get(node_type, []))],
            "outputs": [{"name": n, "type": t, "links": out_links.get((node_id, i), []), "slot_index": i}
                        for i, (n, t) in enumerate(OUTPUTS[node_type])],
            "properties": {"Node name for S&R": node_type},
            "widgets_values": widgets,
        }
        if node_type in TITLES:
            node["title"] = TITLES[node_type]
        nodes.append(node)
    return {"last_node_id": max(n["id"] for n in nodes), "last_link_id": len(links), "nodes": nodes,
            "links": links, "groups": [], "config": {}, "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}},
            "version": 0.4}


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


GENERATION_POSITIONS = {1: (40, 120), 2: (40, 320), 3: (400, 200), 4: (760, 80), 5: (760, 300), 6: (760, 480),
                        7: (1120, 200), 8: (1480, 200)}


def one_word_scene() -> dict:
    """One word to scene, the paper's settings: DDIM, 30 steps, CFG 7, 512 x 512, strength 1."""
    graph = generation("gs, geographic scene, airport") + [(9, "SaveImage", ["word2scene/airport"], {"images": (8, 0)})]
    return build(graph, {**GENERATION_POSITIONS, 9: (1720, 200)})


def scene_prompt() -> dict:
    """One word through the Scene Prompt expander (descriptive style) straight into KSampler."""
    graph = [
        (1, "CheckpointLoaderSimple", ["v1-5-pruned-emaonly.safetensors"], {}),
        (2, "W2S_ConceptLoader", ["word2scene.safetensors"], {}),
        (3, "W2S_ApplyConcept", [1.0, 1.0], {"model": (1, 0), "clip": (1, 1), "concept": (2, 0)}),
        (4, "W2S_ScenePrompt", ["dense residential", "descriptive", 2, 0, "fixed"], {"concept": (2, 0), "clip": (3, 1)}),
        (6, "EmptyLatentImage", [512, 512, 1], {}),
        (7, "KSampler", [0, "fixed", 30, 7.0, "ddim", "ddim_uniform", 1.0],
         {"model": (3, 0), "positive": (4, 3), "negative": (4, 4), "latent_image": (6, 0)}),
        (8, "VAEDecode", [], {"samples": (7, 0), "vae": (1, 2)}),
        (9, "SaveImage", ["word2scene/dense_residential"], {"images": (8, 0)}),
    ]
    positions = {1: (40, 120), 2: (40, 320), 3: (400, 200), 4: (760, 160), 6: (760, 480), 7: (1120, 200),
                 8: (1480, 200), 9: (1720, 200)}
    return build(graph, positions)


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
        (9, "SaveImage", ["word2scene/trained_airport"], {"images": (8, 0)}),
        (10, "PreviewImage", [], {"images": (2, 1)}),
        (11, "PreviewImage", [], {"images": (2, 2)}),
    ]
    positions = {1: (40, 560), 2: (40, 40), 3: (460, 420), 4: (820, 300), 6: (820, 620), 7: (1180, 360),
                 8: (1540, 360), 9: (1780, 360), 10: (460, 40), 11: (820, 40)}
    return build(graph, positions)


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
    ]
    positions = {1: (40, 200), 2: (40, 420), 3: (400, 300), 4: (760, 120), 5: (760, 330), 6: (760, 520),
                 7: (1120, 260), 8: (1480, 160), 9: (1720, 260), 10: (2080, 120), 11: (2080, 420), 12: (2320, 420),
                 13: (760, 760), 14: (1120, 760), 15: (1480, 760), 16: (1840, 760)}
    return build(graph, positions)


def strength_grid() -> dict:
    """The paper's epoch x strength study: rows = concept files (epochs), columns = strengths."""
    graph = [
        (1, "CheckpointLoaderSimple", ["v1-5-pruned-emaonly.safetensors"], {}),
        (2, "W2S_StrengthGrid", ["word2scene/church-epoch05.safetensors, word2scene/church-epoch10.safetensors",
                                 "0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1", "gs, geographic scene, church", "", 0, "fixed", 30, 7.0, "ddim",
                                 "ddim_uniform", 512, 512], {"model": (1, 0), "clip": (1, 1), "vae": (1, 2)}),
        (3, "SaveImage", ["word2scene/strength_grid"], {"images": (2, 0)}),
    ]
    return build(graph, {1: (40, 200), 2: (400, 200), 3: (800, 200)})


def evaluate() -> dict:
    """Generate a batch of one concept and evaluate it against real images of its class
    (input/word2scene_reference/, e.g. a copy of shared/data/rs_scenes) with a scene
    classifier in models/word2scene_eval/."""
    prompt = "gs, geographic scene, airport"
    graph = generation(prompt, batch=8) + [
        (9, "SaveImage", ["word2scene/evaluated_airport"], {"images": (8, 0)}),
        (10, "W2S_Evaluate", ["word2scene_reference", "airport", "scenes.safetensors", "(same as features)", "all",
                              "none", prompt], {"images": (8, 0)}),
    ]
    return build(graph, {**GENERATION_POSITIONS, 9: (1720, 40), 10: (1720, 320)})


WORKFLOW_SOURCES = {"word2scene_evaluate": evaluate,"word2scene_strength_grid": strength_grid,
"word2scene_interpretability": interpretability,
"word2scene_train_then_generate": train_then_generate,
"word2scene_one_word_scene": one_word_scene, "word2scene_scene_prompt": scene_prompt}


def main() -> None:
    WORKFLOWS.mkdir(exist_ok=True)
    for name, make in WORKFLOW_SOURCES.items():
        (WORKFLOWS / f"{name}.json").write_text(json.dumps(make(), indent=2) + "\n")
        print(f"wrote workflows/{name}.json")


if __name__ == "__main__":
    main()
