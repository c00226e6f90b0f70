"""A review file is data from anywhere: `captions apply` and `concepts merge` take from it only
what the user asked for. Its dataset is confined (a sealed one from the user's own `captions
propose`, or one given on the command line), YAML aliases are refused, nothing outside --out is
deleted or written through a link, names stay unique, and malformed entries are named, never a
traceback. Built by hand (no classifier, no shared data): each test needs a few tiny images."""
import json

import pytest
import yaml
from PIL import Image

from word2scene.captions.review import MANIFEST, dataset_seal
from word2scene.cli import main
from word2scene.models.weight_files import file_sha256


def _entry(folder, file, label="airport", decision="adopt"):
    return {"file": file, "sha256": file_sha256(folder / file), "label": label,
            "scene": {"text": label, "source": "classifier", "confidence": 0.9, "decision": decision},
            "tags": [{"text": "runway", "source": "tagger", "confidence": 0.8, "decision": decision}],
            "sentences": [], "add": []}


def _dataset(tmp_path, files=("airport/a.png", "airport/b.png")):
    folder = tmp_path / "data"
    for n, file in enumerate(files):
        (folder / file).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 16), (n * 20, 0, 0)).save(folder / file)
    return folder


def _review(tmp_path, folder, images, sealed=True, **extra):
    dataset = str(folder.resolve())
    body = {"dataset": dataset, "dataset_seal": dataset_seal(dataset, create=True) if sealed else "",
            "images": images, **extra}
    path = tmp_path / "review.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def _apply(capsys, review, out, *more):
    rc = main(["captions", "apply", str(review), "--out", str(out), *more])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return rc, captured.out, captured.err


def test_a_review_naming_a_dataset_the_user_did_not_propose_for_is_refused(tmp_path, capsys):
    system = tmp_path / "system"  # stands for /etc: a folder the review's author knows a file of
    system.mkdir()
    (system / "passwd").write_text("root:x:0:0\n")
    review = _review(tmp_path, system, [_entry(system, "passwd")], sealed=False)
    body = yaml.safe_load(review.read_text())
    for seal in ("", "0" * 64, dataset_seal(str(tmp_path / "data"), create=True)):  # none, forged, another folder's
        body["dataset_seal"] = seal
        review.write_text(yaml.safe_dump(body))
        rc, _, err = _apply(capsys, review, tmp_path / "out")
        assert rc == 2 and "error: review: " in err and "was not written by your own `captions propose`" in err
        assert "--dataset FOLDER" in err
    assert not (tmp_path / "out").exists()
    rc, out, _ = _apply(capsys, review, tmp_path / "out", "--dataset", str(system))  # the user asks for it
    assert rc == 0 and "1 images written" in out
    sealed = _review(tmp_path, system, [_entry(system, "passwd")])
    assert _apply(capsys, sealed, tmp_path / "out2")[0] == 0  # the user's own proposal: its seal matches


def test_stale_files_are_removed_only_inside_out_and_never_through_links(tmp_path, capsys):
    folder = _dataset(tmp_path)
    review = _review(tmp_path, folder, [_entry(folder, "airport/a.png")])
    out = tmp_path / "out"
    assert _apply(capsys, review, out)[0] == 0
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("keep me")
    (outside / "other.txt").write_text("keep me too")
    (out / "linked").symlink_to(outside)  # a folder link inside --out
    (out / "airport" / "file_link.txt").symlink_to(outside / "other.txt")
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["files"] += ["linked/victim.txt", "airport/file_link.txt", "airport/a.png/x.txt", "../outside/other.txt"]
    (out / MANIFEST).write_text(json.dumps(manifest))
    rc, report, _ = _apply(capsys, review, out)
    assert rc == 0
    assert (outside / "victim.txt").read_text() == "keep me" and (outside / "other.txt").read_text() == "keep me too"
    assert (out / "airport" / "file_link.txt").is_symlink()
    assert "left 3 listed by an earlier apply that are not its regular files" in report
    (out / "airport").rename(out / "real")
    (out / "airport").symlink_to(outside)  # a class folder that leads outside: nothing is written through it
    rc, _, err = _apply(capsys, review, out)
    assert rc == 2 and "error: --out: " in err and "airport is a symbolic link" in err
    assert sorted(p.name for p in outside.iterdir()) == ["other.txt", "victim.txt"]


def test_yaml_aliases_in_a_review_are_refused(tmp_path, capsys):
    folder = _dataset(tmp_path)
    review = _review(tmp_path, folder, [_entry(folder, "airport/a.png")])
    body = review.read_text().replace("images:\n", "images: &all\n", 1) + "more: [*all, *all, *all]\n"
    review.write_text(body)
    rc, _, err = _apply(capsys, review, tmp_path / "out")
    assert rc == 2 and "error: review: " in err and "the alias *all is not accepted" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("change, message", [
    (lambda b: b["images"][0].update(add=[{"kind": ["tag"], "text": "x"}]), "add[0]: expected {kind: scene|tag|sentence"),
    (lambda b: b["images"][0].update(add=[{"kind": "tag", "text": ["x"]}]), "add[0]: expected {kind: scene|tag|sentence"),
    (lambda b: b.update(dataset=["/tmp"]), "dataset: expected the folder the images are in; found ['/tmp']"),
    (lambda b: b["images"][0].update(label=["airport"]), "label: expected the class name as text"),
])
def test_malformed_review_entries_are_named(tmp_path, capsys, change, message):
    folder = _dataset(tmp_path)
    review = _review(tmp_path, folder, [_entry(folder, "airport/a.png", decision="pending")])
    body = yaml.safe_load(review.read_text())
    change(body)
    review.write_text(yaml.safe_dump(body))
    rc, _, err = _apply(capsys, review, tmp_path / "out")
    assert rc == 2 and "error: review: " in err and message in err, err


def test_concepts_merge_names_a_list_kind_or_concept(tmp_path, capsys):
    for entry, message in (({"concept": "airport", "add": [{"kind": ["element"], "text": "apron"}]},
                            "add[0]: kind ['element']; accepted: element"),
                           ({"concept": ["airport"], "add": [{"kind": "element", "text": "apron"}]},
                            "classes.airport.concept: expected a concept id")):
        review = tmp_path / "review.yaml"
        review.write_text(yaml.safe_dump({"classes": {"airport": entry}}))
        assert main(["concepts", "merge", str(review), "--into", str(tmp_path / "mine.yaml")]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and "error: review: " in err and message in err, err


def test_names_that_would_collide_are_made_unique_and_reported(tmp_path, capsys):
    files = ("a/b__c.png", "a__b/c.png", "x.png", "x.jpg")
    folder = _dataset(tmp_path, files)
    review = _review(tmp_path, folder, [_entry(folder, f) for f in files])
    out = tmp_path / "out"
    rc, report, _ = _apply(capsys, review, out)
    assert rc == 0 and "4 images written, 4 with captions" in report
    written = sorted(p.name for p in (out / "airport").iterdir())
    assert written == ["a__b__c.png", "a__b__c.txt", "a__b__c_2.png", "a__b__c_2.txt", "x.png", "x.txt", "x_2.jpg",
                       "x_2.txt"]
    assert "renamed 2 whose names would have collided" in report
    assert "a__b/c.png -> airport/a__b__c_2.png" in report and "x.jpg -> airport/x_2.jpg" in report
    assert _apply(capsys, review, out)[1] == report  # the same names again: idempotent
    assert sorted(p.name for p in (out / "airport").iterdir()) == written
