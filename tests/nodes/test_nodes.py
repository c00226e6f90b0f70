"""The node pack as ComfyUI imports it (a package under a path-derived name), checked
without ComfyUI: ids, categories, input specs, the example workflow's links, packaging."""
import importlib.util
import json
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pack():
    name = "Word2Scene pack-under test"  # any folder name must work
    spec = importlib.util.spec_from_file_location(name, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    yield module
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]


def test_mappings_ids_names_and_category(pack):
    assert set(pack.NODE_CLASS_MAPPINGS) == {"W2S_ConceptLoader", "W2S_ApplyConcept", "W2S_ScenePrompt",
                                             "W2S_TrainConcept", "W2S_KSamplerHeatmaps", "W2S_Heatmap",
                                             "W2S_ExplainImage", "W2S_StrengthGrid", "W2S_Evaluate"}
    assert set(pack.NODE_DISPLAY_NAME_MAPPINGS) == set(pack.NODE_CLASS_MAPPINGS)
    assert all(v.startswith("Word2Scene ") for v in pack.NODE_DISPLAY_NAME_MAPPINGS.values())
    assert pack.WEB_DIRECTORY == "./js" and (ROOT / "js" / "word2scene.js").is_file()
    for cls in pack.NODE_CLASS_MAPPINGS.values():
        assert cls.CATEGORY == "Word2Scene" and callable(getattr(cls(), cls.FUNCTION))
    loaded = [m for m in sys.modules if m.startswith("Word2Scene pack-under test.")]
    assert "Word2Scene pack-under test.word2scene.concepts.file" in loaded
    assert not {"nodes", "utils", "sd", "lora"} & {m.split(".")[-1] for m in sys.modules if "." not in m and m in loaded}


def test_apply_concept_inputs(pack):
    from word2scene.concepts.file import STRENGTH_RANGE

    spec = pack.NODE_CLASS_MAPPINGS["W2S_ApplyConcept"].INPUT_TYPES()["required"]
    assert [spec[k][0] for k in spec] == ["MODEL", "CLIP", "W2S_CONCEPT", "FLOAT", "FLOAT"]
    for name in ("strength_model", "strength_clip"):
        assert (spec[name][1]["min"], spec[name][1]["max"], spec[name][1]["default"]) == (*STRENGTH_RANGE, 1.0)
    assert pack.NODE_CLASS_MAPPINGS["W2S_ApplyConcept"].RETURN_TYPES == ("MODEL", "CLIP")
    assert pack.NODE_CLASS_MAPPINGS["W2S_ConceptLoader"].RETURN_TYPES == ("W2S_CONCEPT", "STRING")


def test_apply_concept_refuses_strength_out_of_range(pack):
    errors = sys.modules["Word2Scene pack-under test.word2scene.errors"]  # the pack's own copy of the core
    with pytest.raises(errors.InputError, match="strength_clip: 7.0 is outside"):
        pack.NODE_CLASS_MAPPINGS["W2S_ApplyConcept"]().apply(None, None, None, 1.0, 7.0)


@pytest.mark.parametrize("node, call, message", [
    ("W2S_StrengthGrid", lambda n: n.grid(None, None, None, " , ", "0, 1", "gs, airport", "", 0, 2, 7.0, "ddim",
                                          "ddim_uniform", 64, 64), "concepts: is empty"),
    ("W2S_ExplainImage", lambda n: n.explain(__import__("torch").zeros(1, 5, 64, 3), None, None, None, "airport",
                                             "100", 0), "image: 64 x 5 px is too small to explain"),
    ("W2S_Evaluate", lambda n: n.evaluate(None, "  ", "airport", "scenes.safetensors", "(same as features)"),
     "reference_folder: give a folder of images"),
])
def test_nodes_name_the_input_that_is_wrong(pack, node, call, message):
    errors = sys.modules["Word2Scene pack-under test.word2scene.errors"]
    with pytest.raises(errors.InputError) as caught:
        call(pack.NODE_CLASS_MAPPINGS[node]())
    assert str(caught.value).startswith(message)


