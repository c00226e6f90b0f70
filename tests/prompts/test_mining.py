"""Mining (machine proposals) and review/merge (expert decisions) on the real RSICD captions."""
import pytest
import yaml

from conftest import SHARED
from word2scene.cli import main
from word2scene.errors import InputError
from word2scene.prompts.knowledge import load_knowledge
from word2scene.prompts.mining import mine, read_captions
from word2scene.prompts.expander import expand

CAPTIONS = SHARED / "data" / "rs_scenes" / "captions.jsonl"
needs_data = pytest.mark.skipif(not CAPTIONS.is_file(), reason=f"shared data not found at {CAPTIONS}")


@needs_data
def test_mining_the_rsicd_captions_gives_at_least_5_phrases_per_class():
    mined = mine(read_captions(CAPTIONS))
    assert len(mined) == 30
    for cls, phrases in mined.items():
        assert len(phrases) >= 5, cls
        assert all(p.count >= 2 and p.examples for p in phrases)
    top = lambda cls, n=8: [p.text for p in mined[cls] if p.kind == "element"][:n]  # noqa: E731
    assert {"runways", "planes", "terminal"} <= set(top("airport"))
    assert {"tanks", "storage tanks"} & set(top("storage_tanks"))
    assert {"boats", "ships"} & set(top("port"))
    assert {"waves", "ocean", "sea"} & set(top("beach"))
    assert any("swimming pool" in t for t in top("resort", 10))


def test_kohya_sidecars(tmp_path):
    folder = tmp_path / "10_airport"
    folder.mkdir()
    for i, caption in enumerate(["planes parked near the terminal", "two runways and planes", "planes near runways"]):
        (folder / f"{i}.txt").write_text(caption)
        (folder / f"{i}.png").write_bytes(b"")
    by_class = read_captions(tmp_path)
    assert list(by_class) == ["airport"] and len(by_class["airport"]) == 3
    phrases = {p.text: p.count for p in mine(by_class)["airport"]}
    assert phrases["planes"] == 3 and phrases["runways"] == 2


@pytest.mark.parametrize("content, message", [("{not json\n", "not a JSON line"), ('{"caption": "x"}\n', "a line needs 'class'")])
def test_bad_captions(tmp_path, content, message):
    (tmp_path / "c.jsonl").write_text(content)
    with pytest.raises(InputError, match=message):
        read_captions(tmp_path / "c.jsonl")
    with pytest.raises(InputError, match="does not exist"):
        read_captions(tmp_path / "missing.jsonl")


@needs_data
def test_review_and_merge_round_trip(tmp_path, capsys):
    review = tmp_path / "review.yaml"
    assert main(["concepts", "mine", str(CAPTIONS), "--out", str(review)]) == 0
    data = yaml.safe_load(review.read_text())
    airport = data["classes"]["airport"]
    assert airport["concept"] == "airport" and all(p["decision"] == "pending" for p in airport["proposals"])
    texts = [p["text"] for p in airport["proposals"]]
    airport["proposals"][texts.index("planes")]["decision"] = "adopt"
    airport["proposals"][texts.index("apron")].update(decision="amend", amended="aircraft apron with stands")
    airport["proposals"][texts.index("airport")]["decision"] = "annihilate"
    airport["add"] = [{"kind": "relation", "text": "jet bridges along the terminal"}]
    review.write_text(yaml.safe_dump(data, allow_unicode=True))
    user = tmp_path / "concepts"
    user.mkdir()
    assert main(["concepts", "merge", str(review), "--into", str(user / "my_concepts.yaml")]) == 0
    assert "adopt 1, amend 1, annihilate 1" in capsys.readouterr().out
    kb = load_knowledge(extra_dirs=[user])
    assert not kb.problems
    assert {"planes", "aircraft apron with stands"} <= set(kb["airport"].elements)
    assert "jet bridges along the terminal" in kb["airport"].relations and "airport" not in kb["airport"].elements
    prompts = {expand("airport", "descriptive", 3, seed=s, kb=kb).positive for s in range(30)}
    assert any("aircraft apron with stands" in p for p in prompts)
    # merging again keeps one copy of each phrase
    assert main(["concepts", "merge", str(review), "--into", str(user / "my_concepts.yaml")]) == 0
    again = yaml.safe_load((user / "my_concepts.yaml").read_text())
    assert again["concepts"]["airport"]["elements"].count("planes") == 1


def test_merge_rejects_bad_decisions(tmp_path):
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({"classes": {"airport": {"proposals": [
        {"kind": "element", "text": "planes", "decision": "maybe"}]}}}))
    with pytest.raises(InputError, match=r"classes.airport.proposals\[0\] \('planes'\): decision 'maybe'"):
        from word2scene.prompts.review import merge_review
        merge_review(tmp_path / "r.yaml", tmp_path / "out.yaml", load_knowledge(extra_dirs=[]))
    assert not (tmp_path / "out.yaml").exists()
