"""The packages' modules import one another in one direction: no module imports itself through others.

Read from the source (no module is imported): every `import` and `from ... import` statement, those inside
functions and `if TYPE_CHECKING:` blocks too (an import moved into a function still makes a loop, it only
hides it until the function runs), relative imports resolved, `from package import name` counted as an
import of the module `package.name` when there is one. Imports of a package's own submodules by its
`__init__` are how a package gathers its parts, so a module importing its own package is not counted.
"""
import ast
from pathlib import Path
from typing import Dict, List, Optional, Set

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("glide", "samplers", "demo")


def modules() -> Dict[str, Path]:
    """Every module of the packages, by dotted name ("glide.serving.jobs", "demo" for demo/__init__.py)."""
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _resolve(module: str, is_package: bool, level: int, target: Optional[str]) -> str:
    """The absolute name of a relative import `level` dots up from `module` (a package's own level is itself)."""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[:len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([target] if target else []))


def imports_of(module: str, path: Path, known: Set[str]) -> Set[str]:
    """The modules of `known` that `module` imports anywhere in its source."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node.level, node.module) if node.level else node.module
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            # `import glide.serving.jobs` runs glide/__init__ and glide/serving/__init__ too, but those are the
            # package's own business: count the deepest known module named.
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module and not module.startswith(name + "."):
                found.add(name)
    return found


def find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """One import loop of `graph` as [a, b, ..., a], or None when it has none (depth-first search)."""
    state: Dict[str, int] = {}          # 1: on the current path, 2: finished
    path: List[str] = []

    def visit(node: str) -> Optional[List[str]]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def loops(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """One loop in each group of modules that import one another (each strongly connected part of `graph`)."""
    found, seen = [], set()
    while True:
        rest = {node: edges - seen for node, edges in graph.items() if node not in seen}
        cycle = find_cycle(rest)
        if cycle is None:
            return found
        found.append(cycle)
        seen.update(reachable_loop(rest, cycle[0]))


def reachable_loop(graph: Dict[str, Set[str]], start: str) -> Set[str]:
    """The modules that `start` reaches and that reach `start` back: its whole loop group."""
    def reach(edges: Dict[str, Set[str]]) -> Set[str]:
        out, todo = {start}, [start]
        while todo:
            for nxt in edges.get(todo.pop(), ()):
                if nxt not in out:
                    out.add(nxt)
                    todo.append(nxt)
        return out

    backwards: Dict[str, Set[str]] = {}
    for node, edges in graph.items():
        for nxt in edges:
            backwards.setdefault(nxt, set()).add(node)
    return reach(graph) & reach(backwards)


def test_the_loop_finder_finds_every_loop_and_only_loops():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert loops({"a": {"b"}, "b": {"a", "c"}, "c": {"d"}, "d": {"c"}, "e": {"a"}}) == [["a", "b", "a"],
                                                                                          ["c", "d", "c"]]


def test_relative_imports_resolve_as_python_resolves_them():
    assert _resolve("glide.serving.jobs", False, 1, "metrics") == "glide.serving.metrics"
    assert _resolve("glide.serving.jobs", False, 2, "errors") == "glide.errors"
    assert _resolve("glide.serving", True, 1, "jobs") == "glide.serving.jobs"
    assert _resolve("demo.api", False, 1, None) == "demo"


def test_no_module_imports_itself_through_others():
    known = modules()
    graph = {name: imports_of(name, path, set(known)) for name, path in known.items()}
    assert graph["glide.serving.local"], "the reader found no imports: it is broken, not the code clean"
    found = loops(graph)
    assert not found, "import loops:\n" + "\n".join(" -> ".join(cycle) for cycle in found)
