"""Measure trainstab's architecture from source: modules, import arrows, circles, floors, deferred imports.

Standard library only, and it never imports trainstab, so it measures any checkout (for example one made
with ``git archive HEAD src | tar -x -C /tmp/before``) without torch installed.

Usage: python benchmarks/architecture.py [--src src/trainstab] [--json]
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import tokenize
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PACKAGE = "trainstab"
TORCH_LIBRARIES = frozenset({"torch", "transformers"})
# Slow to import: deferring one of these into a function keeps `import trainstab` and pytest start-up fast.
HEAVY_LIBRARIES = TORCH_LIBRARIES | {"numpy", "matplotlib", "hypothesis", "filelock", "rich"}
#: Extras a user may not have installed: imported where they are used, so the rest works without them.
OPTIONAL_LIBRARIES = frozenset({"ray"})
OPTION_PREFIX = "trainstab_"


@dataclass
class ImportStatement:
    """One import statement: where it is and the package modules and third-party modules it names."""

    line: int
    in_function: bool
    type_only: bool  # under `if TYPE_CHECKING:`, so it never runs
    package_targets: set[str] = field(default_factory=set)  # module names, e.g. "train.sweep" (or "sweep" when flat)
    external_targets: set[str] = field(default_factory=set)  # dotted, e.g. "torch.nn"


@dataclass
class ModuleSource(ast.NodeVisitor):
    """What one file of the package contributes to the measurements, collected by walking its syntax tree."""

    package_modules: set[str]
    imports: list[ImportStatement] = field(default_factory=list)
    option_lookups: int = 0
    fmt_skips: int = 0
    function_depth: int = 0
    type_checking_depth: int = 0

    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.function_depth += 1
        self.generic_visit(node)
        self.function_depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = _visit_function

    def visit_If(self, node: ast.If) -> None:
        type_only = ast.unparse(node.test) in {"TYPE_CHECKING", "typing.TYPE_CHECKING"}
        self.visit(node.test)
        # Only the body is type-only; an `else:` branch runs.
        self.type_checking_depth += type_only
        for statement in node.body:
            self.visit(statement)
        self.type_checking_depth -= type_only
        for statement in node.orelse:
            self.visit(statement)

    def _record(self, node: ast.stmt, dotted_names: list[str], imported_names: list[str]) -> None:
        statement = ImportStatement(node.lineno, self.function_depth > 0, self.type_checking_depth > 0)
        for dotted in dotted_names:
            parts = dotted.split(".")
            if parts[0] != PACKAGE:
                statement.external_targets.add(dotted)
                continue
            inside = ".".join(parts[1:])  # "" for the package itself, "core" for a subpackage, "core.config"
            # `from trainstab.core import config` names a module; `from trainstab.core.config import X` a name in one.
            named = [
                f"{inside}.{n}".strip(".") for n in imported_names if f"{inside}.{n}".strip(".") in self.package_modules
            ]
            if named:
                statement.package_targets.update(named)
            if not named or len(named) < len(imported_names):
                statement.package_targets.add(self._module_of(inside))
        self.imports.append(statement)

    def _module_of(self, inside: str) -> str:
        """The module a dotted path inside the package names: itself, else its longest prefix that is one."""
        parts = inside.split(".") if inside else []
        while parts:
            if ".".join(parts) in self.package_modules:
                return ".".join(parts)
            parts.pop()
        return "__init__"

    def visit_Import(self, node: ast.Import) -> None:
        self._record(node, [alias.name for alias in node.names], [])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        # The package is flat, so a relative import (level 1) is relative to the package itself.
        dotted = (node.module or "") if node.level == 0 else ".".join(filter(None, [PACKAGE, node.module]))
        if dotted != "__future__":
            self._record(node, [dotted], [alias.name for alias in node.names])

    def visit_Subscript(self, node: ast.Subscript) -> None:
        # A store (`options["trainstab_x"] = ...`) writes an option rather than looking one up.
        self.option_lookups += isinstance(node.ctx, ast.Load) and _is_option_key(node.slice)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        is_get = isinstance(node.func, ast.Attribute) and node.func.attr == "get"
        self.option_lookups += bool(is_get and node.args and _is_option_key(node.args[0]))
        self.generic_visit(node)


def _is_option_key(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(OPTION_PREFIX)


def module_name(src: Path, path: Path) -> str:
    """A file's module name inside the package: ``core.config``, ``core`` for ``core/__init__.py``, ``__init__``."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def package_of(module: str) -> str:
    """The subpackage a module belongs to ("core"), or "" for a module at the top of the package."""
    return module.split(".")[0] if "." in module or module in _SUBPACKAGES else ""


_SUBPACKAGES: set[str] = set()


