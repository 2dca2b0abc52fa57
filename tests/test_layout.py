"""The package's shape (docs/architecture.md): layers whose imports point one way, no import
cycles, few modules at the root, short functions, and nothing installed outside `rnacli`."""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rnacli"

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# Bottom to top: a module imports from its own layer or a lower one, never a higher one.
LAYERS = [
    ("rnacli", "rnacli.errors", "rnacli.console", "rnacli.files"),
    ("rnacli.runs", "rnacli.runtime"),
    (
        "rnacli.recipe",
        "rnacli.data",
        "rnacli.models",
        "rnacli.methods",
        "rnacli.world.generate",
        "rnacli.world.vocab",
        "rnacli.world.store",
        "rnacli.world",
    ),
    ("rnacli.evaluate",),
    ("rnacli.training", "rnacli.world.learn", "rnacli.demo"),
    ("rnacli.analysis", "rnacli.attacks"),
    ("rnacli.cli", "rnacli.app", "rnacli.__main__"),
]
# The page imports the demo's logic and the error type, nothing else of rnacli.
APP_MAY_IMPORT = ("rnacli.demo", "rnacli.errors", "rnacli.app")
ROOT_MODULES = {"__init__", "__main__", "errors", "recipe", "console"}
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    found = {}
    for base, name in ((PACKAGE, "rnacli"), (ROOT / "app", "rnacli.app")):
        for path in base.rglob("*.py"):
            parts = path.relative_to(base).with_suffix("").parts
            found[".".join((name, *parts)).removesuffix(".__init__")] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> rnacli modules it imports (at the top or inside functions)."""
    graph: dict[str, set[str]] = {}
    for module, path in _modules().items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rnacli"):
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported |= {a.name for a in node.names if a.name.startswith("rnacli")}
        graph[module] = imported
    return graph


def layer_of(module: str) -> int:
    """The layer of the longest prefix of `module` that LAYERS names."""
    best, depth = None, -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > depth:
                best, depth = i, len(prefix)
    if best is None:
        raise KeyError(f"{module} is in no layer: add it to LAYERS (and docs/architecture.md)")
    return best


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{src} (layer {layer_of(src)}) imports {dst} (layer {layer_of(dst)})"
        for src, targets in graph.items()
        for dst in targets
        if layer_of(dst) > layer_of(src)
    )


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found = []

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt > path[0]:  # each cycle once, from its smallest module
                visit(nxt, [*path, nxt])

    for start in sorted(graph):
        visit(start, [start])
    return found


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_layer_check_finds_an_upward_import():
    graph = {"rnacli.models.loading": {"rnacli.training.loop"}, "rnacli.cli": {"rnacli.models"}}
    assert upward_imports(graph) == [
        "rnacli.models.loading (layer 2) imports rnacli.training.loop (layer 4)"
    ]
    assert layer_of("rnacli.world.learn") > layer_of("rnacli.world.generate")


def test_imports_point_down_the_layers():
    assert upward_imports(import_graph()) == []


def test_the_page_uses_the_demo_logic_only():
    graph = import_graph()
    wrong = {
        f"{src} imports {dst}"
        for src, targets in graph.items()
        if src.startswith("rnacli.app")
        for dst in targets
        if not dst.startswith(APP_MAY_IMPORT)
    }
    assert not wrong


def test_model_loading_does_not_know_how_the_world_is_learned():
    graph = import_graph()
    assert "rnacli.world.learn" not in graph["rnacli.models.loading"]
    assert not any(m.startswith("rnacli.models") for m in graph["rnacli.runs.checkpoint"])


def test_few_modules_at_the_root():
    assert {p.stem for p in PACKAGE.glob("*.py")} <= ROOT_MODULES


def test_functions_are_short():
    long = []
    for folder in ("rnacli", "app", "benchmarks", "recipes"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        long.append(f"{path.relative_to(ROOT)}::{node.name} ({lines} lines)")
    assert not long


def test_every_package_is_installed_under_rnacli():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]
    packages = set(config["setuptools"]["packages"])
    on_disk = {m for m, p in _modules().items() if p.name == "__init__.py"}
    assert packages == on_disk
    assert all(p == "rnacli" or p.startswith("rnacli.") for p in packages)
    assert config["setuptools"]["package-dir"] == {"rnacli.app": "app"}


@pytest.mark.parametrize("name", ["app"])
def test_no_top_level_app_package_is_importable_from_elsewhere(name, tmp_path, monkeypatch):
    """Outside the checkout, `import app` finds nothing of ours (the page is rnacli.app)."""
    import importlib.util

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if Path(p or ".").resolve() != ROOT])
    spec = importlib.util.find_spec(name)
    assert spec is None or not str(spec.origin or "").startswith(str(ROOT))
