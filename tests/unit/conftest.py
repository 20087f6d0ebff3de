"""Hypothesis profiles: ``ci`` (the default) is deterministic and keeps no example database, so
a run in CI tries the same examples every time and a failure reproduces from the seed it prints;
``HYPOTHESIS_PROFILE=explore`` searches ten times longer with fresh randomness, for local digging.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=250,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "explore",
    max_examples=2_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
