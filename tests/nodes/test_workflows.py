"""Every workflow, checked without ComfyUI: node types, input names, widget counts and link
types against our node definitions and a committed snapshot of the core nodes' /object_info
for the ComfyUI version we target (tests/nodes/data/comfyui_core_object_info.json)."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = json.loads((Path(__file__).parent / "data" / "comfyui_core_object_info.json").read_text())
WIDGETS = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
FRONTEND_ONLY = {"Note": 1}  # node types the frontend draws and never sends: their widget count


@pytest.fixture(scope="module")
def definitions():
    """Core nodes from the snapshot plus ours, in /object_info's shape."""
    name = "w2s_pack_for_workflows"
    spec = importlib.util.spec_from_file_location(name, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    pack = importlib.util.module_from_spec(spec)
    sys.modules[name] = pack
    spec.loader.exec_module(pack)
    ours = {}
    for node_id, cls in pack.NODE_CLASS_MAPPINGS.items():
        try:
            inputs = cls.INPUT_TYPES()
        except ImportError:  # combos listing ComfyUI's folders: the snapshot has their shape
            inputs = SNAPSHOT["ours"][node_id]["input"]
        ours[node_id] = {"input": inputs, "output": list(cls.RETURN_TYPES)}
    return {**SNAPSHOT["core"], **ours}


def _is_widget(spec) -> bool:
    return isinstance(spec[0], list) or spec[0] in WIDGETS


@pytest.mark.parametrize("path", sorted((ROOT / "workflows").glob("*.json")), ids=lambda p: p.name)
def test_workflow_matches_node_definitions(definitions, path):
    workflow = json.loads(path.read_text())
    nodes = {n["id"]: n for n in workflow["nodes"]}
    for node in workflow["nodes"]:
        if node["type"] in FRONTEND_ONLY:
            assert len(node["widgets_values"]) == FRONTEND_ONLY[node["type"]] and not node["inputs"] + node["outputs"]
            continue
        assert node["type"] in definitions, f"{path.name}: unknown node type {node['type']}"
        info = definitions[node["type"]]
        specs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        for slot in node["inputs"]:
            assert slot["name"] in specs, f"{node['type']} has no input {slot['name']!r}"
            assert specs[slot["name"]][0] == slot["type"], (node["type"], slot["name"])
        widgets = sum(1 + bool(len(spec) > 1 and isinstance(spec[1], dict) and spec[1].get("control_after_generate"))
                      for name, spec in specs.items() if _is_widget(spec))
        extra = 1 if node["type"] == "LoadImage" else 0  # its upload button keeps a value too
        assert len(node["widgets_values"]) == widgets + extra, (path.name, node["type"], node["widgets_values"])
        for i, out in enumerate(node["outputs"]):
            assert info["output"][i] == out["type"], (node["type"], i)
    for link_id, src, src_slot, dst, dst_slot, kind in workflow["links"]:
        assert definitions[nodes[src]["type"]]["output"][src_slot] == kind
        assert nodes[dst]["inputs"][dst_slot]["type"] == kind


@pytest.mark.parametrize("path", sorted((ROOT / "workflows").glob("*.json")), ids=lambda p: p.name)
def test_workflow_says_what_files_it_needs_and_nothing_overlaps(path):
    """A Note names every file a workflow needs and where it goes; the layout leaves every
    node its room (the browser tests check the sizes the frontends draw)."""
    workflow = json.loads(path.read_text())
    notes = [n["widgets_values"][0] for n in workflow["nodes"] if n["type"] == "Note"]
    assert len(notes) == 1, path.name
    for node in workflow["nodes"]:
        for value in node["widgets_values"]:
            if isinstance(value, str) and value.endswith(".safetensors") and node["type"] != "W2S_StrengthGrid":
                assert value in notes[0] or path.stem == "word2scene_mini_scene", (path.name, value)
    boxes = [(n["id"], *n["pos"], *n["size"]) for n in workflow["nodes"]]
    for i, (a, ax, ay, aw, ah) in enumerate(boxes):
        for b, bx, by, bw, bh in boxes[i + 1:]:
            assert ax + aw <= bx or bx + bw <= ax or ay + ah <= by or by + bh <= ay, (path.name, a, b)


def test_the_mini_workflow_samples_with_minis_defaults_on_the_clis_timesteps():
    """The first workflow draws what `generate <word>` draws: mini's sampling defaults, and a step
    count at which ComfyUI's ddim + ddim_uniform visits the timesteps of the CLI's DDIM (at 30
    steps it would not, and mini 2's scenes came out 15 grey levels apart)."""
    from types import SimpleNamespace

    from comfy_harness import comfy_ddim_uniform_timesteps
    from word2scene.models.sd15 import MINI_SAMPLING, sd15_configs
    from word2scene.scenes.sampling import make_scheduler

    workflow = json.loads((ROOT / "workflows" / "word2scene_mini_scene.json").read_text())
    [sampler] = [n for n in workflow["nodes"] if n["type"] == "W2S_KSamplerHeatmaps"]
    seed, _, steps, cfg, sampler_name, scheduler = sampler["widgets_values"][:6]
    assert (sampler_name, steps, cfg) == (MINI_SAMPLING["sampler"], MINI_SAMPLING["steps"], MINI_SAMPLING["cfg"])
    assert scheduler == "ddim_uniform"
    def cli(n):
        return make_scheduler(SimpleNamespace(configs=sd15_configs()), "ddim", n).timesteps.tolist()

    assert comfy_ddim_uniform_timesteps(steps) == cli(steps)
    assert comfy_ddim_uniform_timesteps(30) != cli(30)  # the rule can fail: 31 steps from t = 991
