"""The package's layering, read from the source: a module imports only from its own layer or
below (docs/contributing.md). Every import counts, also the ones inside functions."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "elp_fast"
# Lowest first; a module of layer k may import layers 0..k. Top-level modules and packages alike.
LAYERS = [
    {"version", "validation", "files", "config", "backends", "native_build"},
    {"ops", "kernels"},
    {"modules"},
    {"data"},
    {"checkpoint"},
    {"models"},
    {"engine"},
    {"tasks"},
    {"demo", "info", "cli"},
]
RANK = {name: k for k, names in enumerate(LAYERS) for name in names}


def unit_of(module: str) -> str:
    """'elp_fast.tasks.asr' -> 'tasks'; 'elp_fast' (the package's __init__) -> ''."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported elp_fast module) for every import in the file, relative ones resolved."""
    package = list(path.relative_to(ROOT.parent).parts[:-1])  # the package relative imports start from
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                names = [f"{target}.{a.name}" for a in node.names] if not node.module else [target]
            else:
                names = [node.module or ""]
            found += [(node.lineno, n) for n in names if n.startswith("elp_fast")]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("elp_fast")]
    return found


def upward_imports() -> list[str]:
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        own = unit_of(".".join(rel.parts if rel.name != "__init__" else rel.parts[:-1]))
        if own == "":
            continue  # elp_fast/__init__.py re-exports lazily (PEP 562) and may name any layer
        assert own in RANK, f"{path}: {own!r} is in no layer of LAYERS; give it one"
        for line, target in imports(path):
            unit = unit_of(target)
            if unit in ("", "__version__") or unit not in RANK:
                # `from elp_fast import X`: X must itself be in a layer (the lazy names resolve to models)
                unit = {"wrap": "models", "ELPConfig": "config", "__version__": "version"}.get(target.split(".")[-1],
                                                                                          unit)
            if unit not in RANK:
                bad.append(f"{path.relative_to(ROOT.parent)}:{line} imports {target}, which is in no layer")
            elif RANK[unit] > RANK[own]:
                bad.append(f"{path.relative_to(ROOT.parent)}:{line}: {own} imports {target} (layer {unit} is above)")
    return bad


def test_no_module_imports_a_layer_above_its_own():
    assert upward_imports() == []


def test_the_walk_sees_function_level_and_relative_imports(tmp_path, monkeypatch):
    """The check itself can fail: an engine module that imports tasks inside a function is caught."""
    fake = tmp_path / "elp_fast"
    (fake / "engine").mkdir(parents=True)
    (fake / "engine" / "__init__.py").write_text("")
    (fake / "engine" / "bad.py").write_text("def f():\n    from ..tasks import run\n    from .. import demo\n")
    (fake / "config.py").write_text("from .engine import bad\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", fake)
    found = upward_imports()
    assert any("engine/bad.py:2: engine imports elp_fast.tasks" in b for b in found), found
    assert any("engine/bad.py:3: engine imports elp_fast.demo" in b for b in found), found
    assert any("config.py:1: config imports elp_fast.engine " in b for b in found), found