def read_package(src: Path) -> dict[str, ModuleSource]:
    """Parse every ``.py`` file in ``src`` and its subpackages (``__init__`` and ``__main__`` included), keyed by
    module name (:func:`module_name`)."""
    paths = sorted(src.rglob("*.py"))
    names = {module_name(src, path) for path in paths}
    _SUBPACKAGES.clear()
    _SUBPACKAGES.update(module_name(src, p) for p in paths if p.name == "__init__.py" and p.parent != src)
    modules: dict[str, ModuleSource] = {}
    for path in paths:
        text = path.read_text(encoding="utf-8")
        module = modules[module_name(src, path)] = ModuleSource(names)
        module.visit(ast.parse(text, filename=str(path)))
        # Tokenize so that "# fmt: skip" inside a string is not counted.
        tokens = tokenize.generate_tokens(io.StringIO(text).readline)
        module.fmt_skips = sum(t.type == tokenize.COMMENT and "fmt: skip" in t.string for t in tokens)
    return modules


def arrows(modules: dict[str, ModuleSource], *, in_function: bool | None, type_only: bool) -> set[tuple[str, str]]:
    """Distinct (importer, imported) pairs; ``in_function=None`` takes top-level and function-level alike."""
    return {
        (name, target)
        for name, module in modules.items()
        for statement in module.imports
        if statement.type_only == type_only and in_function in (None, statement.in_function)
        for target in statement.package_targets
        if target != name
    }


def reachable(edges: set[tuple[str, str]], start: str) -> set[str]:
    """Modules reachable from ``start`` along ``edges``, ``start`` included."""
    seen, pending = {start}, [start]
    while pending:
        source = pending.pop()
        for target in {t for s, t in edges if s == source} - seen:
            seen.add(target)
            pending.append(target)
    return seen


