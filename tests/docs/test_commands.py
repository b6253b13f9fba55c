"""Every ``trainstab`` and ``pytest`` command the README and the documentation pages show parses as written: a
flag renamed or removed in the code fails here, not in a user's terminal. (The files they show are run as written
by tests/end_to_end/; the two README commands by CI itself.)"""

import re
import shlex
from pathlib import Path

import pytest

from trainstab.cli.main import build_parser
from trainstab.run.options import OPTIONS

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
#: The plugin's flags beyond the option table's.
PLUGIN_FLAGS = {"--trainstab-set", "--trainstab-update-baseline", "--trainstab-regen-all"}


def shown_commands(program: str) -> list[tuple[str, str]]:
    """(page, command) for every command running ``program`` that a page shows: each line of a bash block
    (comments and continuations joined) and each inline code span; placeholders (``...``, ``<name>``, ``$VAR``)
    left out."""
    found = set()
    for page in PAGES:
        text = page.read_text()
        lines = [
            line.split(" #")[0]
            for block in re.findall(r"```(?:bash|console|sh)\n(.*?)```", text, flags=re.S)
            for line in block.replace("\\\n", " ").splitlines()
        ]
        prose = re.sub(r"```.*?```", "", text, flags=re.S)
        # An inline span is a command when it is a whole one (prose also names a flag: `trainstab check --model`).
        lines += [span for span in re.findall(r"(?<!`)`([^`\n]+)`(?!`)", prose) if _whole_command(span)]
        for line in lines:
            for part in re.split(r"&&|\|\||;", line):
                part = part.strip().removeprefix("$ ")
                if part.startswith(f"{program} ") and not re.search(r"\.\.\.|<|\$|\[[A-Z]+\]", part):
                    found.add((str(page.relative_to(ROOT)), part))
    return sorted(found)


def _whole_command(span: str) -> bool:
    """Whether an inline code span reads as a whole command: a known subcommand, no alternatives (``a/b``) or
    optional parts (``[...]``), and not ending on a flag that takes a value."""
    words = span.split()
    if words[0] == "pytest":
        return True
    subcommands = {"sweep", "check", "fuzz", "forecast", "reproduce", "init", "baselines"}
    if len(words) < 2 or words[1] not in subcommands or "/" in words[1] or "[" in span:
        return False
    return not words[-1].startswith("--") or words[-1] in {"--quick", "--force", "--help", "--no-progress"}


TRAINSTAB = shown_commands("trainstab")
PYTEST = shown_commands("pytest")


def test_the_pages_show_commands_of_both_front_ends():
    assert len(TRAINSTAB) >= 10 and len(PYTEST) >= 5


@pytest.mark.parametrize(("page", "command"), TRAINSTAB, ids=[c for _, c in TRAINSTAB])
def test_each_trainstab_command_parses(page, command, capsys):
    argv = shlex.split(command)[1:]
    try:
        build_parser().parse_args(argv)
    except SystemExit as stopped:
        if stopped.code != 0 or argv[-1:] not in (["--help"], ["--version"]):
            pytest.fail(f"{page}: {command!r} does not parse: {capsys.readouterr().err.strip()}")


@pytest.mark.parametrize(("page", "command"), PYTEST, ids=[c for _, c in PYTEST])
def test_each_pytest_command_names_existing_flags(page, command):
    known = {f"--trainstab-{option.name}" for option in OPTIONS} | PLUGIN_FLAGS
    for word in shlex.split(command):
        flag = word.split("=")[0]
        if flag.startswith("--trainstab-"):
            assert flag in known, f"{page}: {command!r} names {flag}, which the plugin does not have"
