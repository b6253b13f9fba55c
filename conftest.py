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

from hypothesis import settings

from trainstab.core.hypothesis_profiles import register_profiles

# This repository's profile names, as the shipped profiles (trainstab.core.hypothesis_profiles) under their own names.
register_profiles()
for name in ("dev", "ci", "nightly"):
    settings.register_profile(name, parent=settings.get_profile(f"trainstab-{name}"))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
