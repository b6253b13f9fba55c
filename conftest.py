"""Root conftest: Hypothesis profiles, chosen with HYPOTHESIS_PROFILE (default: dev)."""

import os

from hypothesis import HealthCheck, settings

# Training examples take seconds each, so no deadline anywhere.
settings.register_profile("dev", max_examples=5, deadline=None)
settings.register_profile(
    "ci",
    max_examples=10,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("nightly", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
