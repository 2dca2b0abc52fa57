"""The package's dependency rules: no import cycles, and model loading knows nothing of how the
world is learned."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "rnacli"


def import_graph() -> dict[str, set[str]]:
    """module -> rnacli modules it imports (at the top or inside functions)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        module = ".".join(parts).removesuffix(".__init__")
        graph[module] = {
            node.module
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rnacli")
        }
    return graph


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


def test_model_loading_does_not_know_how_the_world_is_learned():
    graph = import_graph()
    assert "rnacli.world.learn" not in graph["rnacli.models"]
    assert "rnacli.models" not in graph["rnacli.checkpoint"]
