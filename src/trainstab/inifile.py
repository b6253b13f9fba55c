"""The pytest configuration file's ``trainstab_*`` keys, read for the command line as pytest reads them.

One configuration for both front ends: ``trainstab check`` takes the keys
from the file pytest would use, found the way pytest finds it (from the
current folder upward, the first of ``pytest.ini``, ``.pytest.ini``,
``pyproject.toml`` with ``[tool.pytest.ini_options]``, ``tox.ini`` with
``[pytest]`` and ``setup.cfg`` with ``[tool:pytest]`` in a folder). Flags on
the command line win over the file. Imports neither torch nor pytest.
"""

from __future__ import annotations

import configparser
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainstab.errors import TrainstabError
from trainstab.files import shown

#: (file name, section) in the order pytest tries them within one folder.
_CANDIDATES = (
    ("pytest.ini", "pytest"),
    (".pytest.ini", "pytest"),
    ("pyproject.toml", "tool.pytest.ini_options"),
    ("tox.ini", "pytest"),
    ("setup.cfg", "tool:pytest"),
)


@dataclass(frozen=True)
class IniFile:
    """The trainstab keys of one pytest configuration file."""

    path: Path | None  # None when no configuration file was found
    values: dict[str, str] = field(default_factory=dict)  # trainstab_* key -> raw value (not trainstab_set)
    overrides: tuple[str, ...] = ()  # the trainstab_set lines

    @property
    def name(self) -> str:
        """The file as messages show it: relative to the working folder when below it."""
        return shown(self.path) if self.path is not None else "(no pytest configuration file)"

    @property
    def folder(self) -> Path:
        """pytest's rootdir for this file: relative paths in it are relative to here."""
        return self.path.parent if self.path is not None else Path.cwd()


def _section(path: Path, section: str) -> dict[str, Any] | None:
    """The section's keys, or None when the file does not hold it (pytest then looks further)."""
    try:
        if path.suffix == ".toml":
            table: Any = tomllib.loads(path.read_text())
            for part in section.split("."):
                table = table.get(part) if isinstance(table, dict) else None
            return table if isinstance(table, dict) else None
        parser = configparser.ConfigParser(interpolation=None)
        parser.read_string(path.read_text(), source=str(path))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, configparser.Error) as error:
        raise TrainstabError(f"cannot read the pytest configuration {path}: {error}") from None
    if not parser.has_section(section):
        return {} if path.name in ("pytest.ini", ".pytest.ini") else None  # pytest.ini counts even when empty
    return dict(parser.items(section))


def _lines(value: Any) -> tuple[str, ...]:
    """A pytest ``linelist`` value: a TOML list, or one item per line."""
    items = value if isinstance(value, list) else str(value).splitlines()
    return tuple(str(item).strip() for item in items if str(item).strip())


def read_ini(start: Path | None = None) -> IniFile:
    """The trainstab keys of the pytest configuration file found from ``start`` (the current folder) upward."""
    folder = (start or Path.cwd()).resolve()
    for directory in (folder, *folder.parents):
        for name, section in _CANDIDATES:
            path = directory / name
            if not path.is_file():
                continue
            keys = _section(path, section)
            if keys is None:
                continue
            values = {k: str(v) for k, v in keys.items() if k.startswith("trainstab_") and k != "trainstab_set"}
            return IniFile(path, values, _lines(keys.get("trainstab_set", [])))
    return IniFile(None)
