"""Hypothesis settings for training properties, shipped so a user's repository needs no conftest for them.

An example trains a model (about a second), so Hypothesis' defaults do not
fit: its 200 ms deadline fails a first run that is slower than its replay
(``Unreliable test timings``), and its health check calls the tests too slow.
Three profiles:

- ``trainstab-dev``: 5 random examples, for local runs (the default off CI);
- ``trainstab-ci``: 10 derandomized examples with no database, so a pull
  request sees the same examples on every run (the default when ``CI`` is set);
- ``trainstab-nightly``: 200 random examples whose failures are saved to
  ``.hypothesis/examples``, to be replayed first by the next run.

The pytest plugin loads ``trainstab-dev`` or ``trainstab-ci`` at start-up
when no profile was chosen (``--hypothesis-profile``, ``HYPOTHESIS_PROFILE``
or a ``settings.load_profile`` in a conftest). A test's own ``@settings``
still wins: a profile only supplies the defaults.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

PROFILES = ("trainstab-dev", "trainstab-ci", "trainstab-nightly")


def _hypothesis_own(name: str) -> settings | None:
    """The profile ``name`` as registered now (None if it is not)."""
    try:
        return settings.get_profile(name)
    except Exception:  # InvalidArgument: not registered in this Hypothesis version
        return None


#: Hypothesis' own profiles, taken when the plugin module is imported (before any conftest): Hypothesis
#: loads its own "ci" (100 examples) when it detects CI, and that is not a choice the user made.
_UNCHOSEN = {name: _hypothesis_own(name) for name in ("default", "ci")}


def register_profiles() -> None:
    """Register the three profiles with Hypothesis (idempotent)."""
    slow = [HealthCheck.too_slow]
    settings.register_profile("trainstab-dev", max_examples=5, deadline=None, suppress_health_check=slow)
    settings.register_profile(
        "trainstab-ci",
        max_examples=10,
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=True,
        suppress_health_check=slow,
    )
    settings.register_profile(
        "trainstab-nightly",
        max_examples=200,
        deadline=None,
        database=DirectoryBasedExampleDatabase(".hypothesis/examples"),
        print_blob=True,
        suppress_health_check=slow,
    )


def load_default_profile(chosen: str | None) -> str | None:
    """Load ``trainstab-ci`` (``CI`` set) or ``trainstab-dev`` unless a profile was chosen; returns the one loaded.

    ``chosen`` is the ``--hypothesis-profile`` value. ``HYPOTHESIS_PROFILE`` names a profile to load instead.
    """
    register_profiles()
    current = settings.get_current_profile_name()
    if chosen or current not in _UNCHOSEN or _hypothesis_own(current) is not _UNCHOSEN[current]:
        return None  # the user's choice stands
    wanted = os.environ.get("HYPOTHESIS_PROFILE")
    if wanted and wanted not in PROFILES:
        return None  # a profile of the user's own, for their conftest to load
    name = wanted or ("trainstab-ci" if os.environ.get("CI") else "trainstab-dev")
    settings.load_profile(name)
    return name
