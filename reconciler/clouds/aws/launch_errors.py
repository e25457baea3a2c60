"""How AWS's launch errors are classified (clouds/capacity.py explains the kinds and where
the texts come from; tests/adapters/test_launch_error_table.py holds a row per source)."""

from __future__ import annotations

import re

from reconciler.clouds.base import CAP, CONFIG, OTHER, QUOTA, launch_error_rules

# First match wins. Each cloud's rules come in tiers:
#   1. "retry later" codes (throttling): OTHER, before any word that looks like a quota;
#   2. capacity and reclaim *codes*: CAPACITY;
#   3. quota codes: QUOTA;
#   4. configuration codes: CONFIG;
#   5. capacity and reclaim *phrases* (free text without a code): CAPACITY. They come after the
#      config codes, so a config error whose message says "capacity" or "preemptible" stays
#      CONFIG, while a capacity code whose message says "configuration" stays CAPACITY;
#   6. generic quota words: QUOTA.
RULES = launch_error_rules(
    # 1. API throttling: the code ends in LimitExceeded, but there is no quota to raise.
    (r"RequestLimitExceeded|\bThrottling(?:Exception)?\b", OTHER),
    # 2. No capacity at launch (RunInstances codes; spot request status codes).
    (r"InsufficientInstanceCapacity|InsufficientCapacity\b|InsufficientHostCapacity", CAP),
    (r"UnfulfillableCapacity|capacity-not-available|capacity-oversubscribed", CAP),
    # Reclaimed while Terraform was still creating it: the instance's StateReason (the
    # provider's "last error") or the spot request's status when the waiter gave up.
    (r"Server\.SpotInstance(?:Termination|Shutdown)\b", CAP),
    (r"instance-(?:terminated|stopped)-no-capacity|marked-for-(?:termination|stop)\b", CAP),
    # A spot price above our max price: no spot *at our price* in this zone, a market signal
    # like a stockout (the module sets no max price, so this only appears if a user adds one).
    (r"SpotMaxPriceTooLow|price-too-low|instance-(?:terminated|stopped)-by-price", CAP),
    # In reality an account-wide limit on running spot instances (a quota), but DESIGN §5 lists
    # it with the capacity errors and SkyServe treats it so; followed here, see docs/clouds.md.
    (r"MaxSpotInstanceCountExceeded", CAP),
    # 3. Quota.
    (r"VcpuLimitExceeded|InstanceLimitExceeded|MaxSpotFleetRequestCountExceeded", QUOTA),
    (r"VolumeLimitExceeded", QUOTA),
    # 4. Configuration (ours, the same in every zone).
    (r"InvalidParameter\w*|InvalidAMIID\.\w+|InvalidSubnetID\.\w+|InvalidGroup\.\w+", CONFIG),
    (r"InvalidKeyPair\.\w+|InvalidInstanceType|Unsupported\b|UnauthorizedOperation", CONFIG),
    (r"OptInRequired|AuthFailure|InvalidBlockDeviceMapping|MissingParameter", CONFIG),
    (r"InvalidKMSKey\.\w+|InvalidSnapshot\.\w+|\bbad-parameters\b", CONFIG),
    # The provider looks the image up before RunInstances; a missing AMI is its own text
    # (hashicorp/aws 5.100.0: "collecting instance settings: couldn't find resource").
    (r"collecting instance settings: couldn't find resource", CONFIG),
    # A subnet too small for another instance: "Insufficient..." but not the spot market.
    (r"InsufficientFreeAddressesInSubnet", CONFIG),
    # 5. Capacity phrases (e.g. a spot fleet's event description).
    (r"no Spot capacity available", CAP),
    # 6. Quota words.
    (r"\bquota\b|LimitExceeded", QUOTA),
)
# Not CAPACITY on purpose: `Client.InstanceInitiatedShutdown` (the guest OS powered off: the
# image or user data, the same in every zone) and a terminated instance with no StateReason
# (`last error: %!s(<nil>)`): nothing says the market did it, so they stay OTHER.

# "the Availability Zone you requested (us-east-1a)" names the failed zone; the same message
# also lists *other* zones to try, so it wins over the generic pattern.
ZONE_PATTERNS = (
    re.compile(r"Availability Zone you requested \(([a-z]{2}(?:-gov)?-[a-z]+-\d[a-z])\)"),
    re.compile(r"\b([a-z]{2}(?:-gov)?-[a-z]+-\d[a-z])\b"),
)
