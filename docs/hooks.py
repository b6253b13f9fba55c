"""mkdocs hooks: the reference pages' tables, generated from the code at build time.

A page holds a marker such as ``<!-- trainstab:options -->``; :func:`on_page_markdown` replaces it with markdown
generated from what defines the fact (the option table, the check registry, the parsers, the config records),
so the reference cannot drift from the code. ``tests/docs/test_site.py`` builds the site with ``--strict``.
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import inspect
import io
import json
import os
import re
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _options() -> str:
    """Every option: its pytest flag and ini key, the commands whose CLI flag it is, what it does, its default."""
    from trainstab.cli.main import CHECK_OPTIONS, FORECAST_OPTIONS, FUZZ_OPTIONS, SWEEP_OPTIONS
    from trainstab.run.options import OPTIONS, PYTEST_FLAGS

    commands = {
        "sweep": SWEEP_OPTIONS,
        "check": CHECK_OPTIONS,
        "compare": CHECK_OPTIONS,
        "fuzz": FUZZ_OPTIONS,
        "forecast": FORECAST_OPTIONS,
    }
    rows = ["| pytest flag | ini key | `trainstab` commands | what it sets |", "| --- | --- | --- | --- |"]
    for option in OPTIONS:
        taking = ", ".join(name for name, names in commands.items() if option.name in names)
        rows.append(
            f"| `{PYTEST_FLAGS}{option.name}` | `{option.key}` | {taking or '-'} (`--{option.name}`) "
            f"| {_cell(option.described())} |"
        )
    rows += [
        "| `--trainstab-set KEY=VALUE` | `trainstab_set` (lines) | sweep, check, fuzz, forecast (`--set`) "
        "| a model or training key for every test ([`--set` keys](#set-keys)); repeatable |",
        "| `--trainstab-update-baseline` | - | check (`--update-baseline`) "
        "| rewrite the baselines that are missing, worse or measured differently (and pass) |",
        "| `--trainstab-regen-all` | - | check (`--regen-all`) | rewrite every baseline of the checks that run |",
    ]
    return "\n".join(rows) + "\n"


def _cell(text: str) -> str:
    """Text for a markdown table cell."""
    return html.escape(_markdown(text), quote=False).replace("|", "\\|").replace("\n", " ")


def _markdown(text: str) -> str:
    """A docstring's reStructuredText roles as markdown code: ``:func:`~a.b.c``` is ``c``."""
    return re.sub(r":\w+:`~?([\w.]+)`", lambda found: f"`{found[1].rsplit('.', 1)[-1]}`", text)


def _set_keys() -> str:
    """The ``--set`` keys, from the config records, with each field's comment from the source."""
    from trainstab.core import config
    from trainstab.core.config import SIZE_KEYS, ModelConfig, TrainConfig

    source = Path(inspect.getfile(config)).read_text().splitlines()
    comments: dict[tuple[str, str], str] = {}
    record, above = "", ""
    for line in source:
        if found := re.match(r"class (\w+)", line):
            record = found[1]
        if found := re.match(r"    # (.*)$", line):  # a comment on the line above a field
            above = f"{above} {found[1]}".strip()
            continue
        if found := re.match(r"    (\w+): [^=]+=(.*)$", line):
            trailing = re.search(r"#\s*(.*)$", found[2])
            comments[(record, found[1])] = trailing[1] if trailing else above
        above = ""
    rows = ["| key | applies to | default | what it is |", "| --- | --- | --- | --- |"]
    for owner in (TrainConfig, ModelConfig):
        for field in dataclasses.fields(owner):
            default = field.default if field.default is not dataclasses.MISSING else None
            scope = (
                "every model"
                if owner is TrainConfig or field.name in SIZE_KEYS
                else "the reference model (refused for others)"
            )
            what = comments.get((owner.__name__, field.name), "")
            rows.append(f"| `{field.name}` | {scope} | `{default}` | {_cell(what)} |")
    return "\n".join(rows) + "\n"


