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


CATEGORIES = {"W2S_ConceptLoader": "concepts", "W2S_ApplyConcept": "concepts", "W2S_ScenePrompt": "prompts",
              "W2S_TrainConcept": "training", "W2S_KSamplerHeatmaps": "interpretability", "W2S_Heatmap": "interpretability",
              "W2S_ExplainImage": "interpretability", "W2S_StrengthGrid": "sampling", "W2S_Evaluate": "evaluation",
              "W2S_MiniLoader": "sampling"}


def test_mappings_ids_names_and_category(pack):
    assert set(pack.NODE_CLASS_MAPPINGS) == set(CATEGORIES)
    assert set(pack.NODE_DISPLAY_NAME_MAPPINGS) == set(pack.NODE_CLASS_MAPPINGS)
    assert all(v.startswith("Word2Scene ") for v in pack.NODE_DISPLAY_NAME_MAPPINGS.values())
    assert pack.WEB_DIRECTORY == "./js" and (ROOT / "js" / "word2scene.js").is_file()
    for node_id, cls in pack.NODE_CLASS_MAPPINGS.items():
        assert cls.CATEGORY == f"Word2Scene/{CATEGORIES[node_id]}" and callable(getattr(cls(), cls.FUNCTION))
    # the core is the top-level package `word2scene` (error types read word2scene.errors.InputError), the nodes
    # live under the path-derived name, and no module of ours takes a name ComfyUI owns
    assert sys.modules["word2scene"].__file__ == str(ROOT / "word2scene" / "__init__.py")
    assert "Word2Scene pack-under test.nodes.concept_nodes" in sys.modules
    assert not [m for m in sys.modules if m.startswith("Word2Scene pack-under test.word2scene")]
    assert not {"nodes", "utils", "sd", "lora"} & {m for m in sys.modules if m.startswith("Word2Scene pack-under test")}


def test_errors_read_as_word2scene_input_errors(pack):
    from word2scene.errors import InputError

    with pytest.raises(InputError) as caught:
        pack.NODE_CLASS_MAPPINGS["W2S_ApplyConcept"]().apply(None, None, None, 1.0, 7.0)
    assert f"{type(caught.value).__module__}.{type(caught.value).__qualname__}" == "word2scene.errors.InputError"


@pytest.fixture
def stub_comfy(monkeypatch):
    """Just enough of ComfyUI's modules for INPUT_TYPES to list (empty) folders and samplers."""
    import types

    folder_paths = types.ModuleType("folder_paths")
    folder_paths.folder_names_and_paths = {}
    folder_paths.get_filename_list = lambda key: []
    folder_paths.get_folder_paths = lambda key: []
    folder_paths.get_full_path = lambda key, name: None
    for kind in ("input", "output", "temp"):
        setattr(folder_paths, f"get_{kind}_directory", lambda kind=kind: f"/comfy-stub/{kind}")
    folder_paths.models_dir, folder_paths.base_path = "/comfy-stub/models", "/comfy-stub"
    comfy = types.ModuleType("comfy")
    samplers = types.ModuleType("comfy.samplers")
    samplers.KSampler = types.SimpleNamespace(SAMPLERS=["euler", "ddim"], SCHEDULERS=["normal", "ddim_uniform"])
    comfy.samplers = samplers
    for name, module in (("folder_paths", folder_paths), ("comfy", comfy), ("comfy.samplers", samplers)):
        monkeypatch.setitem(sys.modules, name, module)


def test_every_input_and_output_has_a_tooltip(pack, stub_comfy):
    missing = []
    for node_id, cls in pack.NODE_CLASS_MAPPINGS.items():
        assert _our_inputs(cls), node_id
        for name, spec in _our_inputs(cls).items():
            if len(spec) < 2 or not (spec[1] or {}).get("tooltip"):
                missing.append(f"{node_id}.{name}")
        if len(getattr(cls, "OUTPUT_TOOLTIPS", ())) != len(cls.RETURN_TYPES):
            missing.append(f"{node_id} OUTPUT_TOOLTIPS")
    assert not missing, missing


