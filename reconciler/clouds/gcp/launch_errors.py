"""How GCP's launch errors are classified (clouds/capacity.py explains the kinds and where
the texts come from; tests/adapters/test_launch_error_table.py holds a row per source)."""

from __future__ import annotations

import re

from reconciler.clouds.base import CAP, CONFIG, OTHER, QUOTA, launch_error_rules

RULES = launch_error_rules(
    # 1. API rate limits ("Error 403: Rate Limit Exceeded, rateLimitExceeded"): not permission.
    (r"rateLimitExceeded|Rate Limit Exceeded", OTHER),
    # 2. Stockout: the operation's message and the localized message that comes with it.
    (r"ZONE_RESOURCE_POOL_EXHAUSTED(_WITH_DETAILS)?|resource pool exhausted|STOCKOUT", CAP),
    (r"does not have enough resources available", CAP),
    (r"is currently unavailable in the [a-z]+-[a-z]+\d+-[a-z] zone", CAP),
    # 3. Quota.
    (r"QUOTA_EXCEEDED|quotaExceeded|Quota '[^']*' exceeded", QUOTA),
    # 4. Configuration.
    (r"Invalid value for field|invalidParameter|badRequest|\bError 400\b", CONFIG),
    (r"does not exist in zone|was not found|\bnotFound\b|\bError 404\b", CONFIG),
    (r"\bError 403\b|forbidden|permission", CONFIG),
    # 5. A spot VM preempted while the insert operation ran ("Instance failed to start due to
    # preemption."). "preemptible" in a config error does not match.
    (r"due to preemption|\bpreempted\b", CAP),
)

ZONE_PATTERNS = (
    re.compile(r"zones/([a-z]+-[a-z]+\d+-[a-z])\b"),
    re.compile(r"\b([a-z]+-[a-z]+\d+-[a-z])\b"),
)
