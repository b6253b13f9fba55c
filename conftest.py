"""Root conftest: Hypothesis profiles, chosen with HYPOTHESIS_PROFILE.

- dev: a handful of random examples, for local runs (the default off CI);
- ci: derandomized, a fixed small budget, no deadline and no database, so a
  pull request sees the same examples every run (the default when CI is set);
- nightly: a large random budget that saves failures to the example database
  in .hypothesis/examples (keep that folder between CI runs, e.g. with
  actions/cache, and the next run replays every failure found so far first).

Training examples take about a second each, so no profile has a deadline.
"""

import os

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

settings.register_profile("dev", max_examples=5, deadline=None)
settings.register_profile(
    "ci",
    max_examples=10,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "nightly",
    max_examples=200,
    deadline=None,
    database=DirectoryBasedExampleDatabase(".hypothesis/examples"),
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