def _our_inputs(cls) -> dict:
    try:
        spec = cls.INPUT_TYPES()
    except ImportError:  # combos listing ComfyUI's folders need ComfyUI (test_workflows.py uses the snapshot)
        return {}
    return {**spec.get("required", {}), **spec.get("optional", {})}


@pytest.mark.parametrize("path", sorted((ROOT / "workflows").glob("*.json")), ids=lambda p: p.name)
def test_workflow_links_match_our_node_types(pack, path):
    workflow = json.loads(path.read_text())
    nodes = {n["id"]: n for n in workflow["nodes"]}
    for link_id, src, src_slot, dst, dst_slot, kind in workflow["links"]:
        assert nodes[src]["outputs"][src_slot]["type"] == kind and link_id in nodes[src]["outputs"][src_slot]["links"]
        assert nodes[dst]["inputs"][dst_slot]["type"] == kind and nodes[dst]["inputs"][dst_slot]["link"] == link_id
        src_cls = pack.NODE_CLASS_MAPPINGS.get(nodes[src]["type"])
        if src_cls is not None:
            assert src_cls.RETURN_TYPES[src_slot] == kind
        dst_cls = pack.NODE_CLASS_MAPPINGS.get(nodes[dst]["type"])
        if dst_cls is not None and _our_inputs(dst_cls):
            assert _our_inputs(dst_cls)[nodes[dst]["inputs"][dst_slot]["name"]][0] == kind
    for node in workflow["nodes"]:
        assert node["type"] in pack.NODE_CLASS_MAPPINGS or not node["type"].startswith("W2S_")


def test_one_word_workflow_has_the_papers_settings():
    workflow = json.loads((ROOT / "workflows" / "word2scene_one_word_scene.json").read_text())
    nodes = {n["id"]: n for n in workflow["nodes"]}
    assert [n["type"] for n in workflow["nodes"]] == ["CheckpointLoaderSimple", "W2S_ConceptLoader", "W2S_ApplyConcept",
                                                      "CLIPTextEncode", "CLIPTextEncode", "EmptyLatentImage", "KSampler",
                                                      "VAEDecode", "SaveImage"]
    assert nodes[3]["widgets_values"] == [1.0, 1.0]
    assert nodes[6]["widgets_values"] == [512, 512, 1]
    assert nodes[7]["widgets_values"][2:6] == [30, 7.0, "ddim", "ddim_uniform"]
    assert nodes[4]["widgets_values"] == ["gs, geographic scene, airport"] and nodes[5]["widgets_values"] == [""]


def test_workflows_are_generated_from_their_source():
    before = {p.name: p.read_text() for p in (ROOT / "workflows").glob("*.json")}
    assert not (ROOT / "example_workflows").exists()  # ComfyUI lists workflows/ itself; a copy would show twice
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import build_workflows
        assert {f"{name}.json" for name in build_workflows.WORKFLOW_SOURCES} == set(before)
        for name, make in build_workflows.WORKFLOW_SOURCES.items():
            assert json.loads(before[f"{name}.json"]) == make(), f"workflows/{name}.json is stale: run scripts/build_workflows.py"
    finally:
        sys.path.remove(str(ROOT / "scripts"))


def test_packaging_for_registry_and_manager():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "comfyui" not in project["project"]["name"].lower()
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["project"]["version"])
    assert {"PublisherId", "DisplayName", "Icon"} <= set(project["tool"]["comfy"])
    assert "web" not in project["tool"]["comfy"]  # WEB_DIRECTORY alone, or the JS loads twice
    requirements = (ROOT / "requirements.txt").read_text().lower()
    assert not re.search(r"^\s*torch(vision|audio)?\b", requirements, re.M)
    source = "\n".join(p.read_text() for p in list(ROOT.glob("nodes/*.py")) + list(ROOT.glob("word2scene/*.py")))
    assert not re.search(r"(?<![.\w])(eval|exec)\(", source) and "pip install" not in source
