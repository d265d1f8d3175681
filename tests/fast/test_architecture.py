"""The repository's structure, checked in seconds: layers, names, references, the wheel.

* No import cycle among scrapesync's modules (every import statement counts, deferred ones
  inside functions included; only `if TYPE_CHECKING:` blocks are left out).
* The shared modules (`sources/common/`, `pipelines/`) name no provider.
* Nothing in the repository points at notes outside it.
* A wheel installs `scrapesync` and nothing generic at the top level of site-packages.

README "Architecture" describes the layers these tests hold the code to.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "scrapesync"
# the repository folders an install maps under `scrapesync.` (the links in scrapesync/)
FOLDERS = ("sources", "pipelines", "sandbox")
SHARED = ("sources/common", "pipelines")
# notes that lived beside the repository once; the docs/ pages replaced them
# spelled in parts, so that this file is not itself a hit for tools grepping the repository
OUTSIDE_REFERENCES = tuple(
    "".join(parts)
    for parts in (
        ("api", "-notes"),
        ("dlt", "-facts"),
        ("perf", "-facts"),
        ("..", "/shared"),
        ("shared/", "api-docs"),
    )
)
# provider names as prose spells them, besides the package names found under sources/
PROVIDER_ALIASES = ("open.cx",)
KNOWN_PROVIDERS = ("reworkd", "scrapewise", "opencx", "outscraper", "oxylabs")


@dataclass(frozen=True)
class Import:
    """One import edge: `source` imports `target` at `line`."""

    source: str
    target: str
    line: int


# ---------------------------------------------------------------- the import graph


def module_files() -> dict[str, Path]:
    """Every scrapesync module by dotted name, from the repository folders."""
    modules: dict[str, Path] = {PACKAGE: REPO / PACKAGE / "__init__.py"}
    for folder in FOLDERS:
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((PACKAGE, *parts))] = path
    return modules


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement at any depth, skipping the bodies of `if TYPE_CHECKING:`."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        if isinstance(node, ast.If) and is_type_checking(node):
            for other in node.orelse:
                yield from import_nodes(ast.Module(body=[other], type_ignores=[]))
            continue
        yield from import_nodes(node)


def absolute_base(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The module a `from ... import` reads from, relative imports resolved."""
    if node.level == 0:
        return node.module or ""
    package = module if is_package else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> Iterator[str]:
    """Dotted names an import statement loads (a submodule named in `from` counts as itself)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = absolute_base(node, module, is_package)
    for alias in node.names:
        yield f"{base}.{alias.name}" if alias.name != "*" else base
    yield base


def import_edges(modules: dict[str, Path]) -> list[Import]:
    """Edges between scrapesync modules; `from pkg import name` is an edge to `pkg.name` when
    that is a module, else to `pkg` (its `__init__`)."""
    edges: list[Import] = []
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in import_nodes(tree):
            names = list(targets(node, module, is_package))
            found = [name for name in names if name in modules]
            if isinstance(node, ast.ImportFrom):
                base = names[-1]
                # a `from` that names only submodules does not count as an edge to `base`
                submodules = [name for name in found if name != base]
                if len(submodules) == len(node.names):
                    found = submodules
            edges.extend(Import(module, target, node.lineno) for target in set(found))
    return edges


def strongly_connected(nodes: list[str], edges: list[Import]) -> list[list[str]]:
    """Tarjan's strongly connected components of the import graph."""
    graph: dict[str, list[str]] = {node: [] for node in nodes}
    for edge in edges:
        graph[edge.source].append(edge.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in nodes:
        if node not in index:
            visit(node)
    return components


def one_cycle(component: list[str], edges: list[Import]) -> list[Import]:
    """A shortest import cycle through the component's first module (for the failure text)."""
    members = set(component)
    inside = [e for e in edges if e.source in members and e.target in members]
    start = component[0]
    paths: dict[str, list[Import]] = {start: []}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for edge in (e for e in inside if e.source == node):
                if edge.target == start:
                    return [*paths[node], edge]
                if edge.target not in paths:
                    paths[edge.target] = [*paths[node], edge]
                    following.append(edge.target)
        frontier = following
    return []


def describe(cycle: list[Import]) -> str:
    return "\n".join(f"  {e.source} (line {e.line}) imports {e.target}" for e in cycle)


def test_given_every_module_then_no_import_cycle_exists() -> None:
    modules = module_files()
    edges = import_edges(modules)

    cycles = [c for c in strongly_connected(sorted(modules), edges) if len(c) > 1]

    assert not cycles, "import cycles:\n" + "\n\n".join(
        f"{len(c)} modules: {', '.join(c)}\n{describe(one_cycle(c, edges))}" for c in cycles
    )


def test_given_the_graph_builder_then_it_sees_deferred_and_submodule_imports(
    tmp_path: Path,
) -> None:
    source = tmp_path / "a.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from scrapesync.sources import common\n"
        "if TYPE_CHECKING:\n"
        "    import scrapesync.pipelines.cli\n"
        "def later() -> None:\n"
        "    from scrapesync.pipelines import registry, runner\n",
        encoding="utf-8",
    )
    empty = tmp_path / "empty.py"
    empty.write_text("", encoding="utf-8")
    modules = (
        "scrapesync.sources.common",
        "scrapesync.pipelines",
        "scrapesync.pipelines.cli",
        "scrapesync.pipelines.registry",
        "scrapesync.pipelines.runner",
    )
    known = dict.fromkeys(modules, empty)

    edges = import_edges({"scrapesync.a": source, **known})

    assert sorted(e.target for e in edges if e.source == "scrapesync.a") == [
        "scrapesync.pipelines.registry",
        "scrapesync.pipelines.runner",
        "scrapesync.sources.common",
    ]


