"""``trainstab init``: scaffold a user's repository with what the tutorial and the CI guide show.

It writes the test file for the user's factory, the pytest configuration keys, the ``.gitignore`` lines, the CI
script and a GitHub Actions workflow. It never changes what a user wrote: a file of its own that is already there
with other content is left as it is, its diff shown, and the command exits 1 (``--force`` writes trainstab's,
keeping the user's as ``<name>.previous``); the configuration file and ``.gitignore`` only gain the keys and lines
they lack (a key the user set to another value is kept, and named). The texts are those the README and the
documentation show, which ``tests/cli/test_init.py`` holds equal to these; the whole path in a fresh git
repository is ``tests/end_to_end/test_init_in_a_user_repo.py``.
"""

from __future__ import annotations

import argparse
import difflib
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from trainstab.core.errors import EXIT_FAILED, EXIT_PASSED, TrainstabError
from trainstab.core.files import absolute, shown, write_atomically, write_text_atomically
from trainstab.core.model_names import canonical_model_name, split_model_name
from trainstab.run.inifile import discover, plain

#: The test file, for the factory the user names.
TEST_FILE = """from trainstab.testing import parametrize_with_checks


@parametrize_with_checks(["{model}"])
def test_training_stability(model, check):
    check(model)
"""
TEST_PATH = "stability/test_stability.py"
#: The pytest configuration keys, as TOML (pyproject.toml) with the README's comments, and their values.
PYTEST_KEYS: dict[str, tuple[Any, str]] = {
    "pythonpath": (["."], "so that {model} imports"),
    "testpaths": (["stability"], ""),
    "trainstab_baselines": ("stability/baselines", "committed; one JSON per model and check"),
    "trainstab_profile": ("quick", "100 steps, LRs 1e-3..0.3: about 5 s a model on 2 cores"),
}
GITIGNORE_LINES = ("*.obtained.json", "trainstab-report/", ".gate-venv/", ".hypothesis/")
GATE_SCRIPT_PATH = "ci/stability-gate.sh"
GATE_SCRIPT = """#!/usr/bin/env bash
# ci/stability-gate.sh: the stability gate. Extra arguments go to pytest
# (--trainstab-update-baseline, --trainstab-regen-all).
set -euo pipefail
python3 -m venv .gate-venv
. .gate-venv/bin/activate
# A CPU build of torch: a plain "pip install torch" on Linux pulls several GB of CUDA.
pip install --quiet ${TORCH_INSTALL:-torch --index-url https://download.pytorch.org/whl/cpu}
# pytest-xdist for -n 2 below; pytest 9.2 ignores its --dist loadgroup (pytest-xdist issue #1386): each
# model's checks would spread over the workers and wait for each other's training.
pip install --quiet "${TRAINSTAB_INSTALL:-trainstab}" pytest-xdist 'pytest<9.2'
# Hypothesis replays the failing examples it saved here first: keep this folder between runs.
export HYPOTHESIS_STORAGE_DIRECTORY="${HYPOTHESIS_STORAGE_DIRECTORY:-.hypothesis}"
pytest -n 2 --dist loadgroup --trainstab-report trainstab-report --junitxml trainstab-report/junit.xml "$@"
"""
WORKFLOW_PATH = ".github/workflows/stability.yml"
WORKFLOW = """# .github/workflows/stability.yml
name: stability gate
on:
  pull_request:
  workflow_dispatch:
    inputs:
      refresh:
        description: "rewrite every baseline (run on main; commit the 'baselines' artifact)"
        type: boolean
        default: false
jobs:
  gate:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
      - uses: actions/cache@v4  # Hypothesis' example database: failures found before are replayed first
        with:
          path: .hypothesis
          key: hypothesis-${{ github.run_id }}
          restore-keys: hypothesis-
      - run: bash ci/stability-gate.sh ${{ inputs.refresh && '--trainstab-regen-all' || '' }}
      - uses: actions/upload-artifact@v4
        if: always()
        with:
          name: trainstab-report
          path: trainstab-report/
      - uses: actions/upload-artifact@v4
        if: inputs.refresh
        with:
          name: baselines
          path: stability/baselines/
"""


def toml_value(value: Any) -> str:
    """A key's value as TOML writes it (a string or a list of strings)."""
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return f'"{value}"'


def pytest_table(model: str, keys: list[str] | None = None) -> str:
    """The ``[tool.pytest.ini_options]`` lines for ``keys`` (all by default), each with its comment."""
    lines = []
    for key in keys if keys is not None else list(PYTEST_KEYS):
        value, comment = PYTEST_KEYS[key]
        line = f"{key} = {toml_value(value)}"
        lines.append(f"{line:<43} # {comment.format(model=model)}" if comment else line)
    return "\n".join(lines) + "\n"


