"""``[study] protocol`` and the adaptive protocol's keys -> :class:`.protocol.AdaptiveProtocol`.

Kept beside :mod:`.parse` (which calls it) so that each reads whole. Every error names the key:
``study.toml:3: study.budget: '30 minutes' is not a duration: ...``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from normlab.errors import NormlabError

from .locate import KeyPath
from .protocol import ADAPTIVE_KEYS, PROTOCOLS, TUNING_SEED_BASE, AdaptiveProtocol, parse_duration

Fail = Callable[[KeyPath, str], NormlabError]

_INTEGERS = {
    "tuning_seeds": (1, "at least one tuning seed selects the learning rate"),
    "first_round": (3, "fewer than 3 evaluation seeds can never make a comparison significant"),
    "round_seeds": (1, "each later round adds at least one seed"),
    "max_seeds": (3, "a comparison needs at least 3 evaluation seeds"),
}


def parse_protocol(table: dict[str, Any], fail: Fail) -> AdaptiveProtocol | None:
    """The adaptive protocol of a ``[study]`` table; None for ``protocol = "fixed"`` (the
    default). An adaptive key under the fixed protocol, and ``seeds`` under the adaptive one
    (its seeds are ``tuning_seeds`` and the rounds), are errors rather than silently unused."""
    protocol = table.get("protocol", "fixed")
    if protocol not in PROTOCOLS:
        raise fail(("study", "protocol"), f"{protocol!r} is not one of: {', '.join(PROTOCOLS)}")
    if protocol == "fixed":
        for key in ADAPTIVE_KEYS:
            if key in table:
                raise fail(("study", key), 'read by protocol = "adaptive" only')
        return None
    if "seeds" in table:
        raise fail(
            ("study", "seeds"),
            'not read by protocol = "adaptive": its seeds are tuning_seeds (select the lr) and '
            "evaluation seeds added in rounds (first_round, round_seeds, max_seeds)",
        )
    values: dict[str, Any] = {}
    for key, (least, why) in _INTEGERS.items():
        if key in table:
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, int):
                raise fail(("study", key), f"expected an integer, got {value!r}")
            if value < least:
                raise fail(("study", key), f"must be >= {least} ({why}), got {value}")
            values[key] = value
    for key in ("margin", "alpha"):
        if key in table:
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise fail(("study", key), f"expected a number, got {value!r}")
            if not 0 < value < 1:
                raise fail(("study", key), f"must be between 0 and 1 (a fraction), got {value}")
            values[key] = float(value)
    if "budget" in table:
        budget = table["budget"]
        if not isinstance(budget, str):
            raise fail(("study", "budget"), f'expected a duration such as "30m", got {budget!r}')
        try:
            parse_duration(budget)
        except NormlabError as error:
            raise fail(("study", "budget"), str(error)) from None
        values["budget"] = budget.strip()
    adaptive = AdaptiveProtocol(**values)
    if adaptive.max_seeds < adaptive.first_round:
        raise fail(
            ("study", "max_seeds"),
            f"must be >= first_round ({adaptive.first_round}), got {adaptive.max_seeds}",
        )
    if adaptive.max_seeds > TUNING_SEED_BASE:
        raise fail(
            ("study", "max_seeds"),
            f"must be <= {TUNING_SEED_BASE} (evaluation seeds stay below the tuning seeds)",
        )
    return adaptive
