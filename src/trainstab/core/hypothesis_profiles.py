"""Hypothesis settings for training properties, given to the tests that train and to no other test.

An example trains a model (about a second), so Hypothesis' defaults do not
fit: its 200 ms deadline fails a first run that is slower than its replay
(``Unreliable test timings``), and its health check calls the tests too slow.
Three profiles:

- ``trainstab-dev``: 5 random examples, for local runs (the default off CI);
- ``trainstab-ci``: 10 derandomized examples with no database, so a pull
  request sees the same examples on every run (the default when ``CI`` is set);
- ``trainstab-nightly``: 200 random examples whose failures are saved to
  ``.hypothesis/examples`` in the folder the session started in (:data:`EXAMPLES`),
  to be replayed first by the next run.

They are registered when the plugin loads, and never loaded as the session's
profile: a plugin is a guest in the user's repository, and a global profile
would change every other property test there (5 examples instead of 100).
A test that trains asks for them with :func:`training_settings`::

    @training_settings
    @given(stability_region(lr=(1e-3, 0.3)))
    def test_the_region_trains_stably(point): ...

Which profile: the one the user chose for the session, if any
(``--hypothesis-profile``, or ``settings.load_profile`` in a conftest), with
its deadline and "too slow" health check lifted, which no training example
can meet; else ``HYPOTHESIS_PROFILE`` when it names a trainstab profile; else
``trainstab-ci`` when ``CI`` is set and ``trainstab-dev`` when it is not. A
test's own ``@settings`` under the decorator wins whole.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

PROFILES = ("trainstab-dev", "trainstab-ci", "trainstab-nightly")

_Test = TypeVar("_Test", bound=Callable[..., Any])

#: Where ``trainstab-nightly`` saves failing examples, fixed when the plugin loads (before any conftest or model
#: module): a model that calls ``os.chdir`` would otherwise move the database, and the next night would not
#: replay the failures. As Hypothesis places its own: ``.hypothesis`` in the working folder of the moment it is
#: imported, or where ``HYPOTHESIS_STORAGE_DIRECTORY`` says.
EXAMPLES = Path(os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY") or ".hypothesis").absolute() / "examples"


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
    """Register the three profiles with Hypothesis (idempotent); loads none of them."""
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
        database=DirectoryBasedExampleDatabase(EXAMPLES),
        print_blob=True,
        suppress_health_check=slow,
    )


def chosen_profile() -> str | None:
    """The profile the user chose for the session (flag, conftest or a loaded trainstab profile), or None."""
    current = settings.get_current_profile_name()
    if current not in _UNCHOSEN or _hypothesis_own(current) is not _UNCHOSEN[current]:
        return current
    return None


def training_profile_name() -> str:
    """The name of the profile whose settings a training property runs with (see the module's docstring)."""
    register_profiles()
    chosen = chosen_profile()
    if chosen is not None:
        return chosen
    wanted = os.environ.get("HYPOTHESIS_PROFILE")
    if wanted in PROFILES:
        return wanted
    return "trainstab-ci" if os.environ.get("CI") else "trainstab-dev"


def training_profile() -> settings:
    """The settings a training property runs with: :func:`training_profile_name`'s, with no deadline.

    Use it as a parent to change one value: ``@settings(training_profile(), max_examples=20)``.
    """
    profile = settings.get_profile(training_profile_name())
    suppressed = {*profile.suppress_health_check, HealthCheck.too_slow}
    return settings(profile, deadline=None, suppress_health_check=sorted(suppressed, key=lambda check: check.value))


def training_settings(test: _Test) -> _Test:
    """Decorate a Hypothesis test that trains with :func:`training_profile`, resolved when the test is defined.

    A test that already carries its own ``@settings`` (written under this decorator) keeps them untouched.
    Any other test in the session keeps the settings it would have without trainstab.
    """
    if getattr(test, "_hypothesis_internal_settings_applied", False):  # the user's @settings win whole
        return test
    decorated: _Test = training_profile()(test)
    return decorated
