"""The RS concept knowledge base: coverage, aliases, user files, bad files."""
import re

import pytest

from conftest import SHARED
from word2scene.errors import InputError
from word2scene.prompts.knowledge import load_knowledge, lookup_keys

AID = ("airport, bare land, baseball field, beach, bridge, center, church, commercial, dense residential, desert, "
       "farmland, forest, industrial, meadow, medium residential, mountain, park, parking, playground, pond, port, "
       "railway station, resort, river, school, sparse residential, square, stadium, storage tanks, viaduct").split(", ")
NWPU = ("airplane, airport, baseball diamond, basketball court, beach, bridge, chaparral, church, circular farmland, "
        "cloud, commercial area, dense residential, desert, forest, freeway, golf course, ground track field, harbor, "
        "industrial area, intersection, island, lake, meadow, medium residential, mobile home park, mountain, overpass, "
        "palace, parking lot, railway, railway station, rectangular farmland, river, roundabout, runway, sea ice, ship, "
        "snowberg, sparse residential, stadium, storage tank, tennis court, terrace, thermal power station, "
        "wetland").split(", ")
UCM = ("agricultural, airplane, baseball diamond, beach, buildings, chaparral, dense residential, forest, freeway, "
       "golf course, harbor, intersection, medium residential, mobile home park, overpass, parking lot, river, runway, "
       "sparse residential, storage tanks, tennis court").split(", ")
RSSCN7 = ["grass", "field", "industry", "river/lake", "forest", "resident", "parking"]
TRAINED = {"church", "commercial", "dense_residential", "industrial", "medium_residential", "park", "railway_station",
           "resort", "school", "sparse_residential", "square"}
MERGED = {"harbor": "port", "parking lot": "parking", "storage tank": "storage_tanks", "baseball diamond": "baseball_field",
          "industrial area": "industrial", "commercial area": "commercial", "ground track field": "playground",
          "agricultural": "farmland", "grass": "meadow", "field": "farmland", "industry": "industrial"}


@pytest.fixture(scope="module")
def kb():
    return load_knowledge(extra_dirs=[])


def test_every_dataset_class_resolves(kb):
    assert (len(AID), len(NWPU), len(UCM), len(RSSCN7)) == (30, 45, 21, 7)
    for name in AID + NWPU + UCM + RSSCN7:
        assert kb.find(name) is not None, name
    for name, concept in MERGED.items():
        assert kb.find(name) == concept, name


def test_aid_ids_are_the_shared_folder_names_and_have_chinese_names(kb):
    ids = sorted(kb.find(name) for name in AID)
    assert ids == sorted(name.replace(" ", "_") for name in AID)
    if (SHARED / "data" / "rs_scenes").is_dir():
        folders = sorted(p.name for p in (SHARED / "data" / "rs_scenes").iterdir() if p.is_dir())
        assert ids == folders
    for cid in ids:
        assert any(re.search(r"[\u4e00-\u9fff]", a) for a in kb[cid].aliases), cid


def test_paper_split_is_11_trained_and_19_zero_shot(kb):
    assert set(kb.by_paper("trained")) == TRAINED
    assert set(kb.by_paper("zero-shot")) == {n.replace(" ", "_") for n in AID} - TRAINED


def test_every_alias_and_its_spelling_variants_resolve(kb):
    checked = 0
    for concept in kb.concepts.values():
        assert concept.elements and concept.relations and concept.colours and concept.datasets, concept.id
        for alias in [concept.id, concept.name, *concept.aliases]:
            forms = {alias, alias.upper(), alias.replace(" ", "_"), alias.replace(" ", "-")}
            if re.fullmatch(r"[a-z ]+", alias):
                forms |= {alias.title().replace(" ", ""), alias.replace(" ", "")}
                forms |= set() if alias.endswith("s") else {alias + "s"}
            for form in forms:
                assert kb.find(form) == concept.id, (form, concept.id)
                checked += 1
    assert checked > 1000


def test_user_file_extends_and_adds(tmp_path):
    (tmp_path / "mine.yaml").write_text(
        "concepts:\n  airport:\n    elements: [cargo terminal]\n    aliases: [aeroporto]\n"
        "  solar_farm:\n    name: solar farm\n    aliases: [photovoltaic plant, 光伏电站]\n"
        "    elements: [rows of solar panels]\n    relations: [panels in parallel rows]\n    colours: [dark blue panels]\n")
    kb = load_knowledge(extra_dirs=[tmp_path])
    assert not kb.problems and str(tmp_path / "mine.yaml") in kb.files
    assert "cargo terminal" in kb["airport"].elements and "runways" in kb["airport"].elements
    assert kb.find("aeroporto") == "airport" and kb.find("photovoltaic plants") == "solar_farm"
    assert kb.find("光伏电站") == "solar_farm" and kb["solar_farm"].paper == "absent"


@pytest.mark.parametrize("text, where", [
    ("concepts:\n  airport:\n    elements: runways\n", r"mine.yaml:3: concepts.airport.elements: must be a list"),
    ("concepts:\n  airport:\n    colour: [grey]\n", r"mine.yaml:3: concepts.airport.colour: unknown field"),
    ("concepts:\n  Bad-Id:\n    name: x\n", r"mine.yaml:2: concepts.Bad-Id: ids are snake_case"),
    ("concepts:\n  airport:\n    paper: maybe\n", r"mine.yaml:3: concepts.airport.paper: must be one of"),
    ("concepts:\n  airport: [\n", r"mine.yaml:\d+: not valid YAML"),
    ("- a\n- b\n", r"mine.yaml:1: the file must be a mapping"),
])
def test_malformed_user_file_names_file_line_field_and_builtin_still_works(tmp_path, text, where):
    (tmp_path / "mine.yaml").write_text(text)
    kb = load_knowledge(extra_dirs=[tmp_path])
    assert len(kb.problems) == 1 and re.search(where, kb.problems[0]), kb.problems
    assert kb.find("airport") == "airport" and len(kb.concepts) >= 55
    with pytest.raises(InputError, match=where):
        load_knowledge(extra_dirs=[tmp_path], strict=True)


def test_duplicate_alias_across_concepts_names_both(tmp_path):
    (tmp_path / "dup.yaml").write_text("concepts:\n  pond:\n    aliases: [harbour basin, airfield]\n")
    with pytest.raises(InputError, match=r"alias 'airfield' of pond .*dup.yaml.* is also .airfield. of airport \(built-in:\d+\)"):
        load_knowledge(extra_dirs=[tmp_path], strict=True)
    kb = load_knowledge(extra_dirs=[tmp_path])
    assert kb.find("airfield") == "airport" and "dup.yaml" in kb.problems[0]


def test_lookup_keys_cover_camel_snake_and_plural():
    assert {"dense residential", "denseresidential"} <= lookup_keys("DenseResidential")
    assert "storage tank" in lookup_keys("storage_tanks") and "factory" in lookup_keys("factories")