def _ini_lines(keys: list[str]) -> str:
    """The same keys in an ini file's syntax (``pytest.ini``'s ``[pytest]``)."""
    lines = []
    for key in keys:
        value, _ = PYTEST_KEYS[key]
        lines.append(f"{key} = {' '.join(value) if isinstance(value, list) else value}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Step:
    """One file init writes or leaves: what it says, and the write (None: nothing to write).

    ``write`` returns what it adds to the line said (where a replaced file was kept).
    """

    said: str
    write: Callable[[], str] | None = None
    in_the_way: bool = False  # a user's file is in the way: shown, nothing written over it (exit 1)


def _read(path: Path) -> bytes | None:
    """A user's file as it is, byte for byte (None: there is none); one that cannot be read is bad input."""
    if path.is_symlink() and not path.exists():
        raise TrainstabError(f"{shown(path)} is a broken link; fix or remove it, then rerun trainstab init")
    if not path.exists():
        return None
    if not path.is_file():
        raise TrainstabError(f"{shown(path)} is not a file; move it aside, then rerun trainstab init")
    try:
        return path.read_bytes()
    except OSError as error:
        raise TrainstabError(f"cannot read {shown(path)} ({error.strerror or error})") from None


def _newline(data: bytes) -> bytes:
    """The file's own line ending: CRLF when it uses one, else LF."""
    return b"\r\n" if b"\r\n" in data else b"\n"


def _in_its_style(text: str, data: bytes) -> bytes:
    """``text`` (LF, UTF-8) as bytes with the line endings of the file ``data`` came from."""
    return text.encode().replace(b"\n", _newline(data))


def _write_into(path: Path, data: bytes) -> None:
    """Write a user's edited file: through a link to the file it points at, keeping its mode, never half a file."""
    write_atomically(path.resolve(), data, keep=False)


def _check_room(folder: Path, name: str) -> None:
    """Refuse, before anything is written, a file init would write whose folder is taken by a file."""
    for parent in reversed((folder / name).relative_to(folder).parents):
        place = folder / parent
        if place.exists() and not place.is_dir():
            raise TrainstabError(f"{shown(place)} is a file where trainstab init writes the folder {parent}/")


def _own_file(folder: Path, name: str, text: str, force: bool, executable: bool = False) -> Step:
    """A file whose whole content is trainstab's: created, unchanged, or (differing) shown and kept."""
    path = folder / name
    _check_room(folder, name)

    def write() -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = write_text_atomically(path, text)  # a file already there is kept aside, never over another
        if executable:
            path.chmod(path.stat().st_mode | 0o111)
        return f" (yours is kept as {shown(kept)})" if kept is not None else ""

    current = _read(path)
    if current is None:
        return Step(f"created {name}", write)
    if current == text.encode():
        return Step(f"unchanged {name}")
    if force:
        return Step(f"wrote {name}", write)
    yours = current.decode(errors="replace").splitlines(keepends=True)
    theirs = text.splitlines(keepends=True)
    diff = "".join(difflib.unified_diff(yours, theirs, f"{name} (yours)", f"{name} (trainstab)"))
    return Step(f"kept your {name}: it differs from trainstab's (--force writes trainstab's):\n{diff}", in_the_way=True)


def _gitignore(folder: Path) -> Step:
    """``.gitignore`` gains the lines it lacks (created when there is none); the rest stays byte for byte."""
    path = folder / ".gitignore"
    current = _read(path) or b""
    present = {line.strip() for line in current.decode(errors="replace").splitlines()}
    missing = [line for line in GITIGNORE_LINES if line not in present]
    if not missing:
        return Step("unchanged .gitignore")

    def write() -> str:
        ending = b"" if not current or current.endswith(b"\n") else _newline(current)
        _write_into(path, current + ending + _in_its_style("\n".join(missing) + "\n", current))
        return ""

    return Step(f"added {', '.join(missing)} to .gitignore", write)


#: The configuration files init adds keys to, and the header of the table they go under.
HEADERS = {"pyproject.toml": "[tool.pytest.ini_options]", "pytest.ini": "[pytest]", ".pytest.ini": "[pytest]"}


def _same(key: str, value: Any) -> bool:
    """Whether a configured value is trainstab's (an ini file's text ``.`` for the list ``["."]``)."""
    wanted = PYTEST_KEYS[key][0]
    if isinstance(wanted, list) and isinstance(value, str):
        return value.split() == wanted
    return bool(value == wanted)


def _configuration(folder: Path, model: str) -> Step:
    """The pytest configuration of ``folder`` gains the keys it lacks. One in a folder above is left alone (its
    relative paths would not be this repository's): the keys go into ``folder``'s own file."""
    _, path, config = discover(folder)
    pyproject = folder / "pyproject.toml"
    if path is None or path.parent != folder or (path == pyproject and not _has_pytest_table(pyproject)):
        existing = _read(pyproject)
        if existing is not None:  # a pyproject.toml without a pytest table: the table goes at its end
            data = existing
            table = "[tool.pytest.ini_options]\n" + pytest_table(model)
            ending = b"" if data.endswith(b"\n") else _newline(data)

            def append() -> str:
                _write_into(pyproject, data + ending + _in_its_style("\n" + table, data))
                return ""

            return Step("added [tool.pytest.ini_options] to pyproject.toml", append)
        return _own_file(folder, "pytest.ini", "[pytest]\n" + _ini_lines(list(PYTEST_KEYS)), force=False)
    missing = [key for key in PYTEST_KEYS if key not in config]
    differing = [key for key in PYTEST_KEYS if key in config and not _same(key, plain(config[key]))]
    kept = [f"{key} = {plain(config[key])!r}" for key in differing]
    note = f"; kept yours: {', '.join(kept)}" if kept else ""
    if not missing:
        return Step(f"unchanged the pytest configuration in {shown(path)}{note}")
    data = _read(path) or b""
    lines = data.splitlines(keepends=True)
    header = HEADERS.get(path.name)
    at = next(
        (i for i, line in enumerate(lines) if line.decode(errors="replace").split("#")[0].strip() == header), None
    )
    added = pytest_table(model, missing) if path.suffix == ".toml" else _ini_lines(missing)
    if header is None or at is None:  # tox.ini, setup.cfg, [tool.pytest], pytest.toml: shown, for the user to add
        return Step(
            f"add these keys to the pytest configuration in {shown(path)} by hand (trainstab init edits "
            f"{' or '.join(HEADERS)} only):\n{added}",
            in_the_way=True,
        )

    def insert() -> str:
        _write_into(path, b"".join([*lines[: at + 1], _in_its_style(added, data), *lines[at + 1 :]]))
        return ""

    return Step(f"added {', '.join(missing)} to {header} in {shown(path)}{note}", insert)


def _has_pytest_table(pyproject: Path) -> bool:
    """Whether ``pyproject`` holds a ``[tool.pytest...]`` table (pytest reads a pyproject.toml without one too)."""
    try:
        data = tomllib.loads((_read(pyproject) or b"").decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise TrainstabError(f"{shown(pyproject)} is not valid TOML ({error}); fix it, then rerun") from None
    return "pytest" in data.get("tool", {})


def plan(folder: Path, model: str, force: bool) -> list[Step]:
    """What init does in ``folder`` for the factory ``model``, in order; nothing is written yet."""
    return [
        _own_file(folder, TEST_PATH, TEST_FILE.format(model=model), force),
        _configuration(folder, model),
        _gitignore(folder),
        _own_file(folder, GATE_SCRIPT_PATH, GATE_SCRIPT, force, executable=True),
        _own_file(folder, WORKFLOW_PATH, WORKFLOW, force),
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``init`` command's arguments."""
    parser.add_argument("--model", help="your model factory, package.module:callable (asked for when not given)")
    parser.add_argument("--folder", type=Path, default=Path("."), help="the repository (default: this folder)")
    parser.add_argument("--force", action="store_true", help="write trainstab's files over yours (yours kept aside)")


def _model(given: str | None) -> str:
    """The factory to test: ``--model``, else asked for on a terminal; a user's factory, not a built-in model."""
    if given is None:
        if not sys.stdin.isatty():
            raise TrainstabError("trainstab init needs your model factory: --model package.module:callable")
        try:
            given = input("your model factory (package.module:callable): ").strip()
        except EOFError:
            raise TrainstabError("trainstab init needs your model factory: --model package.module:callable") from None
    name = canonical_model_name(given)
    base, _ = split_model_name(name)
    if ":" not in base or base.startswith("hf:"):
        raise TrainstabError(
            f"--model {given!r}: give your own factory as package.module:callable (the file trainstab init writes "
            "tests your model; the built-in and hf: models are tested already)"
        )
    return name


def run_init_command(args: argparse.Namespace, console: Console) -> int:
    """Scaffold the repository; exit 0, or 1 when a file of the user's was in the way (its diff is shown)."""
    folder = absolute(args.folder)
    if not folder.is_dir():
        raise TrainstabError(f"--folder {shown(folder)} is not a folder")
    steps = plan(folder, _model(args.model), args.force)
    for step in steps:
        added = step.write() if step.write is not None else ""
        console.print(step.said + added, markup=False, highlight=False, soft_wrap=True)
    if any(step.in_the_way for step in steps):
        return EXIT_FAILED
    console.print(
        "next: run pytest (the first run writes stability/baselines/ and fails asking you to review and commit "
        "them), then commit",
        markup=False,
        soft_wrap=True,
    )
    return EXIT_PASSED
