"""The adaptive protocol as plain data: ``[study] protocol = "adaptive"`` and its keys.

Under the adaptive protocol (docs/PROTOCOL.md) a study is a sequence of rounds rather than a
fixed grid: every cell's learning rate is selected on *tuning seeds* (seed values ``1000 + i``),
then *evaluation seeds* (``0, 1, 2, ...``, disjoint from the tuning seeds, seed s giving every
norm the same data order) are trained at the selected lr in rounds: ``first_round`` seeds for
every cell, then ``round_seeds`` more for the contexts whose comparisons are still open, until
each is resolved (group-sequential test, :mod:`normlab.analysis.sequential`), ``max_seeds`` is
reached, or the ``budget`` would be overrun.

The budget is not part of the study's identity (:meth:`AdaptiveProtocol.to_dict` keeps it, the
study id leaves it out): the same study with a larger budget resumes and continues its rounds.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from normlab.analysis.sequential import SequentialDesign
from normlab.errors import NormlabError

PROTOCOLS = ("fixed", "adaptive")
TUNING_SEED_BASE = 1000
"""Tuning seed i is ``1000 + i``: disjoint from evaluation seeds 0, 1, 2, ... (max_seeds <= 1000)."""
ADAPTIVE_KEYS = (
    "tuning_seeds",
    "first_round",
    "round_seeds",
    "max_seeds",
    "margin",
    "alpha",
    "budget",
)
"""``[study]`` keys the adaptive protocol reads (an error under ``protocol = "fixed"``)."""

_UNITS = {"h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


def parse_duration(text: str) -> float:
    """Seconds of a duration such as ``45s``, ``30m``, ``2h`` or ``1h30m`` (units in the order
    h, m, s, each at most once); a :class:`NormlabError` naming the value otherwise."""
    cleaned = text.strip().lower().replace(" ", "")
    match = _DURATION.fullmatch(cleaned)
    if not cleaned or match is None or not any(match.groups()):
        raise NormlabError(
            f"{text!r} is not a duration: write hours, minutes and seconds as 45s, 30m, 2h or 1h30m"
        )
    seconds = sum(float(v) * _UNITS[u] for v, u in zip(match.groups(), "hms", strict=True) if v)
    if seconds <= 0:
        raise NormlabError(f"{text!r}: a budget must be longer than 0 seconds")
    return seconds


def duration_text(seconds: float) -> str:
    """A duration as :func:`parse_duration` reads it, whole seconds rounded up (``1h30m``)."""
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{secs}s" if secs else "",
    ]
    return "".join(parts) or "0s"


@dataclass(frozen=True)
class AdaptiveProtocol:
    """``[study]`` keys of the adaptive protocol (defaults: docs/SPECS.md)."""

    tuning_seeds: int = 2
    """Seeds (``1000 + i``) that train every lr of a cell's grid; the lr is selected on their
    validation accuracy, and they never enter a comparison."""
    first_round: int = SequentialDesign.first_round
    """Evaluation seeds every cell trains in round 1 (fewer than 3 can never be significant)."""
    round_seeds: int = SequentialDesign.round_seeds
    """Evaluation seeds each later round adds to the cells of the contexts still open."""
    max_seeds: int = SequentialDesign.max_seeds
    """Evaluation seeds at which a context stops even if unresolved."""
    margin: float = SequentialDesign.margin
    """Equivalence margin (accuracy fraction; 0.01 = 1 point): a comparison whose interval lies
    inside +-margin is resolved as equivalent."""
    alpha: float = SequentialDesign.alpha
    """Family-wise error rate over every comparison and look."""
    budget: str | None = None
    """Wall-time cap of the whole study (all invocations), as written (``"30m"``); None: none."""

    @property
    def budget_seconds(self) -> float | None:
        return None if self.budget is None else parse_duration(self.budget)

    def tuning_seed_values(self) -> tuple[int, ...]:
        return tuple(TUNING_SEED_BASE + i for i in range(self.tuning_seeds))

    def design(self, comparisons: int = 1) -> SequentialDesign:
        """The group-sequential design of the evaluation rounds."""
        return SequentialDesign(
            first_round=self.first_round,
            round_seeds=self.round_seeds,
            max_seeds=self.max_seeds,
            alpha=self.alpha,
            margin=self.margin,
            comparisons=comparisons,
        )

    def round_of(self, seed: int) -> int:
        """The evaluation round that adds evaluation seed ``seed`` (1 for seeds below
        ``first_round``); rounds are a function of the seed, so a resumed study re-derives them."""
        looks = self.design().looks()
        return next((i for i, look in enumerate(looks, start=1) if seed < look), len(looks))

    def to_dict(self) -> dict[str, Any]:
        return {"protocol": "adaptive", **asdict(self)}
