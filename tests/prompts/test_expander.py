"""The scene prompt expander, checked with the real SD1.5 CLIP tokenizer."""
import json

import pytest

from word2scene.cli import main
from word2scene.errors import InputError
from word2scene.prompts.knowledge import load_knowledge
from word2scene.models.sd15 import load_tokenizer
from word2scene.prompts.expander import count_tokens, expand


@pytest.fixture(scope="module")
def kb():
    return load_knowledge(extra_dirs=[])


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


# Realistic user inputs and the concepts they must resolve to (a hidden-style check).
REALISTIC = [
    ("airport", ["airport"]), ("Airport", ["airport"]), ("airports", ["airport"]), ("AIRPORT", ["airport"]),
    ("airprot", ["airport"]), ("aiport", ["airport"]), ("airfield", ["airport"]), ("机场", ["airport"]),
    ("dense residential", ["dense_residential"]), ("DenseResidential", ["dense_residential"]),
    ("denseresidential", ["dense_residential"]), ("dense_residential", ["dense_residential"]),
    ("Dense-Residential", ["dense_residential"]), ("dense residental", ["dense_residential"]),
    ("密集住宅区", ["dense_residential"]), ("medium residential", ["medium_residential"]),
    ("MediumResidential", ["medium_residential"]), ("sparse residential area", ["sparse_residential"]),
    ("sparseresidential", ["sparse_residential"]), ("storage tank", ["storage_tanks"]), ("StorageTanks", ["storage_tanks"]),
    ("oil tanks", ["storage_tanks"]), ("storage tanx", ["storage_tanks"]), ("harbour", ["port"]), ("harbor", ["port"]),
    ("Harbors", ["port"]), ("港口", ["port"]), ("parking lot", ["parking"]), ("car park", ["parking"]),
    ("parkinglot", ["parking"]), ("baseball diamond", ["baseball_field"]), ("BaseballField", ["baseball_field"]),
    ("bare land", ["bare_land"]), ("BareLand", ["bare_land"]), ("city centre", ["center"]), ("centre", ["center"]),
    ("downtown", ["center"]), ("railway station", ["railway_station"]), ("train station", ["railway_station"]),
    ("RailwayStation", ["railway_station"]), ("火车站", ["railway_station"]), ("industrial area", ["industrial"]),
    ("factories", ["industrial"]), ("commercial area", ["commercial"]), ("churches", ["church"]), ("cathedral", ["church"]),
    ("教堂", ["church"]), ("ground track field", ["playground"]), ("playgrounds", ["playground"]), ("meadow", ["meadow"]),
    ("grassland", ["meadow"]), ("farmland", ["farmland"]), ("farm land", ["farmland"]), ("agricultural", ["farmland"]),
    ("beaches", ["beach"]), ("sea shore", ["beach"]), ("desert", ["desert"]), ("sand dunes", ["desert"]),
    ("viaduct", ["viaduct"]), ("viaducts", ["viaduct"]), ("stadium", ["stadium"]), ("stadiums", ["stadium"]),
    ("tennis court", ["tennis_court"]), ("golf course", ["golf_course"]), ("Golf Courses", ["golf_course"]),
    ("roundabout", ["roundabout"]), ("mobile home park", ["mobile_home_park"]), ("thermal power station", ["thermal_power_station"]),
    ("snowberg", ["snowberg"]), ("sea ice", ["sea_ice"]), ("river/lake", ["river"]), ("rivers", ["river"]),
    ("airport, river", ["airport", "river"]), ("airport,river", ["airport", "river"]), ("beach; resort", ["beach", "resort"]),
    ("school, playground, park", ["school", "playground", "park"]), ("机场，河流", ["airport", "river"]),
    ("机场 airport", ["airport", "airport"]), ("church、square", ["church", "square"]), ("  forest  ", ["forest"]),
    ("forest.", ["forest"]), ("'pond'", ["pond"]), ("Résort", ["resort"]), ("ｆｏｒｅｓｔ", ["forest"]),
]


def test_at_least_60_realistic_inputs_resolve(kb, tok):
    assert len(REALISTIC) >= 60
    wrong = []
    for text, expected in REALISTIC:
        result = expand(text, kb=kb, tokenizer=tok)
        got = [m.concept for m in result.matches]
        if got != expected:
            wrong.append((text, got, expected))
    assert not wrong


def test_word2scene_style_is_exactly_the_papers_form(kb, tok):
    result = expand("DenseResidential", "word2scene", kb=kb, tokenizer=tok)
    assert result.positive == "gs, geographic scene, dense residential" and result.negative == ""
    assert [(m.concept, m.how) for m in result.matches] == [("dense_residential", "exact")]
    assert expand("harbour", kb=kb, tokenizer=tok).matches[0].how == "alias"
    custom = expand("airport", trigger_words=["rs", "top view"], kb=kb, tokenizer=tok)
    assert custom.positive == "rs, top view, airport"


