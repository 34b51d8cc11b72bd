"""The import rules of ARCHITECTURE.md, read from the source with `ast`: no import cycles, the caller's
thread never reaches the database, `common/` stands alone, no private name crosses modules, and
`import unitcost` stays light."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = (
    "opentelemetry.sdk", "sqlite_utils", "wrapt", "pydantic", "genai_prices", "click", "rich", "openai", "anthropic",
)


@dataclass(frozen=True)
class Import:
    importer: str  # the module whose source holds the import statement
    target: str  # the unitcost module it loads
    name: str | None  # `from target import name` (name not a module), else None
    line: int
    module_level: bool  # runs when the importer is imported (not in a function, not under TYPE_CHECKING)


def source_modules() -> dict[str, Path]:
    """Every module of the `unitcost` package, by dotted name, from pyproject's package-dir mapping."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    modules = {}
    for package in setuptools["packages"]:
        for path in sorted((ROOT / setuptools["package-dir"][package]).glob("*.py")):
            modules[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return modules


MODULES = source_modules()


def package_of(module: str) -> str:
    return module if MODULES[module].stem == "__init__" else module.rpartition(".")[0]


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _statements(tree: ast.Module) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    def walk(node: ast.AST, module_level: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, module_level
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) or _type_checking(child):
                yield from walk(child, False)
            else:
                yield from walk(child, module_level)

    return walk(tree, True)


def imports_of(module: str) -> list[Import]:
    """The unitcost modules `module` imports, with the packages Python initialises on the way."""
    found = []
    for node, module_level in _statements(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            targets = [(a.name, None) for a in node.names]
        else:
            base = node.module or ""
            if node.level:
                parent = package_of(module).split(".")[: len(package_of(module).split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            targets = [(f"{base}.{a.name}", None) if f"{base}.{a.name}" in MODULES else (base, a.name)
                       for a in node.names]
        for target, name in targets:
            if target not in MODULES:
                continue
            found.append(Import(module, target, name, node.lineno, module_level))
            # Loading a module first runs the __init__ of each package above it that is not the importer's own.
            parts = target.split(".")
            for i in range(1, len(parts)):
                package = ".".join(parts[:i])
                if package in MODULES and not module.startswith(package + ".") and package != module:
                    found.append(Import(module, package, None, node.lineno, module_level))
    return found


IMPORTS = [imp for module in MODULES for imp in imports_of(module)]


def cycles(edges: list[Import]) -> list[list[str]]:
    """The import cycles among `edges`, each as a list of modules (Tarjan's strongly connected components)."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for e in edges:
        graph[e.importer].add(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def in_folder(module: str, *folders: str) -> bool:
    return any(module == f"unitcost.{f}" or module.startswith(f"unitcost.{f}.") for f in folders)


def test_the_rules_see_the_whole_package():
    # A rule over a package it cannot see passes for nothing: the walk must find every folder.
    folders = (
        "common", "record", "providers", "frameworks", "pipeline", "pricing", "store", "report", "exporters", "cli",
    )
    for folder in folders:
        assert any(in_folder(m, folder) for m in MODULES), folder
    assert len([i for i in IMPORTS if i.module_level]) > 100
    assert any(not i.module_level for i in IMPORTS)


def test_no_import_cycles_among_modules():
    assert cycles([i for i in IMPORTS if i.module_level]) == []


def test_no_import_cycles_hidden_in_function_level_imports():
    # A lazy import is for start-up time or an optional dependency, never to hide a cycle.
    assert cycles(IMPORTS) == []


def test_the_callers_thread_never_reaches_the_database():
    # record/, providers/ and frameworks/ run inside the user's program: they open spans and never import what
    # reads or writes the store (even lazily).
    crossing = [
        f"{i.importer}:{i.line} imports {i.target}"
        for i in IMPORTS
        if in_folder(i.importer, "record", "providers", "frameworks")
        and in_folder(i.target, "store", "report", "exporters", "cli")
    ]
    assert crossing == []


def test_common_imports_nothing_else_from_unitcost():
    outside = [f"{i.importer}:{i.line} imports {i.target}" for i in IMPORTS
               if in_folder(i.importer, "common") and not in_folder(i.target, "common") and i.target != "unitcost"]
    assert outside == []


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_private_name_crosses_modules():
    # Tests may reach into private names; the package may not. A private module is the business of
    # its own package only (cli's _options and _render).
    crossing = []
    for i in IMPORTS:
        if i.target == i.importer:
            continue
        private_path = any(_private(p) for p in i.target.split("."))
        if (i.name and _private(i.name)) or (private_path and package_of(i.target) != package_of(i.importer)):
            crossing.append(f"{i.importer}:{i.line} imports {i.target}{'.' + i.name if i.name else ''}")
    assert crossing == []


def _all_of(module: str) -> list[str] | None:
    for node in ast.parse(MODULES[module].read_text()).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return list(ast.literal_eval(node.value))
    return None


def test_every_name_another_module_imports_is_in_its_all():
    missing = []
    for module in MODULES:
        if in_folder(module, "cli") or (MODULES[module].stem == "__init__" and _all_of(module) is None):
            continue
        listed = _all_of(module)
        if listed is None:
            missing.append(f"{module} has no __all__")
            continue
        used = {i.name for i in IMPORTS if i.target == module and i.name and i.importer != module}
        missing += [f"{module}.{name} is imported elsewhere but not in __all__" for name in sorted(used - set(listed))]
    assert missing == []


def test_import_unitcost_loads_no_heavy_dependency(tmp_path):
    code = "import sys, unitcost; print(sorted(sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    loaded = [m for m in ast.literal_eval(done.stdout) if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert loaded == []


# What a CLI command may call: the public reports API, `unitcost.query` (which opens the store through
# the store seam), the exporters it replays to, the price book `serve` loads, the demo, the UI, and `common/`.
CLI_MAY_IMPORT = ("query", "report", "exporters", "pricing", "demo", "ui", "common", "version", "cli")


def test_the_cli_is_a_thin_shell_over_the_public_api():
    # Each command parses, calls unitcost.query or the report package's public names, and renders:
    # it never reaches into the store (unitcost.store.*) or a report engine's module.
    reaching = [
        f"{i.importer}:{i.line} imports {i.target}{'.' + i.name if i.name else ''}"
        for i in IMPORTS
        if in_folder(i.importer, "cli") and i.target != "unitcost" and (
            not in_folder(i.target, *CLI_MAY_IMPORT)
            or (in_folder(i.target, "report") and i.target != "unitcost.report")
        )
    ]
    assert reaching == []
    assert any(i.importer.startswith("unitcost.cli.") and i.target == "unitcost.report" for i in IMPORTS)