@pytest.mark.parametrize("node, inputs", [
    ("W2S_TrainConcept", {"learning_rate": float("nan"), "alpha": 16.0}),
    ("W2S_TrainConcept", {"learning_rate": 1e-4, "alpha": float("inf")}),
    ("W2S_ApplyConcept", {"strength_model": float("nan"), "strength_clip": 1.0}),
    ("W2S_KSamplerHeatmaps", {"cfg": float("-inf"), "denoise": 1.0}),
    ("W2S_Heatmap", {"threshold": float("nan")}),
    ("W2S_StrengthGrid", {"cfg": float("nan")}),
])
def test_non_finite_numbers_are_refused_before_queueing(pack, node, inputs, stub_comfy):
    cls = pack.NODE_CLASS_MAPPINGS[node]
    answer = cls.VALIDATE_INPUTS(**inputs)
    bad = next(k for k, v in inputs.items() if v != v or v in (float("inf"), float("-inf")))
    assert isinstance(answer, str) and answer.startswith(f"{bad}:") and "finite" in answer
    fine = {k: (1e-4 if k == "learning_rate" else 0.5) for k in inputs}
    assert cls.VALIDATE_INPUTS(**fine) is True
    assert cls.VALIDATE_INPUTS(**{k: None for k in inputs}) is True  # linked: checked when the value arrives


def test_scene_prompt_names_files_after_the_word_and_shows_the_prompt(pack, monkeypatch):
    node = pack.NODE_CLASS_MAPPINGS["W2S_ScenePrompt"]
    bridge = sys.modules["Word2Scene pack-under test.nodes.comfy_bridge"]
    monkeypatch.setattr(bridge, "knowledge_dirs", lambda: [])
    assert node.RETURN_NAMES[-1] == "filename_prefix" and node.RETURN_TYPES[:5] == (
        "STRING", "STRING", "STRING", "CONDITIONING", "CONDITIONING")  # new outputs only at the end
    out = node().expand("Dense Residential, river", "word2scene", 1, 0)
    assert out["result"][5] == "word2scene/dense_residential_river"
    assert out["ui"]["positive"] == ["gs, geographic scene, dense residential, river"] and out["ui"]["negative"] == [""]
    assert "'Dense Residential' -> dense_residential" in out["ui"]["text"][0]
    assert node().expand("airport", "word2scene", 1, 0)["result"][5] == "word2scene/airport"


def test_apply_concept_inputs(pack):
    from word2scene.concepts.file import STRENGTH_RANGE

    spec = pack.NODE_CLASS_MAPPINGS["W2S_ApplyConcept"].INPUT_TYPES()["required"]
    assert [spec[k][0] for k in spec] == ["MODEL", "CLIP", "W2S_CONCEPT", "FLOAT", "FLOAT"]
    for name in ("strength_model", "strength_clip"):
        assert (spec[name][1]["min"], spec[name][1]["max"], spec[name][1]["default"]) == (*STRENGTH_RANGE, 1.0)
    assert pack.NODE_CLASS_MAPPINGS["W2S_ApplyConcept"].RETURN_TYPES == ("MODEL", "CLIP")
    assert pack.NODE_CLASS_MAPPINGS["W2S_ConceptLoader"].RETURN_TYPES == ("W2S_CONCEPT", "STRING")


