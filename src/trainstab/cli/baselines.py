"""``trainstab baselines validate [DIR]``: a folder of baselines checked without training, one line per problem."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from trainstab.core.errors import EXIT_FAILED, EXIT_PASSED, TrainstabError
from trainstab.core.files import absolute, shown
from trainstab.gate.validate import validate_folder
from trainstab.run.inifile import read_ini
from trainstab.run.options import options_from


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``baselines`` command's own arguments: its action and the folder."""
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    validate = actions.add_parser(
        "validate",
        help="read every baseline as a run would; one line per problem",
        description=parser.description,
        epilog=parser.epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    validate.add_argument(
        "folder",
        nargs="?",
        type=Path,
        metavar="DIR",
        help="the baseline folder (default: trainstab_baselines of the pytest configuration)",
    )


def _folder(given: Path | None) -> Path:
    """The folder to validate: DIR, else the configuration's ``trainstab_baselines`` (relative to its rootdir)."""
    if given is not None:
        folder = absolute(given)
    else:
        ini = read_ini()
        configured = options_from({}, ini).baselines
        if configured is None:
            raise TrainstabError(
                "no baseline folder: give one (trainstab baselines validate DIR) or set trainstab_baselines in the "
                "pytest configuration"
            )
        folder = absolute(configured, ini.rootdir)
    if not folder.is_dir():
        raise TrainstabError(f"the baseline folder {shown(folder)} is not a folder; give the folder baselines live in")
    return folder


def run_baselines_command(args: argparse.Namespace, console: Console) -> int:
    """Validate the folder; exit 0 when every file is usable, 1 when one is not (each named on its own line)."""
    folder = _folder(args.folder)
    count, problems = validate_folder(folder)
    for problem in problems:
        console.print(problem.line(), markup=False, highlight=False, soft_wrap=True)
    if problems:
        console.print(
            f"{len(problems)} of {count} baseline file(s) in {shown(folder)} cannot be used",
            markup=False,
            soft_wrap=True,
        )
        return EXIT_FAILED
    if count == 0:
        said = f"no baseline file in {shown(folder)} (a baseline is <folder>/<model label>/<check>.json)"
    else:
        said = f"{count} baseline file(s) in {shown(folder)}: every one valid"
    console.print(said, markup=False, soft_wrap=True)
    return EXIT_PASSED
