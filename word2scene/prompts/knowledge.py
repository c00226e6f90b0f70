"""The remote-sensing concept knowledge base: the built-in file plus users' files.

A knowledge file is YAML (format described at the top of assets/concepts.yaml). User
files are loaded on top of the built-in one: a new id adds a concept; an existing id
extends its lists (or replaces the entry with `replace: true`); scalar fields replace.
"""
from __future__ import annotations

import functools
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import InputError
from ..files import read_yaml_text

BUILTIN = Path(__file__).resolve().parents[1] / "assets" / "concepts.yaml"
USER_DIR_ENV = "W2S_CONCEPTS_DIR"
DEFAULT_USER_DIR = Path.home() / ".word2scene" / "concepts"
LIST_FIELDS = ("aliases", "elements", "relations", "colours", "negatives", "datasets")
PAPER_STATUS = ("trained", "zero-shot", "absent")
ID_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass
class SceneConcept:
    id: str
    name: str
    aliases: list[str] = field(default_factory=list)
    elements: list[str] = field(default_factory=list)
    relations: list[str] = field(default_factory=list)
    colours: list[str] = field(default_factory=list)
    negatives: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    paper: str = "absent"
    source: str = "built-in"


def normalize(text: str) -> str:
    """Lower-case words separated by single spaces: CamelCase, snake_case, hyphens and
    slashes split; accents and full-width forms folded; CJK kept as is."""
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", text)
    text = re.sub(r"[_\-/.]+", " ", text.lower())
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    text = re.sub(r"[^\w\s']+", " ", text)
    return " ".join(text.split())


def _singular(word: str) -> str:
    for plural, single in (("ies", "y"), ("ches", "ch"), ("shes", "sh"), ("sses", "ss"), ("xes", "x")):
        if word.endswith(plural) and len(word) > len(plural) + 1:
            return word[: -len(plural)] + single
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
        return word[:-1]
    return word


def lookup_keys(text: str) -> set[str]:
    """The forms a name is found under: normalized, run-together, last word singular."""
    norm = normalize(text)
    if not norm:
        return set()
    words = norm.split()
    singular = " ".join(words[:-1] + [_singular(words[-1])])
    return {norm, norm.replace(" ", ""), singular, singular.replace(" ", "")}


class KnowledgeBase:
    """Concepts by id and an index of every alias form -> concept id."""
    def __init__(self, concepts: dict[str, SceneConcept], negatives: list[str], files: list[str]):
        self.concepts = concepts
        self.negatives = negatives
        self.files = files
        self.problems: list[str] = []
        self.index: dict[str, str] = {}
        owner_text: dict[str, tuple[str, str]] = {}
        for concept in concepts.values():
            for name in [concept.id, concept.name, *concept.aliases]:
                for key in lookup_keys(name):
                    other = self.index.get(key)
                    if other is not None and other != concept.id:
                        first_name, first_id = owner_text[key]
                        raise InputError("knowledge base", f"alias {name!r} of {concept.id} ({concept.source}) is also "
                                                           f"{first_name!r} of {first_id} ({concepts[first_id].source})")
                    self.index[key] = concept.id
                    owner_text.setdefault(key, (name, concept.id))

    def find(self, text: str) -> str | None:
        """Concept id for an exact name or alias form, else None."""
        for key in sorted(lookup_keys(text), key=len, reverse=True):
            if key in self.index:
                return self.index[key]
        return None

    def __getitem__(self, concept_id: str) -> SceneConcept:
        return self.concepts[concept_id]

    def by_paper(self, status: str) -> list[str]:
        return sorted(c.id for c in self.concepts.values() if c.paper == status)


def _mark(node) -> int:
    return node.start_mark.line + 1