def circles(nodes: Iterable[str], edges: set[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components of two or more modules, each sorted by name."""
    reach = {node: reachable(edges, node) for node in nodes}
    components = {tuple(sorted(m for m in reach[node] if node in reach[m])) for node in reach}
    return sorted(list(component) for component in components if len(component) > 1)


def floors(nodes: Iterable[str], edges: set[tuple[str, str]]) -> dict[str, int]:
    """Floor of each module: 0 if it imports nothing from the package, else one above the highest it reaches.

    Modules in one import circle reach each other, so they are skipped and end up on the same floor.
    """
    reach = {node: reachable(edges, node) for node in nodes}
    floor: dict[str, int] = {}

    def floor_of(node: str) -> int:
        if node not in floor:
            below = [floor_of(m) for m in reach[node] if node not in reach[m]]
            floor[node] = max(below) + 1 if below else 0
        return floor[node]

    return {node: floor_of(node) for node in sorted(reach, key=lambda node: (floor_of(node), node))}


def pulls_in(modules: dict[str, ModuleSource], start: str, libraries: frozenset[str]) -> bool:
    """Whether importing ``start`` imports one of ``libraries``, following top-level imports only."""
    top_level = arrows(modules, in_function=False, type_only=False)
    return any(
        dotted.split(".")[0] in libraries
        for name in reachable(top_level, start)
        for statement in modules[name].imports
        if not statement.in_function and not statement.type_only
        for dotted in statement.external_targets
    )


def classify_function_imports(modules: dict[str, ModuleSource]) -> list[dict[str, Any]]:
    """Label each runtime import inside a function: breaks a circle, protects torch, or protects nothing."""
    top_level_arrows = arrows(modules, in_function=False, type_only=False)
    results = []
    for name, module in modules.items():
        runs_at_import = [s for s in module.imports if not s.in_function and not s.type_only]
        top_level = set().union(*(s.package_targets | s.external_targets for s in runs_at_import))
        for statement in module.imports:
            if not statement.in_function or statement.type_only:
                continue
            # Deferring a module the file already imports at top level saves nothing.
            package_targets = statement.package_targets - top_level
            external_targets = statement.external_targets - top_level
            if statement.package_targets == {name}:  # code run with another module's globals (flex's trampoline)
                label = "reaches its own module"
            elif any(name in reachable(top_level_arrows, target) for target in package_targets):
                label = "breaks a circle"
            elif any(t.split(".")[0] in HEAVY_LIBRARIES for t in external_targets) or any(
                pulls_in(modules, target, HEAVY_LIBRARIES) for target in package_targets
            ):
                label = "protects torch"
            elif any(t.split(".")[0] in OPTIONAL_LIBRARIES for t in external_targets):
                label = "protects an optional extra"
            else:
                label = "protects nothing"
            shown = [f"{PACKAGE}.{t}" for t in sorted(statement.package_targets)] + sorted(statement.external_targets)
            already = not (package_targets or external_targets)
            results.append(
                {"at": f"{name}.py:{statement.line}", "imports": shown, "label": label, "already_top_level": already}
            )
    return results


def measure(src: Path) -> dict[str, Any]:
    """All the numbers, as one JSON-ready dictionary."""
    modules = read_package(src)
    top_level = arrows(modules, in_function=False, type_only=False)
    function_level = arrows(modules, in_function=True, type_only=False)
    runtime = top_level | function_level
    # An arrow that is also taken at run time is a runtime arrow, not a type-only one.
    type_only = arrows(modules, in_function=None, type_only=True) - runtime
    arrow_sets = [runtime, top_level, function_level, function_level - top_level, type_only]
    arrow_names = ["runtime", "top_level", "function_level", "function_level_only", "type_only"]
    module_floors = floors(modules, runtime)
    function_imports = classify_function_imports(modules)
    labels = ["protects torch", "protects an optional extra", "breaks a circle", "reaches its own module"]
    labels.append("protects nothing")
    packages: dict[str, list[str]] = {}
    for name in modules:
        packages.setdefault(package_of(name) or "(top level)", []).append(name)
    package_arrows = {(package_of(a), package_of(b)) for a, b in top_level if package_of(a) != package_of(b)}
    return {
        "packages": {name: sorted(members) for name, members in sorted(packages.items())},
        "package_arrows": sorted(f"{a or '(top level)'} -> {b or '(top level)'}" for a, b in package_arrows),
        "modules": len(modules),
        "arrows": {name: len(edges) for name, edges in zip(arrow_names, arrow_sets, strict=True)},
        "circles": circles(modules, runtime),
        "top_level_circles": circles(modules, top_level),
        "floors": max(module_floors.values()) + 1,
        "module_floors": module_floors,
        "function_imports": len(function_imports),
        "function_import_labels": {label: sum(i["label"] == label for i in function_imports) for label in labels},
        "protects_nothing": [i for i in function_imports if i["label"] == "protects nothing"],
        "torch_free_modules": sorted(m for m in modules if not pulls_in(modules, m, TORCH_LIBRARIES)),
        "option_lookups": sum(m.option_lookups for m in modules.values()),
        "option_lookups_per_file": {f"{n}.py": m.option_lookups for n, m in modules.items() if m.option_lookups},
        "fmt_skips": sum(m.fmt_skips for m in modules.values()),
        "fmt_skips_per_file": {f"{n}.py": m.fmt_skips for n, m in modules.items() if m.fmt_skips},
    }


def report(numbers: dict[str, Any], src: Path) -> str:
    """The numbers as readable text."""
    arrow_counts = numbers["arrows"]
    lines = [
        f"architecture of {src}",
        f"packages: {len(numbers['packages'])} (the modules at the top of the package counted as one)",
        *(f"  {name}: {len(members)} modules" for name, members in numbers["packages"].items()),
        f"arrows between packages (top level): {len(numbers['package_arrows'])}",
        f"modules: {numbers['modules']} .py files (__init__.py and __main__.py included)",
        f"import arrows (distinct module -> module): {arrow_counts['runtime']} at run time",
        f"  top-level: {arrow_counts['top_level']}",
        f"  function-level: {arrow_counts['function_level']} ({arrow_counts['function_level_only']} not top-level)",
        f"  type-only (under TYPE_CHECKING, left out of the graph): {arrow_counts['type_only']}",
    ]
    for title, circles in [("run time", numbers["circles"]), ("top level only", numbers["top_level_circles"])]:
        lines.append(f"import circles ({title}): {len(circles)}")
        lines += [f"  {' <-> '.join(circle)}" for circle in circles]
    lines.append(f"floors: {numbers['floors']}")
    for floor in range(numbers["floors"]):
        names = [name for name, f in numbers["module_floors"].items() if f == floor]
        lines.append(f"  {floor:2d}: {', '.join(names)}")
    labels = ", ".join(f"{label} {count}" for label, count in numbers["function_import_labels"].items())
    lines.append(f"function-level imports: {numbers['function_imports']} ({labels})")
    for item in numbers["protects_nothing"]:
        reason = "  (already imported at top level)" if item["already_top_level"] else ""
        lines.append(f"  {item['at']} -> {', '.join(item['imports'])}{reason}")
    torch_free = numbers["torch_free_modules"]
    lines.append(f"modules that do not import torch at import time: {len(torch_free)} of {numbers['modules']}")
    lines.append(f"  {', '.join(torch_free)}")
    for title, key in [(f'"{OPTION_PREFIX}*" look-ups', "option_lookups"), ("# fmt: skip markers", "fmt_skips")]:
        per_file = ", ".join(f"{file} {count}" for file, count in numbers[f"{key}_per_file"].items())
        lines.append(f"{title}: {numbers[key]} ({per_file})")
    return "\n".join(lines)


def main() -> None:
    """Parse the arguments and print the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=Path("src/trainstab"), help="the package folder")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args()
    numbers = measure(args.src)
    print(json.dumps(numbers, indent=2) if args.json else report(numbers, args.src))


if __name__ == "__main__":
    main()
