"""The layering docs/architecture.md describes, held by the import graph (benchmarks/architecture.py)."""

import ast
import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
SOURCE = ROOT / "src" / "trainstab"
#: The packages of docs/architecture.md, bottom up: the tree is the architecture. A module imports, at its top, only
#: from its own package or a lower layer. The modules at the top of trainstab (""): the facades users import
#: (``trainstab.testing``...), ``__init__`` (lazy public names) and ``__main__``.
LAYERS = {
    "core": 0,
    "train": 1,
    "checks": 2,
    "cache": 2,
    "run": 3,
    "gate": 4,
    "explore": 5,
    "paper": 5,
    "pytest_plugin": 6,
    "cli": 6,
    "": 7,
}
#: The import paths users write: each a thin facade over the module that holds the code.
FACADES = {
    "testing": "pytest_plugin.testing",
    "fuzz": "explore.fuzz",
    "strategies": "explore.strategies",
    "sweep": "train.sweep",
    "capture": "train.capture",
    "models": "train.models",
}


@pytest.fixture(scope="module")
def architecture():
    spec = importlib.util.spec_from_file_location("architecture", ROOT / "benchmarks" / "architecture.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def numbers(architecture):
    return architecture.measure(SOURCE)


def test_every_module_is_in_a_package_of_a_layer_and_imports_only_downward(architecture):
    modules = architecture.read_package(SOURCE)
    packages = {architecture.package_of(name) for name in modules}
    assert packages == set(LAYERS), "a new package needs its layer, here and in docs/architecture.md"
    top_level = {name for name in modules if architecture.package_of(name) == ""}
    assert top_level == {"__init__", "__main__", "extend", *FACADES}, "new code goes in a package, not at the top"
    layer = {name: LAYERS[architecture.package_of(name)] for name in modules}
    top = architecture.arrows(modules, in_function=False, type_only=False)
    assert sorted(f"{a} -> {b}" for a, b in top if layer[b] > layer[a]) == []
    # Inside a function a module may reach up only into training, at the point where it trains or builds a model.
    late = architecture.arrows(modules, in_function=True, type_only=False) - top
    upward = [(a, b) for a, b in late if layer[b] > layer[a] and architecture.package_of(b) != "train"]
    assert sorted(f"{a} -> {b}" for a, b in upward) == []


def test_only_the_train_package_imports_torch(numbers):
    torch_importers = set(numbers["module_floors"]) - set(numbers["torch_free_modules"])
    # The facades of training's import paths (trainstab.sweep, .capture, .models) re-export it, and the train
    # package's own __init__ is a docstring.
    assert {m for m in torch_importers if not m.startswith("train.")} == {"sweep", "capture", "models"}
    assert torch_importers >= {"train.engine", "train.sweep", "train.models", "train.capture"}


def test_each_facade_reexports_its_modules_public_names_and_nothing_else():
    for facade, real in FACADES.items():
        public = importlib.import_module(f"trainstab.{facade}")
        module = importlib.import_module(f"trainstab.{real}")
        assert public.__all__, facade
        for name in public.__all__:
            assert getattr(public, name) is getattr(module, name) or name == "CHECK_NAMES", (facade, name)
        # Every public name the module had when it lived at this path still imports from it.
        names = (
            set(module.__all__)
            if hasattr(module, "__all__")
            else _public_names(SOURCE / f"{real.replace('.', '/')}.py")
        )
        assert set(public.__all__) - {"CHECK_NAMES"} == names - {"CHECK_NAMES"}, facade
        source = (SOURCE / f"{facade}.py").read_text()
        assert "def " not in source.replace("def __getattr__", ""), f"{facade} holds code: it belongs in {real}"


def _public_names(path):
    """A module's public top-level names: functions, classes and capitalised constants not starting with _."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and not node.name.startswith("_"):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if isinstance(target, ast.Name) and target.id[:1].isupper():
                    names.add(target.id)
    return names


def test_the_cache_digest_covers_every_module_wherever_it_lives():
    from trainstab.cache.sweep_cache import package_sources

    files = {path.relative_to(SOURCE).as_posix() for path in package_sources()}
    on_disk = {path.relative_to(SOURCE).as_posix() for path in SOURCE.rglob("*.py")}
    assert files == on_disk and "train/engine.py" in files and "checks/battery.py" in files


def test_the_plugin_and_the_gate_start_without_torch_or_numpy():
    # Measured for real, in a fresh interpreter: a dynamic import the source scan cannot see would show here.
    # Every pytest start in a project with trainstab installed pays for what the plugin imports.
    light = [
        "pytest_plugin.plugin",
        "testing",
        "gate.verdict",
        "gate.baseline",
        "gate.report",
        "checks.battery",
        "run.options",
        "core.results",
        "checks.scaling",
        "cli.main",
    ]
    code = "import sys\n" + "".join(f"import trainstab.{name}\n" for name in light)
    code += "print(sorted(name for name in ('torch', 'numpy', 'matplotlib') if name in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_no_import_circle_and_no_function_level_import_that_protects_nothing(numbers):
    assert numbers["circles"] == []
    assert [entry["at"] for entry in numbers["protects_nothing"]] == []


def test_run_options_travel_typed_and_calls_are_laid_out_by_the_formatter(numbers):
    # "trainstab_*" keys left are file formats, not run options: a baseline's version field, xdist's worker input.
    # (inifile.py looks none up: it keeps every trainstab_* key of pytest's configuration for the option table.)
    assert numbers["option_lookups_per_file"] == {"gate.baseline.py": 1, "pytest_plugin.plugin.py": 1}
    assert numbers["fmt_skips"] == 0


#: Test folders that are not a package of the source: the user's side of trainstab (pytester projects with none of
#: our conftest, the README's blocks as written), the benchmark scripts' own tests and the documentation site.
OTHER_TEST_FOLDERS = {"end_to_end": "in a user's repository", "benchmarks": "benchmarks/*.py", "docs": "the site"}


def _imported_packages(path: Path) -> set[str]:
    """The trainstab packages a test module imports: a facade counts as the package of the module behind it, a
    lazy name of ``trainstab`` as its module's, and a module that only runs pytester projects (the plugin is
    loaded by its entry point there) as ``pytest_plugin``."""
    import trainstab

    found = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module == "trainstab":
            names = [getattr(trainstab, alias.name).__module__ for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] != "trainstab" or len(parts) < 2:
                continue
            found.add(FACADES[parts[1]].split(".")[0] if parts[1] in FACADES else parts[1])
    if not found and 'pytest_plugins = ["pytester"]' in path.read_text():
        found.add("pytest_plugin")
    return found


def test_the_test_tree_mirrors_the_source_tree():
    # A module's tests are found by its path: tests/<package>/ for src/trainstab/<package>/, each test module there
    # importing that package; every package of a layer has its folder.
    tests = ROOT / "tests"
    folders = {path.name for path in tests.iterdir() if path.is_dir() and not path.name.startswith((".", "_"))}
    packages = {name for name in LAYERS if name}
    assert folders == packages | set(OTHER_TEST_FOLDERS)
    astray = [
        str(path.relative_to(tests))
        for folder in packages
        for path in sorted((tests / folder).glob("test_*.py"))
        if folder not in _imported_packages(path)
    ]
    assert astray == [], "each test module tests the package of its folder"
    top_level = sorted(path.name for path in tests.glob("test_*.py"))
    assert top_level == ["test_architecture.py", "test_layout.py"]  # the whole tree's rules, no one package's