def absolute_names(node: ast.Import | ast.ImportFrom) -> list[str]:
    """The absolute module names an import statement spells out (relative ones are inside)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    return [node.module or ""] if node.level == 0 else []


def test_given_every_module_then_imports_use_the_installed_package_name() -> None:
    """`sources.…` works only inside the repository; an installed wheel has `scrapesync.…`."""
    bare = re.compile(rf"^({'|'.join(FOLDERS)})(\.|$)")
    found = []
    for module, path in module_files().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in import_nodes(tree):
            names = absolute_names(node)
            found += [f"{module} line {node.lineno}: {n}" for n in names if bare.match(n)]

    assert not found, "imports of the bare repository folders:\n" + "\n".join(found)


# ---------------------------------------------------------------- names and references


def provider_packages() -> list[str]:
    """Every provider package under sources/ (found as the registry finds them)."""
    found = {p.parent.name for p in (REPO / "sources").glob("*/provider.py")}
    return sorted(found - {"common"})  # common/provider.py describes providers; it is none


def provider_names() -> list[str]:
    """Every name a provider goes by: its package, plus the spellings prose uses."""
    return sorted({*provider_packages(), *KNOWN_PROVIDERS, *PROVIDER_ALIASES})


def text_lines(path: Path) -> list[str] | None:
    """The file's lines, or None for a binary file."""
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        return None


def hits(paths: list[Path], pattern: re.Pattern[str]) -> list[str]:
    found = []
    for path in paths:
        lines = text_lines(path) or []
        for number, line in enumerate(lines, start=1):
            if pattern.search(line):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:120]}")
    return found


def test_given_the_shared_modules_then_they_name_no_provider() -> None:
    pattern = re.compile("|".join(re.escape(n) for n in provider_names()), re.IGNORECASE)
    files = [
        path
        for folder in SHARED
        for path in sorted((REPO / folder).rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    ]

    found = hits(files, pattern)

    assert not found, "provider names in shared modules (loop over the registry instead):\n" + (
        "\n".join(found)
    )


def repository_files() -> list[Path]:
    """Tracked files plus new ones not ignored: what the next commit holds."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the file list comes from `git ls-files`")
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    paths = [REPO / name for name in sorted(set(listed.split("\0"))) if name]
    return [p for p in paths if p.is_file() and not p.is_symlink() and p != Path(__file__)]


def test_given_every_repository_file_then_none_points_at_notes_outside_it() -> None:
    pattern = re.compile("|".join(re.escape(r) for r in OUTSIDE_REFERENCES), re.IGNORECASE)

    found = hits(repository_files(), pattern)

    assert not found, "references outside the repository (cite docs/ instead):\n" + (
        "\n".join(found)
    )


# ---------------------------------------------------------------- the wheel

# what setuptools needs to build the wheel; the rest of the checkout stays behind
WHEEL_INPUTS = ("pyproject.toml", "README.md", PACKAGE, *FOLDERS)


def build_wheel(tmp: Path) -> Path:
    """Build the wheel from a copy of the checkout, so no build/ lands in the working tree."""
    for name, module in (("pip", "pip"), ("setuptools", "setuptools")):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{name} is not installed in this interpreter: cannot build the wheel")
    source = tmp / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in WHEEL_INPUTS:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, symlinks=True, ignore=ignore)
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(path, source / name)
    out = tmp / "dist"
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    command += ["--no-index", "--no-cache-dir", "-q", "-w", str(out), str(source)]
    built = subprocess.run(command, check=False, capture_output=True, text=True, timeout=240)
    assert built.returncode == 0, f"wheel build failed:\n{built.stdout}\n{built.stderr}"
    (wheel,) = out.glob("*.whl")
    return wheel


def test_given_a_built_wheel_then_it_installs_only_the_scrapesync_package(
    tmp_path: Path,
) -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    version = project["version"]

    with zipfile.ZipFile(build_wheel(tmp_path)) as wheel:
        names = wheel.namelist()

    top_level = {name.split("/", 1)[0] for name in names}
    assert top_level == {PACKAGE, f"{PACKAGE}-{version}.dist-info"}
    assert f"{PACKAGE}/sources/common/provider.py" in names
    providers = provider_packages()
    assert providers, "no provider package found under sources/"
    missing = [p for p in providers if f"{PACKAGE}/sources/{p}/provider.py" not in names]
    assert not missing, f"provider packages missing from the wheel: {missing}"
