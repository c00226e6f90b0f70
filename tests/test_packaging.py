"""The pack as it is published: a short README that gives CI's test command, documentation whose
links and images resolve, LICENSE and CITATION.cff, the Comfy Registry's pyproject fields, and a
.comfyignore that leaves development files out of `comfy node pack` but keeps the mini model."""
from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml
from PIL import Image

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
README_MAX_LINES = 200

FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_SRC = re.compile(r"""<(?:img|a)\b[^>]*?\b(?:src|href)=["']([^"']+)["']""", re.I)
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.+?)\s*#*\s*$", re.M)


def _prose(text: str) -> str:
    """The text outside fenced code blocks and inline code spans (where links are not links)."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text, lower-cased, without punctuation
    other than '-' and '_', spaces as '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links -> their text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    seen: collections.Counter[str] = collections.Counter()
    anchors = set()
    for _, heading in HEADING.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        slug = _slug(heading)
        anchors.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
        seen[slug] += 1
    return anchors


def _links(page: Path) -> list[str]:
    prose = _prose(page.read_text(encoding="utf-8"))
    return LINK.findall(prose) + HTML_SRC.findall(prose)


def _broken_links(page: Path) -> list[str]:
    broken = []
    for target in _links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / unquote(path_part)).resolve() if path_part else page.resolve()
        if ROOT.resolve() not in dest.parents:
            broken.append(f"{target} (outside the repository)")
        elif not dest.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target} (no heading with anchor #{anchor} in {dest.name})")
    return broken


def _ci_test_command() -> str:
    lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    commands = [ln for ln in lines if ln.startswith("bash scripts/test.sh")]
    assert commands, ".ci/run no longer runs scripts/test.sh: update this test"
    return commands[0]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


# --- README and docs --------------------------------------------------------------------


def test_readme_is_short_and_gives_the_ci_test_command():
    text = README.read_text(encoding="utf-8")
    n = len(text.splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines; at most {README_MAX_LINES} (move detail to docs/)"
    command = _ci_test_command()
    assert command in text, f"README.md must give the test command .ci/run runs: {command!r}"
    assert "bash scripts/run.sh generate airport --out outputs/airport.png" in text


def test_readme_links_every_docs_page():
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in _links(README)}
    orphans = [p.name for p in DOCS if p.resolve() not in linked]
    assert not orphans, f"docs pages the README does not link: {orphans}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_images_resolve(page):
    assert _links(page) or page != README, "README.md has no links at all: the link check is broken"
    broken = _broken_links(page)
    assert not broken, f"{page.relative_to(ROOT)}: broken links: {broken}"


def test_link_check_catches_a_broken_link(tmp_path, monkeypatch):
    """The checker itself can fail: a missing file and a missing anchor are both reported."""
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path.resolve())
    (tmp_path.resolve() / "a.md").write_text("# Title\n\n## Two words\n\n```\n# not a heading\n```\n")
    page = tmp_path.resolve() / "b.md"
    page.write_text(
        "[ok](a.md#two-words) [ok](a.md#title) `[code](nowhere.md)`\n"
        "[no file](missing.md) [no anchor](a.md#not-a-heading) ![img](x.png)\n"
    )
    broken = _broken_links(page)
    assert broken == [
        "missing.md (no such file)",
        "a.md#not-a-heading (no heading with anchor #not-a-heading in a.md)",
        "x.png (no such file)",
    ]


def test_slugs_follow_github():
    assert _slug("Measured: the 11 + 19 experiment") == "measured-the-11--19-experiment"
    assert _slug("The paper's concept, or your own") == "the-papers-concept-or-your-own"
    assert _slug("KSampler (`Heat Maps`)") == "ksampler-heat-maps"


def test_no_table_row_is_stated_twice():
    """A measured figure lives in one place; other pages link to it (no copied table rows)."""
    where: dict[str, list[str]] = collections.defaultdict(list)
    for page in PAGES:
        for line in FENCE.sub("", page.read_text(encoding="utf-8")).splitlines():
            row = line.strip()
            if row.startswith("|") and re.search(r"\d", row) and not set(row) <= set("|-: "):
                where[row].append(str(page.relative_to(ROOT)))
    repeated = {row: pages for row, pages in where.items() if len(pages) > 1}
    assert not repeated, f"table rows stated more than once: {repeated}"


# --- LICENSE and CITATION.cff -----------------------------------------------------------


def test_license_is_mit_as_pyproject_says():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License")
    assert "the Word2Scene for ComfyUI authors" in text
    assert "MIT" in str(_pyproject()["project"]["license"])


def test_citation_cff_parses_with_the_required_keys():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    for key in ("cff-version", "message", "title", "authors"):
        assert cff.get(key), f"CITATION.cff lacks {key!r}"
    assert re.fullmatch(r"1\.2\.\d+", str(cff["cff-version"]))
    assert all(isinstance(a, dict) and (a.get("name") or a.get("family-names")) for a in cff["authors"])
    project = _pyproject()["project"]
    assert str(cff["version"]) == project["version"], "CITATION.cff's version must follow pyproject's"
    assert cff["license"] == "MIT"
    paper = cff["preferred-citation"]
    for key in ("type", "title", "authors"):
        assert paper.get(key), f"preferred-citation lacks {key!r}"
    assert paper["title"].startswith("Word2Scene")
    assert [a["family-names"] for a in paper["authors"]] == ["Ren", "Liu", "Chen", "Yin", "Tao"]
    assert paper["doi"] in README.read_text(encoding="utf-8"), "the paper's DOI differs from the README's"


# --- pyproject: the Comfy Registry's fields ---------------------------------------------


def test_pyproject_has_the_registry_fields():
    data = _pyproject()
    project, comfy = data["project"], data["tool"]["comfy"]
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]*(?:[-_.][A-Za-z0-9]+)*", project["name"])
    assert len(project["name"]) < 100 and "comfyui" not in project["name"].lower()
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"])
    repository = project["urls"]["Repository"]
    assert repository.startswith("https://github.com/")
    assert comfy["PublisherId"] and comfy["DisplayName"]
    # the ComfyUI version requirement: a specifier that admits the tested ComfyUI
    specifier = pytest.importorskip("packaging.specifiers").SpecifierSet(comfy["requires-comfyui"])
    assert "0.3.64" in specifier, f"requires-comfyui {specifier} excludes the tested ComfyUI 0.3.64"


def test_registry_icon_is_a_small_square_image_in_this_repository():
    data = _pyproject()
    icon = data["tool"]["comfy"]["Icon"]
    repository = data["project"]["urls"]["Repository"].removeprefix("https://github.com/")
    match = re.fullmatch(rf"https://raw\.githubusercontent\.com/{re.escape(repository)}/[^/]+/(.+)", icon)
    assert match, f"Icon should be the raw URL of a file in {repository}: {icon!r}"
    path = ROOT / match.group(1)
    assert path.is_file(), f"the Icon's file {match.group(1)} is not in the repository"
    with Image.open(path) as image:
        assert image.format in {"PNG", "JPEG", "GIF"}
        width, height = image.size
    assert width == height and width <= 400, f"icon {width} x {height}: want a small square"


def test_package_data_ships_the_mini_files():
    data = _pyproject()
    patterns = data["tool"]["setuptools"]["package-data"]["word2scene"]
    assert "assets/mini/*.safetensors" in patterns
    mini = sorted((ROOT / "word2scene").glob("assets/mini/*.safetensors"))
    assert mini, "no Word2Scene-mini files in word2scene/assets/mini/"


# --- .comfyignore -----------------------------------------------------------------------


def _comfyignored(paths: list[str]) -> set[str]:
    """Which of these repository paths .comfyignore leaves out, matched as `comfy node pack`
    matches them (git-style patterns on each tracked file's path): by pathspec when it is
    installed, else by git's own matcher."""
    patterns = [
        ln.strip()
        for ln in (ROOT / ".comfyignore").read_text(encoding="utf-8").splitlines()
        if ln.strip() and not ln.lstrip().startswith("#")
    ]
    try:
        import pathspec
    except ModuleNotFoundError:
        pathspec = None
    if pathspec is not None:
        spec = pathspec.PathSpec.from_lines("gitwildmatch", patterns)
        return {p for p in paths if spec.match_file(p)}
    if shutil.which("git") is None:
        pytest.skip("neither pathspec nor git is available to match .comfyignore")
    out = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--ignored",
         "--exclude-from=.comfyignore", "--", *paths],
        capture_output=True, text=True,
    )
    if out.returncode != 0:
        pytest.skip(f"git cannot list files here: {out.stderr.strip()}")
    return set(out.stdout.splitlines()) & set(paths)


def _tracked() -> list[str]:
    if shutil.which("git") is None:
        pytest.skip("git is not available")
    out = subprocess.run(["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout.strip():
        pytest.skip("not a git checkout")
    return out.stdout.splitlines()


def test_comfyignore_leaves_out_development_files_and_keeps_the_pack():
    tracked = _tracked()
    ignored = _comfyignored(tracked)
    for folder in ("bench/", "tests/", "docs/images/"):
        inside = [p for p in tracked if p.startswith(folder)]
        assert inside, f"no tracked files under {folder}"
        kept = [p for p in inside if p not in ignored]
        assert not kept, f".comfyignore keeps {kept}"
    mini = [p for p in tracked if p.startswith("word2scene/assets/mini/")]
    assert any(p.endswith(".safetensors") for p in mini)
    needed = mini + [p for p in tracked if p.startswith(("word2scene/", "nodes/", "js/", "workflows/"))]
    needed += ["__init__.py", "pyproject.toml", "requirements.txt", "README.md", "LICENSE"]
    dropped = sorted(set(needed) & ignored)
    assert not dropped, f".comfyignore leaves out files the pack needs: {dropped}"
