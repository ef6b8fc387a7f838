"""The options of ``normlab run`` that ask one user's question: batch sizes, norms, budget.

They become a :class:`normlab.study.question.Question` (checked and applied to the bundled
preset in :mod:`normlab.study.question`); ``--batch-size`` or ``--budget`` switch the study to
the adaptive protocol (docs/PROTOCOL.md). Kept apart from ``cli.py`` so that each reads whole.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from normlab.study.question import (
    REFERENCE_CAP,
    REFERENCE_STEPS,
    Question,
    parse_budget,
    parse_norms,
    parse_sizes,
)

QUESTION_OPTIONS = ("batch_size", "reference_batch_size", "norms", "budget")
"""The options' parameter names, in :func:`question_from`'s order."""


def question_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--batch-size``, ``--reference-batch-size``, ``--norms``, ``--budget``."""
    command = click.option(
        "--budget",
        default=None,
        metavar="DURATION",
        help="Cap the whole study's wall time (all invocations): 45s, 30m, 2h, 1h30m. Uses the "
        "adaptive protocol; a round predicted to overrun is not started, and a budget too "
        "small for the lr search and round 1 is refused before training, naming the smallest "
        "that would do. The same command with a larger budget continues the rounds.",
    )(command)
    command = click.option(
        "--norms",
        default=None,
        metavar="LIST",
        help="Norms to compare, the first the baseline: e.g. bn,gn,ln (default: bn, none, ln, "
        "gn). The word 'remedies' adds every norm that keeps BN (gbn, brn, mabn, cbn, "
        "cbn_naive, evalnorm), with bn first if not listed.",
    )(command)
    command = click.option(
        "--reference-batch-size",
        type=click.IntRange(min=1),
        default=None,
        metavar="N",
        help=f"The large batch size the asked ones are set beside (default: the largest power "
        f"of two <= {REFERENCE_CAP} that leaves {REFERENCE_STEPS} or more steps per epoch of "
        "the training split), so that the report shows whether a deficit is a small-batch "
        "effect.",
    )(command)
    command = click.option(
        "--batch-size",
        "batch_size",
        default=None,
        metavar="B[,B...]",
        help="Compare the norms at these batch sizes (4, or 2,8) plus the reference batch "
        "size, with the adaptive protocol: lr tuned on tuning seeds, evaluation seeds in "
        "rounds until each comparison is resolved, max_seeds (20) or the budget.",
    )(command)
    return command


def question_from(
    batch_size: str | None,
    reference_batch_size: int | None,
    norms: str | None,
    budget: str | None,
) -> Question:
    """The :class:`Question` of the options as given (errors name the option)."""
    return Question(
        batch_sizes=parse_sizes(batch_size, "--batch-size") if batch_size is not None else None,
        reference_batch_size=reference_batch_size,
        norms=parse_norms(norms) if norms is not None else None,
        budget=parse_budget(budget) if budget is not None else None,
    )
