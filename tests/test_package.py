"""The installed package: what `pip install .` puts on the path, and which install (core or an extra) brings each
import. Read from pyproject.toml and the sources, so no wheel is built and nothing is installed."""
import ast
import fnmatch
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path
from typing import Dict, Iterator, Set, Tuple

from setuptools import find_namespace_packages

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
LIBRARY = {"glide", "samplers", "demo"}  # what `pip install .` installs; bench/, scripts/, tests/ run from a checkout

# Modules of the library that belong to an extra: importing one is what needs it.
EXTRA_MODULES = {"glide/serving/ray_serve.py": "ray"}


def name_of(requirement: str) -> str:
    """The distribution a requirement names, normalised as pip compares them ("ray[serve]==2.60.0" -> "ray")."""
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", requirement).group()).lower()


def group(extra: str = "") -> Set[str]:
    """The distributions that `pip install .` (extra "") or `pip install '.[extra]'` brings, following the
    extras that name the project itself."""
    names = {name_of(r) for r in PROJECT["dependencies"]}
    for requirement in PROJECT["optional-dependencies"].get(extra, []):
        included = re.fullmatch(rf"{PROJECT['name']}\[(.+)\]", requirement)
        names |= set().union(*(group(e.strip()) for e in included.group(1).split(","))) if included else {name_of(requirement)}
    return names


def distributions() -> Dict[str, str]:
    """The distribution that provides each importable top-level module."""
    return {module: name_of(names[0]) for module, names in packages_distributions().items()}


def optional(node: ast.AST, parents: Dict[ast.AST, ast.AST]) -> bool:
    """Whether an import sits in a `try` that catches its failure (the code runs without it)."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError") for h in node.handlers):
            return True
    return False


def third_party_imports(path: Path) -> Iterator[Tuple[str, bool, int]]:
    """(top-level module, imported when the file is, line) for each import of a module from outside the
    repository; imports guarded by `except ImportError` are left out."""
    tree = ast.parse(path.read_text(), str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    local = {p.stem for p in path.parent.iterdir()} | {p.stem for p in ROOT.iterdir()} | {"glide_example_plugin"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            modules = [node.module]
        else:
            continue
        at_import = not any(isinstance(p, (ast.FunctionDef, ast.AsyncFunctionDef)) for p in ancestors(node, parents))
        for module in modules:
            top = module.split(".")[0]
            if top not in sys.stdlib_module_names and top not in local and not optional(node, parents):
                yield top, at_import, node.lineno


def ancestors(node: ast.AST, parents: Dict[ast.AST, ast.AST]) -> Iterator[ast.AST]:
    while node in parents:
        node = parents[node]
        yield node


def test_only_the_library_is_installed_with_all_its_data():
    found = PYPROJECT["tool"]["setuptools"]["packages"]["find"]
    packages = find_namespace_packages(where=str(ROOT), include=found["include"])
    assert {p.split(".")[0] for p in packages} == LIBRARY

    # Every file beside the code (weights, the painter's script, CLIP's config) ships in the wheel.
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]
    for top in LIBRARY:
        for path in (ROOT / top).rglob("*"):
            if path.is_file() and path.suffix not in (".py", ".pyc"):
                inside = path.relative_to(ROOT / top).as_posix()
                assert any(fnmatch.fnmatch(inside, p) for p in patterns.get(top, [])), \
                    f"{top}/{inside} is not in [tool.setuptools.package-data]"


def test_each_import_comes_with_the_install_that_needs_it():
    """The library's modules import at load time only what `pip install .` brings (the demo: `.[demo]`, a module
    of an extra: that extra); anything imported later is in some extra; bench/, scripts/ and tests/ need `.[dev]`."""
    extras = {extra: group(extra) for extra in PROJECT["optional-dependencies"]}
    anywhere = set().union(group(), *extras.values())
    provider = distributions()
    wrong = []
    for path in sorted(p for top in LIBRARY | {"bench", "scripts", "tests"} for p in (ROOT / top).rglob("*.py")):
        top = path.relative_to(ROOT).parts[0]
        in_library = top in LIBRARY
        extra = EXTRA_MODULES.get(path.relative_to(ROOT).as_posix(), "demo" if top == "demo" else "")
        for module, at_import, line in third_party_imports(path):
            allowed = (group(extra) if at_import else anywhere) if in_library else extras["dev"]
            if provider.get(module, name_of(module)) not in allowed:
                where = f".[{extra}]" if extra else "the core dependencies"
                wanted = where if in_library and at_import else "an extra" if in_library else ".[dev]"
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module}, which is not in {wanted}")
    assert not wrong, "\n".join(wrong)


def test_requirements_txt_takes_every_version_from_pyproject():
    lines = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if line and not line.startswith("#")]
    for line in lines:
        path = re.fullmatch(r"-e (\S+?)(\[[\w,]+\])?", line)
        assert path and (ROOT / path.group(1)).is_dir(), f"requirements.txt: {line!r} is not an editable local project"
    assert "-e .[dev]" in lines, "requirements.txt must install the project with its dev extra, as `make` does"