def test_descriptive_and_plain_styles(kb, tok):
    d = expand("airport", "descriptive", 3, seed=1, kb=kb, tokenizer=tok)
    assert d.positive.startswith("gs, geographic scene, airport, ")
    details = d.positive.split(", ")[3:]
    known = set(kb["airport"].elements + kb["airport"].relations + kb["airport"].colours + ["top-down view"])
    assert len(details) == 4 + 2 + 2 + 1 and set(details) <= known
    assert "oblique view" in d.negative and "ocean" in d.negative
    p = expand("airport", "plain", 2, seed=1, kb=kb, tokenizer=tok)
    assert p.positive.startswith("aerial view of airport") and "gs" not in p.positive.split(", ")
    assert len(expand("airport", "descriptive", 0, kb=kb, tokenizer=tok).positive.split(", ")) == 3


def test_deterministic_per_seed_and_seeds_vary(kb, tok):
    runs = {expand("dense residential, river", "descriptive", 2, seed=s, kb=kb, tokenizer=tok).positive for s in range(8)}
    assert len(runs) > 1
    assert expand("park", "descriptive", 2, seed=5, kb=kb, tokenizer=tok).positive == \
        expand("park", "descriptive", 2, seed=5, kb=kb, tokenizer=tok).positive


def test_unknown_words_give_zero_shot_prompt_and_low_fuzzy_is_not_substituted(kb, tok):
    result = expand("volcano", "descriptive", 2, kb=kb, tokenizer=tok)
    assert result.positive.startswith("gs, geographic scene, volcano")
    assert result.matches[0].concept is None and result.matches[0].how == "unknown"
    pork = expand("pork", kb=kb, tokenizer=tok).matches[0]
    assert pork.how == "unknown" and pork.concept is None and 0 < pork.score < 0.84
    fuzzy = expand("airprot", kb=kb, tokenizer=tok).matches[0]
    assert fuzzy.how == "fuzzy" and fuzzy.concept == "airport" and fuzzy.score >= 0.84
    assert "unknown" in expand("volcano", kb=kb, tokenizer=tok).report()


def test_prompt_fits_77_tokens_and_never_drops_concepts_or_triggers(kb, tok):
    words = "airport, port, beach, resort, dense residential, storage tanks, railway station"
    result = expand(words, "descriptive", 3, seed=2, kb=kb, tokenizer=tok)
    assert count_tokens(tok, result.positive) <= 77 == 77
    assert result.truncated and all(t not in result.positive.split(", ") for t in result.truncated)
    parts = result.positive.split(", ")
    for needed in ["gs", "geographic scene", "airport", "port", "beach", "resort", "dense residential",
                   "storage tanks", "railway station"]:
        assert needed in parts
    assert "dropped to fit 77 tokens" in result.report()
    untruncated = expand(words, "descriptive", 0, seed=2, kb=kb, tokenizer=tok)
    assert not untruncated.truncated


@pytest.mark.parametrize("text, message", [
    ("", "empty"), ("   \t  ", "empty"), ("!!! ... ,,, ;", "only punctuation"), ("x" * 10_000, "10000 characters"),
])
def test_bad_input(kb, tok, text, message):
    with pytest.raises(InputError, match=message):
        expand(text, kb=kb, tokenizer=tok)


def test_control_characters_and_mixed_scripts(kb, tok):
    assert expand("\x00airport\x1b", kb=kb, tokenizer=tok).positive == "gs, geographic scene, airport"
    assert expand("air\x07port, river", kb=kb, tokenizer=tok).matches[-1].concept == "river"
    mixed = expand("机场 airport", kb=kb, tokenizer=tok)
    assert mixed.positive == "gs, geographic scene, airport"
    with pytest.raises(InputError, match="style"):
        expand("airport", "fancy", kb=kb, tokenizer=tok)
    with pytest.raises(InputError, match="detail"):
        expand("airport", "descriptive", 7, kb=kb, tokenizer=tok)


def test_overlong_trigger_words_are_an_error(kb, tok):
    with pytest.raises(InputError, match="tokens"):
        expand("airport", trigger_words=["very long trigger phrase number %d" % i for i in range(20)], kb=kb, tokenizer=tok)


def test_cli_prompt_json(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("W2S_CONCEPTS_DIR", str(tmp_path))
    assert main(["prompt", "airprot, volcano", "--style", "descriptive", "--detail", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"positive", "negative", "matches", "truncated"}
    assert out["matches"][0] == {"input": "airprot", "concept": "airport", "how": "fuzzy", "score": out["matches"][0]["score"]}
    assert out["matches"][1]["concept"] is None and out["matches"][1]["how"] == "unknown"
    assert isinstance(out["truncated"], list) and out["positive"].startswith("gs, geographic scene, airport, volcano")
    assert main(["prompt", "   "]) == 2
    assert "words: is empty" in capsys.readouterr().err


def test_generate_uses_the_expander(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("W2S_CONCEPTS_DIR", str(tmp_path))
    out = tmp_path / "d.png"
    assert main(["generate", "--model", "tiny", "harbour", "--style", "descriptive", "--detail", "2", "--steps", "2", "--width", "64",
                 "--height", "64", "--out", str(out)]) == 0
    params = json.loads(Image.open(out).text["word2scene"])
    assert params["prompt"].startswith("gs, geographic scene, port, ") and params["style"] == "descriptive"
    assert "oblique view" in params["negative"]
