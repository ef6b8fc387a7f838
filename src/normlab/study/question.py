"""One user's question as ``normlab run`` options: *my* batch size, *my* norms, *my* time.

``--batch-size 4`` (or ``2,8``) compares the norms at those batch sizes plus one reference batch
size (``--reference-batch-size``; by default :func:`reference_batch_size` of the training split),
so that the report shows whether a deficit is a small-batch effect. ``--norms`` chooses the
norms (the word ``remedies`` stands for the norms that keep BN); ``--budget`` caps the study's
wall time. Whenever ``--batch-size`` or ``--budget`` is given the study uses the adaptive
protocol (:mod:`.protocol`, :mod:`.rounds`); these functions edit the bundled preset's values
before they are parsed, so every check of a spec file applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from normlab.errors import NormlabError
from normlab.norms import norm_entry, norm_names

from .protocol import parse_duration

REFERENCE_CAP = 128
"""The default reference batch size where the data allows it (the default study's largest)."""
REFERENCE_STEPS = 8
"""The default reference batch size leaves at least this many optimizer steps per epoch."""
QUICK_ADAPTIVE = {"tuning_seeds": 1, "max_seeds": 5}
"""``--quick`` with the adaptive protocol: one tuning seed, at most 5 evaluation seeds."""


@dataclass(frozen=True)
class Question:
    """The ``normlab run`` options that shape the study (None: the preset's)."""

    batch_sizes: tuple[int, ...] | None = None
    reference_batch_size: int | None = None
    norms: tuple[str, ...] | None = None
    budget: str | None = None

    @property
    def adaptive(self) -> bool:
        """The adaptive protocol is the default whenever a batch size or a budget is asked for."""
        return self.batch_sizes is not None or self.budget is not None


def reference_batch_size(num_train: int) -> int:
    """The default reference batch size: the largest power of two at most 128 that leaves at
    least 8 optimizer steps per epoch of ``num_train`` training examples (2 at the least, the
    smallest batch BN trains with): large, and still a study of many steps."""
    size = 2
    while size * 2 <= min(REFERENCE_CAP, num_train // REFERENCE_STEPS):
        size *= 2
    return size


def parse_sizes(text: str, option: str) -> tuple[int, ...]:
    """``4`` or ``2,8`` -> batch sizes (positive integers, distinct)."""
    sizes: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise NormlabError(f"{option} {text}: {part!r} is not a batch size (an integer >= 1)")
        if int(part) in sizes:
            raise NormlabError(f"{option} {text}: repeats the batch size {part}")
        sizes.append(int(part))
    return tuple(sizes)


def parse_norms(text: str) -> tuple[str, ...]:
    """``bn,gn,ln`` -> norms; ``remedies`` stands for every norm that keeps BN (registry flag
    ``keeps_bn``), with ``bn`` put first when not listed (the remedies are compared with BN)."""
    known = norm_names()
    remedies = [name for name in known if norm_entry(name).keeps_bn]
    norms: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if part == "remedies":
            if "bn" not in norms and "bn" not in text.split(","):
                norms.insert(0, "bn")
            norms += remedies
        elif part in known:
            norms.append(part)
        else:
            raise NormlabError(
                f"--norms {text}: {part!r} is not a norm (normlab list norms), nor 'remedies'"
            )
    norms = list(dict.fromkeys(norms))
    if len(norms) < 2:
        raise NormlabError(f"--norms {text}: name at least two norms to compare")
    return tuple(norms)


def parse_budget(text: str) -> str:
    """``--budget`` as written, once it parses as a duration."""
    try:
        parse_duration(text)
    except NormlabError as error:
        raise NormlabError(f"--budget {error}") from None
    return text.strip()


def apply_question(
    values: dict[str, Any], question: Question, num_train: int | None, quick: bool
) -> list[str]:
    """Edit a preset's parsed TOML ``values`` for ``question``; returns the words it adds to
    the study's name. ``num_train``: training examples (for the default reference batch size;
    needed only when batch sizes are asked without a reference)."""
    study, factors = values.setdefault("study", {}), values.setdefault("factors", {})
    words = []
    if question.norms is not None:
        factors["norm"] = list(question.norms)
        words.append(", ".join(question.norms))
    if question.batch_sizes is not None:
        reference = question.reference_batch_size
        if reference is None:
            assert num_train is not None
            reference = reference_batch_size(num_train)
        sizes = sorted({*question.batch_sizes, reference})
        factors["batch_size"] = sizes
        asked = ", ".join(map(str, question.batch_sizes))
        words.append(f"batch size {asked} (reference {reference})")
    elif question.reference_batch_size is not None:
        raise NormlabError("--reference-batch-size: give --batch-size too (the sizes it frames)")
    if question.adaptive:
        study.pop("seeds", None)  # the adaptive protocol's seeds come in rounds
        study["protocol"] = "adaptive"
        if quick:
            study.update(QUICK_ADAPTIVE)
        if question.budget is not None:  # not in the name: the name is part of the study's id
            study["budget"] = question.budget
    return words
