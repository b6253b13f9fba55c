"""The layering docs/architecture.md describes, held by the import graph (benchmarks/architecture.py)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
SOURCE = ROOT / "src" / "trainstab"
#: The layers of docs/architecture.md, bottom up. A module imports, at its top, only from its own layer or below.
LAYERS = {
    "foundations": "errors model_names config overrides files untrusted environment inifile plotting "
    "hypothesis_profiles results ladder crash process_state ray_address extensions optimizer_table",
    "training": "torch_state corpus losses attention_stats attention_trace capture flex_emulation reference optim "
    "models devices engine sweep ray_executor coordinates fingerprint optimizers hf_models",
    "judgement": "checks forecast scaling registry options baseline gate report session_cache sweep_cache",
    "exploration": "strategies fuzz fuzzmap findings figures reproduce",
    "front ends": "session testing plugin cli cli_help progress terminal extend __main__ __init__",
}
LAYER_OF = {module: rank for rank, modules in enumerate(LAYERS.values()) for module in modules.split()}
#: The only modules that import torch.
TRAINING = set(LAYERS["training"].split())


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


def test_every_module_has_a_layer_and_imports_only_downward(architecture):
    modules = architecture.read_package(SOURCE)
    assert set(modules) == set(LAYER_OF), "place a new module in a layer, here and in docs/architecture.md"
    top = architecture.arrows(modules, in_function=False, type_only=False)
    upward = sorted(f"{a} -> {b}" for a, b in top if LAYER_OF[b] > LAYER_OF[a])
    assert upward == []
    # Inside a function a module may reach up only into training, at the point where it trains or builds a model.
    late = architecture.arrows(modules, in_function=True, type_only=False) - top
    assert sorted(f"{a} -> {b}" for a, b in late if LAYER_OF[b] > LAYER_OF[a] and b not in TRAINING) == []


def test_only_the_training_layer_imports_torch(numbers):
    torch_importers = set(numbers["module_floors"]) - set(numbers["torch_free_modules"])
    assert torch_importers == TRAINING


def test_the_plugin_and_the_gate_start_without_torch_or_numpy():
    # Measured for real, in a fresh interpreter: a dynamic import the source scan cannot see would show here.
    # Every pytest start in a project with trainstab installed pays for what the plugin imports.
    light = ["plugin", "testing", "gate", "baseline", "report", "checks", "options", "results", "scaling", "cli"]
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
    assert numbers["option_lookups_per_file"] == {"baseline.py": 1, "plugin.py": 1}
    assert numbers["fmt_skips"] == 0