def _checks() -> str:
    """Every check: its group, what it reads, whether it is report-only and why, its metrics and tolerances."""
    from trainstab.checks.battery import BATTERY
    from trainstab.checks.scaling import MUP_CHECKS, PAIRED_CHECKS, STABILITY_FORECASTS
    from trainstab.run.options import PYTEST_FLAGS

    groups = [
        ("The battery (the default set)", BATTERY),
        ("Stability forecasts (opt in by name)", STABILITY_FORECASTS),
        ("µP checks (opt in by name; standard parameterisation fails them by design)", MUP_CHECKS),
        ("Paired (opt in by name)", PAIRED_CHECKS),
    ]
    out = []
    for title, checks in groups:
        out += [f"### {title}", "", "| check | what it asserts | reads | report-only | its own options |"]
        out += ["| --- | --- | --- | --- | --- |"]
        for name, check in checks.items():
            doc = (inspect.getdoc(check.run) or "").split("\n\n")[0].replace("\n", " ")
            reads = ", ".join(check.reads) or "-"
            report_only = _cell(check.report_only)
            own = [*check.options, *(f"{ladder}s" for ladder in ("width", "depth") if ladder in check.reads)]
            flags = ", ".join(f"`{PYTEST_FLAGS}{option}`" for option in own) or "-"
            out.append(f"| `{name}` | {_cell(doc)} | {reads} | {report_only or 'no'} | {flags} |")
        out.append("")
    out += ["### Metrics recorded in baselines", "", "| check | metric | per LR | kind | tolerance |",
            "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for name, check in BATTERY.items():
        for metric in check.metrics:
            tolerance = metric.tolerance
            shown = (
                f"rel {tolerance.rel:g} + abs {tolerance.abs:g}, {tolerance.worse} is worse"
                if tolerance
                else "recorded, not gated"
            )
            out.append(f"| `{name}` | `{metric.name}` | {'yes' if metric.per_lr else 'no'} | {metric.kind} | {shown} |")
    return "\n".join(out) + "\n"


def _cli() -> str:
    """Every command's ``--help``, as it prints at 100 columns."""
    from trainstab.cli.main import build_parser

    os.environ["COLUMNS"] = "100"
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out = ["```text", parser.format_help().rstrip(), "```", ""]
    for name, command in subparsers.choices.items():
        out += [f"## `trainstab {name}`", "", "```text", command.format_help().rstrip(), "```", ""]
        for action in command._actions:  # a command with actions of its own: trainstab baselines validate
            if isinstance(action, argparse._SubParsersAction):
                for inner, nested in action.choices.items():
                    out += [f"### `trainstab {name} {inner}`", "", "```text", nested.format_help().rstrip(), "```", ""]
    return "\n".join(out)


def _exit_codes() -> str:
    """The exit statuses every command shares."""
    from trainstab.cli.help import exit_status

    return "```text\n" + exit_status("a check failed (each command's --help says what fails it)") + "\n```\n"


def _schemas() -> str:
    """The JSON Schemas shipped in the package."""
    from trainstab.gate.schemas import SCHEMAS

    out = []
    for name, make in SCHEMAS.items():
        out += [f"### `{name}`", "", "```json", json.dumps(make(), indent=2), "```", ""]
    return "\n".join(out)


def _api() -> str:
    """The public names of the import paths users write, with their signatures and docstrings."""
    import importlib

    out = []
    for module_name in ("trainstab.testing", "trainstab.fuzz", "trainstab.strategies", "trainstab.sweep",
                        "trainstab.capture", "trainstab.models", "trainstab.extend"):  # fmt: skip
        module = importlib.import_module(module_name)
        out += [f"## `{module_name}`", "", (inspect.getdoc(module) or "").split("\n\n")[0], ""]
        for name in module.__all__:
            value = getattr(module, name)
            if not (inspect.isfunction(value) or inspect.isclass(value)):
                continue
            try:
                signature = str(inspect.signature(value))
            except (TypeError, ValueError):
                signature = "(...)"
            kind = "class " if inspect.isclass(value) else ""
            doc = _markdown(inspect.getdoc(value) or "")
            out += [f"### `{name}`", "", f"```python\n{kind}{name}{signature}\n```", "", doc, ""]
    return "\n".join(out)


GENERATED: dict[str, Callable[[], str]] = {
    "options": _options,
    "set-keys": _set_keys,
    "checks": _checks,
    "cli": _cli,
    "exit-codes": _exit_codes,
    "schemas": _schemas,
    "api": _api,
}


def generated(name: str) -> str:
    """The markdown a ``<!-- trainstab:NAME -->`` marker stands for (the code's warnings kept off the build)."""
    with redirect_stdout(io.StringIO()):
        return GENERATED[name]()


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Replace each ``<!-- trainstab:NAME -->`` marker with its generated markdown."""
    return re.sub(r"<!-- trainstab:([a-z-]+) -->", lambda found: generated(found[1]), markdown)
