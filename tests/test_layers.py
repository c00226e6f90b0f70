"""The core's shape: imports run one way, down the layers README.md > Layout lists, and only
nodes/comfy_bridge/ imports ComfyUI."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "word2scene"
LAYERS = {"errors": 0, "files": 1, "settings": 1, "imagery": 2, "datasets": 3, "models": 2, "concepts": 4,
          "prompts": 5, "scenes": 6, "training": 7, "evaluation": 8, "captions": 9, "cli": 10, "__main__": 11,
          "__init__": 11}


def _part(module: Path) -> str:
    rel = module.relative_to(CORE).parts
    return rel[0].removesuffix(".py")


def _imported_parts(module: Path) -> list[tuple[str, int, bool]]:
    """(top-level core part, line, at module level) for each internal import of a core module."""
    tree = ast.parse(module.read_text())
    depth = len(module.relative_to(CORE).parts) - 1  # 0 for word2scene/x.py
    top_level = {id(n) for n in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            up = node.level - 1
            if up > depth:
                continue
            base = list(module.relative_to(CORE).parts[:depth - up])
            target = base + (node.module.split(".") if node.module else [])
            names = [target] if node.module or base else [[a.name] for a in node.names]
            for t in names:
                if t:
                    found.append((t[0].removesuffix(".py"), node.lineno, id(node) in top_level))
    return found


def test_core_imports_run_down_the_layers_only():
    wrong = []
    for module in CORE.rglob("*.py"):
        part = _part(module)
        for target, line, _ in _imported_parts(module):
            if target in LAYERS and target != part and LAYERS[target] >= LAYERS[part]:
                wrong.append(f"{module.relative_to(ROOT)}:{line} imports {target} (layer {LAYERS[target]}) "
                             f"from {part} (layer {LAYERS[part]})")
    assert not wrong, "\n".join(wrong)
    assert set(LAYERS) - {"__main__", "__init__"} == {_part(m) for m in CORE.rglob("*.py")} - {"__main__", "__init__"}


def test_internal_imports_are_at_the_top():
    inside = [f"{m.relative_to(ROOT)}:{line}" for m in CORE.rglob("*.py") for _, line, top in _imported_parts(m) if not top]
    assert not inside, inside


def test_no_import_cycles_between_core_modules():
    import subprocess
    import sys

    # each module imported first in a fresh interpreter: a cycle through module-level imports fails there
    modules = [".".join(("word2scene",) + m.relative_to(CORE).with_suffix("").parts).removesuffix(".__init__")
               for m in sorted(CORE.rglob("*.py")) if m.name != "__main__.py"]
    script = ("import importlib, sys\nfor name in sys.argv[1:]:\n"
              "    for loaded in [m for m in sys.modules if m.startswith('word2scene')]:\n        del sys.modules[loaded]\n"
              "    importlib.import_module(name)\n")
    done = subprocess.run([sys.executable, "-c", script, *modules], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_only_the_bridge_imports_comfyui():
    comfy = ("comfy", "folder_paths", "server", "comfy_extras", "nodes", "execution")
    offenders = []
    for module in list(CORE.rglob("*.py")) + list((ROOT / "nodes").glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            offenders += [f"{module.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in comfy]
    assert offenders == ["nodes/__init__.py: folder_paths"], offenders  # only to learn whether ComfyUI is there
