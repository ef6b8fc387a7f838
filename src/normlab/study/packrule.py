"""The pack size rule: how many runs of one configuration train as one pack.

Packing pays where a step is overhead (small batches, small models) and loses where a step is
arithmetic: K grouped convolutions are not faster than K ordinary ones, and can be slower
(``docs/BENCHMARKS.md``, "Where the ceiling is"). Where the crossover lies depends on the
model, the norm, the batch size and the image size, so the rule is measured, per
configuration (:func:`rule_key`), when the study is planned: the calibration times a step alone
and packed at a few pack sizes K (:func:`candidate_sizes`), and :func:`choose_pack_size` packs
at the K of the highest measured throughput factor ``K * t_alone / t_packed(K)`` if that factor
is at least :data:`MIN_SPEEDUP` (a margin over the noise of a shared machine, so that a model
that packs is not slower packed than alone).

The choice decides numbers (packed and alone agree within float32 rounding, not bitwise), so it
is measured once and recorded in the study folder (:data:`PACK_RULE_FILE`): a resume, the lr
grid extension and another study in the folder reuse the recorded K instead of measuring again.

Without a calibration (the Ray executor, a GPU, a Python caller that does not calibrate) the
fixed rule applies (:func:`fallback_choice`): the write-up's ResNet packs below a batch x pixels
threshold measured on this project's CPU (:func:`pack_size_limit`); any other model trains
alone, since nothing says packing is faster for it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from normlab.errors import NormlabError
from normlab.train import RunConfig

MIN_SPEEDUP = 1.2
"""A configuration packs only if its measured throughput packed is at least this many times its
throughput alone: repeated calibrations of one configuration on the 2 shared cores of this
project spread by about 10%, so a smaller measured gain may be none."""
MAX_PACK_SIZE = 64
"""No pack holds more runs (beyond 64 the measured images/s at batch 2 stops growing)."""
MAX_PACKED_PIXELS = 2**19
"""Memory bound: K * batch_size * H * W <= this (512 images of 32x32 per packed step): a pack's
activations grow with K x batch x pixels, so no pack size beyond it is tried."""
MAX_PACKED_IMAGES = 256
"""Pack sizes tried: K * batch_size <= this. A packed step of 256 images is arithmetic, not
overhead, and packing does not reduce arithmetic: in every row of the ``normlab bench --model``
table (``docs/BENCHMARKS.md``) the best K had K x batch <= 256. The bound keeps the calibration
short: a ResNet-20 step of 512 CIFAR images takes seconds on one thread, and the default study
on CIFAR-10 took over 10 minutes to calibrate without it."""
PLATEAU = 1.05
"""Doubling K stops once a size is not this much faster than the best so far."""
PACK_PIXEL_BUDGET = 16_384
"""Fixed rule's pack size bound: K * batch_size * H * W <= this (as many image pixels as 256
digits images or 16 CIFAR images per packed step)."""
PACKED_STEP_PIXELS = 2_048
"""Fixed rule: runs pack only where batch_size * H * W <= this (batch 32 on digits, 2 on 32x32
images). Measured on 2 cores for the write-up's ResNet (``normlab bench``): packing pays most where
a step is overhead (7x to 11x at batch 2, about 4x at batch 8 with K = 15 on digits), less as the
step becomes arithmetic (1.6x to 2x at batch 32), and it loses at batch 128 (0.5x)."""
FIXED_RULE_MODELS = ("resnet",)
"""Models the fixed rule was measured on; without a calibration other models train alone."""
PACK_RULE_FILE = "pack_rule.json"
"""The recorded choices in a study folder: rule key -> :class:`PackChoice`."""


@dataclass(frozen=True)
class PackChoice:
    """The pack size of one configuration and where it comes from."""

    size: int
    """Runs per pack; 1: the configuration trains alone."""
    source: str
    """``measured`` (this machine's calibration) or ``fixed`` (:func:`fallback_choice`)."""
    factor: float | None = None
    """Measured throughput packed / alone at ``size`` (at the best K when alone)."""
    measured: tuple[tuple[int, float], ...] = ()
    """(K, factor) of every pack size timed."""
    reason: str = ""
    """Why the configuration trains alone ("" when it packs)."""

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "measured": [list(pair) for pair in self.measured]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PackChoice:
        return cls(
            size=int(data["size"]),
            source=str(data["source"]),
            factor=None if data.get("factor") is None else float(data["factor"]),
            measured=tuple((int(k), float(f)) for k, f in data.get("measured", ())),
            reason=str(data.get("reason", "")),
        )

    def describe(self) -> str:
        """``K=8, 3.1x alone (measured K 2: 1.6x, 4: 2.4x, 8: 3.1x)`` or the reason alone."""
        timed = ", ".join(f"{k}: {f:.2f}x" for k, f in self.measured)
        if self.size == 1:
            return self.reason + (f" (measured K {timed})" if timed else "")
        if self.factor is None:
            return f"K={self.size} (fixed rule, not measured)"
        return f"K={self.size}, {self.factor:.2f}x alone (measured K {timed})"


def rule_key(config: RunConfig, input_shape: tuple[int, ...]) -> str:
    """What a step's speed depends on: the model (and its files' fingerprint), norm, batch
    size, optimizer and the image shape; not the per-run fields (seed, lr, ...) nor the budget.
    """
    fields = {
        "model": config.model,
        "model_fingerprint": config.model_fingerprint,
        "depth": config.depth,
        "widths": list(config.widths),
        "norm": config.norm,
        "norm_options": config.norm_options,
        "batch_size": config.batch_size,
        "optimizer": config.optimizer,
        "input_shape": list(input_shape),
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)


def describe_key(config: RunConfig) -> str:
    """A configuration in a line: ``resnet20 norm=bn batch=8``."""
    model = "resnet" if config.model == "resnet" else config.model
    return f"{model} norm={config.norm} batch={config.batch_size}"


def pack_size_limit(batch_size: int, image_pixels: int) -> int:
    """The fixed rule: the most runs a pack of ``batch_size`` holds for images of
    ``image_pixels`` (H * W); 1 (no packing) where one run's step is large enough to use the
    machine alone."""
    pixels = batch_size * max(1, image_pixels)
    if pixels > PACKED_STEP_PIXELS:
        return 1
    return max(1, min(MAX_PACK_SIZE, PACK_PIXEL_BUDGET // pixels))


def fallback_choice(config: RunConfig, image_pixels: int) -> PackChoice:
    """The rule without a calibration: :func:`pack_size_limit` for the models it was measured
    on (:data:`FIXED_RULE_MODELS`), alone for any other."""
    if config.model not in FIXED_RULE_MODELS:
        return PackChoice(
            1,
            "fixed",
            reason=f"model {config.model!r}: packing not measured (no calibration; the fixed "
            "rule packs only the write-up's ResNet)",
        )
    size = pack_size_limit(config.batch_size, image_pixels)
    if size == 1:
        return PackChoice(
            1,
            "fixed",
            reason=f"batch size {config.batch_size}: batch x pixels above {PACKED_STEP_PIXELS}, "
            "where packing is slower than training alone (fixed rule)",
        )
    return PackChoice(size, "fixed")


def candidate_sizes(runs: int, batch_size: int, image_pixels: int) -> list[int]:
    """Pack sizes worth timing for a configuration of ``runs`` runs: 2, 4, 8, ... below the
    cap, then the cap (the runs, :data:`MAX_PACK_SIZE`, :data:`MAX_PACKED_IMAGES` and
    :data:`MAX_PACKED_PIXELS`)."""
    cap = min(
        runs,
        MAX_PACK_SIZE,
        MAX_PACKED_IMAGES // max(1, batch_size),
        MAX_PACKED_PIXELS // max(1, batch_size * image_pixels),
    )
    sizes, size = [], 2
    while size < cap:
        sizes.append(size)
        size *= 2
    return sizes + [cap] if cap >= 2 else []


def choose_pack_size(
    alone_step: float, packed_steps: Mapping[int, float], min_speedup: float = MIN_SPEEDUP
) -> PackChoice:
    """The measured rule from step times: run alone, ``alone_step`` seconds per step; K runs
    packed, ``packed_steps[K]`` seconds per packed step. Throughput factor at K:
    ``K * alone_step / packed_steps[K]``. Packs at the K of the highest factor (the smaller K
    on a tie) when it reaches ``min_speedup``; else alone, naming the best factor measured."""
    if alone_step <= 0 or any(seconds <= 0 for seconds in packed_steps.values()):
        raise NormlabError(f"step times must be positive, got {alone_step}, {dict(packed_steps)}")
    factors = {k: k * alone_step / seconds for k, seconds in sorted(packed_steps.items())}
    measured = tuple(factors.items())
    if not factors:
        return PackChoice(1, "measured", reason="no pack size fits the memory bound")
    best = max(factors, key=lambda k: (factors[k], -k))
    if factors[best] < min_speedup:
        return PackChoice(
            1,
            "measured",
            factor=factors[best],
            measured=measured,
            reason=f"packed at best {factors[best]:.2f}x alone (K={best}), below the "
            f"{min_speedup:g}x the rule asks",
        )
    return PackChoice(best, "measured", factor=factors[best], measured=measured)


def keep_doubling(factors: Mapping[int, float]) -> bool:
    """Whether to time the next pack size after ``factors`` (K -> factor, in the order timed):
    stop once the last size is not :data:`PLATEAU` times faster than the best before it."""
    values = list(factors.values())
    return len(values) < 2 or values[-1] >= PLATEAU * max(values[:-1])


def load_choices(folder: Path | str | None) -> dict[str, PackChoice]:
    """The choices recorded in ``folder`` (empty when none, or no folder)."""
    if folder is None:
        return {}
    path = Path(folder) / PACK_RULE_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        return {key: PackChoice.from_dict(value) for key, value in data["choices"].items()}
    except (ValueError, KeyError, TypeError) as error:
        raise NormlabError(
            f"{path}: unreadable pack rule record ({error}); delete it to measure again"
        ) from None


def record_choices(folder: Path | str, choices: Mapping[str, PackChoice]) -> None:
    """Add ``choices`` to ``folder``'s record; a key already recorded keeps its choice (the
    pack size decided a study's numbers, so it is never re-measured differently)."""
    recorded = load_choices(folder)
    merged = {**choices, **recorded}
    if merged.keys() == recorded.keys():
        return
    path = Path(folder) / PACK_RULE_FILE
    payload = {"choices": {key: merged[key].to_dict() for key in sorted(merged)}}
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(payload, indent=1, sort_keys=True))
    temporary.replace(path)