def _parse_file(path: Path) -> tuple[dict[str, dict], list[str] | None]:
    """Read one knowledge file, checking every field; errors name the file, line and field."""
    text = read_yaml_text(path, "knowledge file")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise InputError("knowledge file", f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None

    def fail(node, field_path, message):
        raise InputError("knowledge file", f"{path}:{_mark(node)}: {field_path}: {message}")

    if not isinstance(root, yaml.MappingNode):
        raise InputError("knowledge file", f"{path}:1: the file must be a mapping with a 'concepts' key")
    top = {k.value: v for k, v in root.value}
    for key, node in top.items():
        if key not in ("schema", "concepts", "negatives"):
            fail(node, key, "unknown top-level key; accepted: schema, concepts, negatives")
    negatives = None
    if "negatives" in top:
        negatives = _string_list(top["negatives"], "negatives", fail)
    concepts_node = top.get("concepts")
    if concepts_node is None:
        raise InputError("knowledge file", f"{path}:1: concepts: missing")
    if not isinstance(concepts_node, yaml.MappingNode):
        fail(concepts_node, "concepts", "must map concept ids to entries")
    entries = {}
    for key_node, entry in concepts_node.value:
        cid = key_node.value
        if not ID_PATTERN.match(str(cid)):
            fail(key_node, f"concepts.{cid}", "ids are snake_case (a-z, 0-9, _), e.g. dense_residential")
        if not isinstance(entry, yaml.MappingNode):
            fail(entry, f"concepts.{cid}", "must be a mapping of fields")
        data = {}
        for fk, fv in entry.value:
            name = fk.value
            where = f"concepts.{cid}.{name}"
            if name in LIST_FIELDS:
                data[name] = _string_list(fv, where, fail)
            elif name in ("name",):
                if not isinstance(fv, yaml.ScalarNode) or not str(fv.value).strip():
                    fail(fv, where, "must be a non-empty string")
                data[name] = str(fv.value).strip()
            elif name == "paper":
                if not isinstance(fv, yaml.ScalarNode) or fv.value not in PAPER_STATUS:
                    fail(fv, where, f"must be one of {', '.join(PAPER_STATUS)}")
                data[name] = fv.value
            elif name == "replace":
                if not isinstance(fv, yaml.ScalarNode) or fv.value.lower() not in ("true", "false"):
                    fail(fv, where, "must be true or false")
                data[name] = fv.value.lower() == "true"
            else:
                fail(fk, where, f"unknown field; accepted: name, paper, replace, {', '.join(LIST_FIELDS)}")
        data["_line"] = _mark(key_node)
        entries[cid] = data
    return entries, negatives


def _string_list(node, where, fail) -> list[str]:
    if not isinstance(node, yaml.SequenceNode):
        fail(node, where, "must be a list of strings, e.g. [runways, parked planes]")
    out = []
    for item in node.value:
        if not isinstance(item, yaml.ScalarNode) or not str(item.value).strip():
            fail(item, where, "must be a list of non-empty strings")
        out.append(str(item.value).strip())
    return out


def _merge(concepts: dict[str, SceneConcept], entries: dict[str, dict], source: str) -> None:
    for cid, data in entries.items():
        line = data.pop("_line")
        where = f"{source}:{line}"
        replace = data.pop("replace", False)
        if cid in concepts and not replace:
            concept = concepts[cid]
            for name in LIST_FIELDS:
                for item in data.get(name, []):
                    if item not in getattr(concept, name):
                        getattr(concept, name).append(item)
            concept.name = data.get("name", concept.name)
            concept.paper = data.get("paper", concept.paper)
            concept.source = f"{concept.source} + {where}"
        else:
            concepts[cid] = SceneConcept(id=cid, name=data.get("name", cid.replace("_", " ")), source=where,
                                         paper=data.get("paper", "absent"), **{k: list(data.get(k, [])) for k in LIST_FIELDS})


def user_dirs() -> list[Path]:
    """Folders of user knowledge files: $W2S_CONCEPTS_DIR (os.pathsep-separated), else
    ~/.word2scene/concepts."""
    value = os.environ.get(USER_DIR_ENV)
    return [Path(p) for p in value.split(os.pathsep) if p] if value else [DEFAULT_USER_DIR]


def knowledge_files(dirs: list[Path] | None = None) -> list[Path]:
    """User knowledge files (*.yaml, *.yml) in the given folders (default: user_dirs())."""
    paths = []
    for folder in (user_dirs() if dirs is None else dirs):
        if Path(folder).is_dir():
            paths += sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".yaml", ".yml"))
    return paths


def knowledge_signature(dirs: list[Path] | None = None) -> tuple:
    """Changes whenever a knowledge file is added, removed or edited."""
    out = []
    for path in [BUILTIN, *knowledge_files(dirs)]:
        try:
            st = path.stat()
            out.append((str(path), st.st_mtime_ns, st.st_size))
        except OSError:
            pass
    return tuple(out)


@functools.lru_cache(maxsize=4)
def _cached_knowledge(dirs: tuple[str, ...], signature: tuple) -> "KnowledgeBase":
    return load_knowledge([Path(d) for d in dirs])


def cached_knowledge(dirs: list[Path] | None = None) -> "KnowledgeBase":
    """load_knowledge, reloaded only when a knowledge file changes."""
    dirs = user_dirs() if dirs is None else dirs
    return _cached_knowledge(tuple(str(d) for d in dirs), knowledge_signature(dirs))


def load_knowledge(extra_dirs: list[Path] | None = None, files: list[Path] | None = None,
                   strict: bool = False) -> KnowledgeBase:
    """The built-in knowledge base plus every *.yaml/*.yml in the user folders and `files`.

    A malformed user file is skipped and its error kept in `problems` (strict=True raises
    it instead): the built-in base always loads.
    """
    entries, negatives = _parse_file(BUILTIN)
    concepts: dict[str, SceneConcept] = {}
    _merge(concepts, entries, "built-in")
    paths = knowledge_files(extra_dirs) + [Path(p) for p in files or []]
    problems, loaded = [], ["built-in"]
    negatives = list(negatives or [])
    for path in paths:
        snapshot = {cid: SceneConcept(**{**c.__dict__, **{k: list(getattr(c, k)) for k in LIST_FIELDS}})
                    for cid, c in concepts.items()}
        try:
            user_entries, user_negatives = _parse_file(path)
            _merge(snapshot, user_entries, str(path))
            KnowledgeBase(snapshot, negatives, [])  # alias clashes show here, naming both
        except InputError as exc:
            if strict:
                raise
            problems.append(str(exc))
            continue
        concepts = snapshot
        negatives += [n for n in user_negatives or [] if n not in negatives]
        loaded.append(str(path))
    kb = KnowledgeBase(concepts, negatives, loaded)
    kb.problems = problems
    return kb
