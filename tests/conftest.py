"""Suite-wide settings: the hypothesis profile (derandomized in CI) and shared markers."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# "ci": derandomized and bounded, so `make test` is deterministic; a failure prints
# the @reproduce_failure blob and the falsifying example.
settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=60,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", max_examples=200, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
