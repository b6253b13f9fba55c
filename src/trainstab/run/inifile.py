"""The pytest configuration's ``trainstab_*`` keys, for both front ends, from the file pytest itself picks.

One configuration, by construction: trainstab never looks for a configuration
file of its own. The plugin takes its session's file and rootdir
(``config.inipath``, ``config.rootpath``, so ``-c`` and ``--rootdir`` count);
the command line asks the installed pytest's own discovery
(``_pytest.config.findpaths.determine_setup``, called as pytest calls it for a
plain ``pytest`` in the current folder), so the file kinds, their order and the
rootdir rules are whatever that pytest's are: ``pytest.toml``, ``.pytest.toml``
and ``[tool.pytest]`` on pytest 9, ``pytest.ini``, ``.pytest.ini``,
``[tool.pytest.ini_options]``, ``tox.ini`` and ``setup.cfg`` on both.

Both then read that file with pytest's own loader and keep each value as the
file types it: text from an ini file or ``[tool.pytest.ini_options]``
(whose arrays stay arrays), native TOML integers, floats, booleans and arrays
from ``[tool.pytest]`` and ``pytest.toml``. The option table
(:func:`trainstab.run.options.parse_options`) accepts and checks those, the same
for both front ends; ``pytest.Config.getini`` is not used, since no ini type
of pytest's takes an array of numbers (``trainstab_widths = [32, 48, 64]``).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from _pytest.config import findpaths

from trainstab.core.errors import TrainstabError
from trainstab.core.files import invocation_folder, shown
from trainstab.core.option_fields import INI_PREFIX

PREFIX = INI_PREFIX
SET_KEY = PREFIX + "set"  # the key=value lines (pytest's linelist); every other key is an option of the table


@dataclass(frozen=True)
class IniFile:
    """The trainstab keys of the pytest configuration a run reads."""

    path: Path | None  # the file pytest reads; None when it reads none
    rootdir: Path  # pytest's rootdir: relative folders in the file are relative to it
    values: dict[str, object] = field(default_factory=dict)  # trainstab_* key -> value as typed there (no set)
    overrides: tuple[str, ...] = ()  # the trainstab_set lines
    from_command_line: frozenset[str] = frozenset()  # keys given by pytest's -o/--override-ini, not the file

    @property
    def name(self) -> str:
        """The file as messages show it: relative to the working folder when below it."""
        return shown(self.path) if self.path is not None else "(no pytest configuration file)"

    def source(self, key: str) -> str:
        """Where ``key`` was given, as messages name it: ``pyproject.toml: trainstab_seed`` or ``-o trainstab_seed``."""
        return f"-o {key}" if key in self.from_command_line else f"{self.name}: {key}"

    @property
    def set_source(self) -> str:
        """Where the ``trainstab_set`` lines were given, as messages name it."""
        return self.source(SET_KEY)


def read_ini() -> IniFile:
    """The trainstab keys of what a plain ``pytest`` started in the invocation folder reads, found by pytest.

    The folder the run started in (:func:`trainstab.core.files.invocation_folder`), not the working folder of the
    moment, which a model's module may have changed.
    """
    rootdir, path, config = discover(invocation_folder())
    return _trainstab_keys(path, rootdir, config, ())  # its values, as the plugin takes them from the same file


def discover(folder: Path) -> tuple[Path, Path | None, dict[str, Any]]:
    """pytest's rootdir, configuration file (None: none) and its keys, for a plain ``pytest`` started in ``folder``.

    pytest's own discovery, called as pytest calls it: no file or rootdir given, no paths. pytest 9 added
    ``override_ini`` (and returns the ignored files too), so it is called by keyword.
    """
    determine_setup: Any = findpaths.determine_setup
    arguments: dict[str, Any] = {"inifile": None, "args": [], "rootdir_cmd_arg": None, "invocation_dir": folder}
    if "override_ini" in inspect.signature(determine_setup).parameters:
        arguments["override_ini"] = None
    try:
        rootdir, path, config, *_ = determine_setup(**arguments)
    except (pytest.UsageError, pytest.fail.Exception) as error:  # an unreadable file; [pytest] in setup.cfg
        raise TrainstabError(f"the pytest configuration: {error}") from None
    except ValueError as error:  # a file that is not UTF-8 (UnicodeDecodeError), or not what its kind should be
        raise TrainstabError(f"the pytest configuration cannot be read: {error}") from None
    return rootdir, path, dict(config)


def ini_of(config: pytest.Config) -> IniFile:
    """The trainstab keys of a pytest session's configuration: its file, its rootdir, its ``-o`` overrides."""
    path = config.inipath
    file_values = findpaths.load_config_dict_from_file(path) if path is not None else None
    return _trainstab_keys(path, config.rootpath, file_values or {}, config.getoption("override_ini") or ())


def _trainstab_keys(
    path: Path | None, rootdir: Path, config: Mapping[str, object], override_ini: Sequence[str]
) -> IniFile:
    """The trainstab keys of one configuration (pytest's dict of it), ``-o key=value`` overrides last."""
    values = {key: plain(value) for key, value in config.items() if key.startswith(PREFIX)}
    given: set[str] = set()
    for line in override_ini:  # pytest's rule: split at the first "=", the last one for a key wins
        key, equals, value = line.partition("=")
        if equals and key.startswith(PREFIX):
            values[key] = value
            given.add(key)
    lines = values.pop(SET_KEY, [])
    ini = IniFile(path, rootdir, values, (), frozenset(given))
    return dataclasses.replace(ini, overrides=_lines(lines, ini.set_source))


def plain(value: object) -> object:
    """A configuration value as the file types it (pytest 9 wraps each in a ``ConfigValue`` with its origin)."""
    wrapped: Any = value
    return wrapped.value if hasattr(wrapped, "mode") else value


def _lines(value: object, source: str) -> tuple[str, ...]:
    """A pytest ``linelist`` value: one item per line of text, or a TOML array of strings."""
    if isinstance(value, str):
        value = value.splitlines()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TrainstabError(
            f'{source}={value!r}: expected key=value lines (in TOML an array of strings such as ["z_loss=0"])'
        )
    return tuple(item.strip() for item in value if item.strip())