def test_apply_concept_refuses_strength_out_of_range(pack):
    from word2scene import errors

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
    from word2scene import errors

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
    assert [n["type"] for n in workflow["nodes"] if n["type"] != "Note"] == ["CheckpointLoaderSimple", "W2S_ConceptLoader", "W2S_ApplyConcept",
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


def test_node_tables_of_readme_and_docs_are_generated_from_the_node_classes(pack):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import build_workflows
        tables = build_workflows.node_tables()
        assert set(tables) == {ROOT / "README.md", ROOT / "docs" / "nodes.md"}
        for path, table in tables.items():
            assert build_workflows.table_in(path.read_text()) == table, f"{path.name}'s node table is stale: run " \
                                                                         "scripts/build_workflows.py"
        # one source: ids, display names and outputs are the classes' own, in the mappings and the workflows
        for node_id, cls in pack.NODE_CLASS_MAPPINGS.items():
            assert cls.NODE_ID == node_id and pack.NODE_DISPLAY_NAME_MAPPINGS[node_id] == cls.DISPLAY_NAME
            assert f"| `{node_id}` | {cls.DISPLAY_NAME} |" in tables[ROOT / "docs" / "nodes.md"]
            assert [t for _, t in build_workflows.outputs(node_id)] == list(cls.RETURN_TYPES)
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


def test_heat_map_errors_list_words_without_token_notation(pack, tiny):
    """A word not in the prompt: the message lists the prompt's words once each, as written
    (no "a#2" for a repeated word)."""
    from word2scene.errors import InputError
    from word2scene.scenes.heatmaps import generate_with_heatmaps
    from word2scene.scenes.sampling import SamplingSettings

    _, heat, _ = generate_with_heatmaps(tiny, "a church near a church", SamplingSettings(steps=1, width=64, height=64), 0, [])
    with pytest.raises(InputError) as caught:
        heat.words(["airport"])
    assert str(caught.value) == "words: 'airport' is not in the prompt; its words are: a, church, near"
    assert "#" not in str(caught.value)


def test_every_node_has_a_help_page(pack):
    """The frontend's node help panel reads /extensions/<pack>/docs/<node id>.md (served from js/)."""
    for node_id, display in pack.NODE_DISPLAY_NAME_MAPPINGS.items():
        page = ROOT / pack.WEB_DIRECTORY / "docs" / f"{node_id}.md"
        assert page.is_file(), node_id
        text = page.read_text()
        assert text.startswith(f"# {display}\n") and len(text) > 300, node_id
    assert {p.stem for p in (ROOT / "js" / "docs").glob("*.md")} == set(pack.NODE_CLASS_MAPPINGS)


def test_fingerprints_change_with_the_files_read_by_name(pack, tmp_path):
    """IS_CHANGED of the nodes that read files by name: a file replaced under the same name,
    or one more image in a folder, changes the value, so ComfyUI never serves a stale result."""
    bridge = sys.modules["Word2Scene pack-under test.nodes.comfy_bridge"]
    concept = tmp_path / "c.safetensors"
    concept.write_bytes(b"one")
    folder = tmp_path / "data" / "airport"
    folder.mkdir(parents=True)
    (folder / "a.jpg").write_bytes(b"x")
    first = bridge.fingerprint(concept, folder.parent)
    assert first == bridge.fingerprint(concept, folder.parent)
    concept.write_bytes(b"other")
    second = bridge.fingerprint(concept, folder.parent)
    (folder / "b.jpg").write_bytes(b"y")
    third = bridge.fingerprint(concept, folder.parent)
    assert len({first, second, third}) == 3
    missing = bridge.file_fingerprint(lambda: (_ for _ in ()).throw(sys.modules["word2scene.errors"].InputError("x", "gone")))
    assert missing != missing  # NaN: never equal, always re-run (the node then names the problem)
    for node_id in ("W2S_ConceptLoader", "W2S_MiniLoader", "W2S_StrengthGrid", "W2S_Evaluate", "W2S_TrainConcept"):
        assert "IS_CHANGED" in vars(pack.NODE_CLASS_MAPPINGS[node_id]), node_id


def test_mini_loader_refuses_a_damaged_shipped_model(pack, stub_comfy, monkeypatch):
    """The shipped file is checked against its recorded sha256 before ComfyUI reads it."""
    from word2scene.errors import InputError
    from word2scene.models import weight_files

    monkeypatch.setattr(weight_files, "file_sha256", lambda path: "0" * 64)
    with pytest.raises(InputError) as caught:
        pack.NODE_CLASS_MAPPINGS["W2S_MiniLoader"]().load("word2scene-mini.safetensors")
    message = str(caught.value)
    assert message.startswith("model_name: word2scene-mini.safetensors (shipped with Word2Scene) is damaged"), message
    assert str(weight_files.MINI_FOLDER) not in message
