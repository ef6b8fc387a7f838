"""``normlab doctor``: inspect a user's model for normalization problems, with evidence.

The model is built as its factory builds it (``norm=None``), the checkpoint (if any) loaded with
``weights_only=True``, and :func:`normlab.diagnostics.examine` runs on a fixed random sample of
the data's training split (:data:`SAMPLE_EXAMPLES`), with batches drawn as ``--sampler`` and
``--classes-per-batch`` say training drew them. Each finding carries its measurement and a concrete
fix; a healthy model gets "no findings".

``--fix`` writes a patched copy of the checkpoint where the fix is mechanical
(:data:`MECHANICAL_FIXES`: PreciseBN recalibration for stale or shifted running statistics,
``freeze_bn`` for BN layers whose parameters are frozen but whose statistics still move), to
``--fix-output`` or ``<checkpoint>.fixed.pt``; the input is never overwritten, nor is any
existing file. Without ``--fix``, the doctor prints the command that applies them (the same
command plus ``--fix``; ``fix_command`` in the JSON).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import click
import torch

from normlab.data import SAMPLERS, evaluation_permutation
from normlab.diagnostics import (
    Finding,
    WeightDecaySetting,
    examine,
    fix_checkpoint,
    format_findings,
)
from normlab.errors import NormlabError
from normlab.train import build_model_from_ref
from normlab.train.model_fit import check_model_fits

from .inputs import data_from, load_checkpoint, load_into, model_ref_from, to_json

SAMPLE_EXAMPLES = 512
"""Training examples the checks measure on (a fixed random subset, not the first ones, which
can be a few classes of a class-sorted source): enough for the noise at B x N up to 128 to be
measured rather than extrapolated (4 x B x N examples), few enough to stay well under a
minute."""
MECHANICAL_FIXES = {
    "frozen-bn-updating": "freeze_bn",
    "eval-train-gap": "precise_bn",
    "ema-horizon": "precise_bn",
    "dropout-before-bn": "precise_bn",
}
"""Finding code -> the fix ``fix_checkpoint`` applies; freeze_bn first (it keeps the statistics
as they are, so recalibrating after it would do nothing)."""


def fixes_for(findings: list[Finding]) -> list[str]:
    """The mechanical fixes the findings call for, in the order they are applied."""
    kinds = {MECHANICAL_FIXES[f.code] for f in findings if f.code in MECHANICAL_FIXES}
    return [kind for kind in ("freeze_bn", "precise_bn") if kind in kinds]


def fix_command(
    model_ref: str,
    data: str,
    batch_size: int,
    checkpoint: str,
    grad_accumulation: int = 1,
    weight_decay: float | None = None,
    norm_weight_decay: bool = True,
) -> str:
    """The ``normlab doctor`` command that applies the mechanical fixes to ``checkpoint``: the
    same inspection plus ``--fix``, quoted for a POSIX shell so that it runs as printed."""
    argv = ["normlab", "doctor", "--model", model_ref, "--data", data]
    argv += ["--batch-size", str(batch_size)]
    if grad_accumulation != 1:
        argv += ["--grad-accumulation", str(grad_accumulation)]
    if weight_decay is not None:
        argv += ["--weight-decay", str(weight_decay)]
        if not norm_weight_decay:
            argv.append("--no-norm-weight-decay")
    return shlex.join([*argv, "--checkpoint", checkpoint, "--fix"])


@click.command()
@click.option(
    "--model",
    "model_ref",
    required=True,
    help="pkg.module:factory, file.py:factory (a torch module or a Keras model) or a built-in name.",
)
@click.option("--data", default="digits", show_default=True, help="Dataset name or path.")
@click.option("--batch-size", required=True, type=int, help="Per-step training batch size.")
@click.option(
    "--checkpoint",
    default=None,
    type=click.Path(dir_okay=False),
    help="Trained weights (state dict, loaded with weights_only=True).",
)
@click.option(
    "--grad-accumulation",
    default=1,
    show_default=True,
    type=int,
    help="Steps whose gradients are accumulated per optimizer step.",
)
@click.option(
    "--weight-decay",
    default=None,
    type=float,
    help="Weight decay of the training set-up (checks whether it reaches BN scales).",
)
@click.option(
    "--norm-weight-decay/--no-norm-weight-decay",
    default=True,
    show_default=True,
    help="Whether that weight decay also applies to norm scales/shifts.",
)
@click.option(
    "--sampler",
    default="shuffle",
    show_default=True,
    type=click.Choice(SAMPLERS),
    help="How training drew its mini-batches; the checks draw theirs the same way.",
)
@click.option(
    "--classes-per-batch",
    default=None,
    type=click.IntRange(min=1),
    help="Training batches held examples of exactly this many classes (with shuffle).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.option(
    "--fix", is_flag=True, help="Write a patched copy of --checkpoint (mechanical fixes)."
)
@click.option(
    "--fix-output",
    default=None,
    type=click.Path(dir_okay=False),
    help="Where --fix writes (default: CHECKPOINT.fixed.pt); never an existing file.",
)
def doctor(
    model_ref: str,
    data: str,
    batch_size: int,
    checkpoint: str | None,
    grad_accumulation: int,
    weight_decay: float | None,
    norm_weight_decay: bool,
    sampler: str,
    classes_per_batch: int | None,
    as_json: bool,
    fix: bool,
    fix_output: str | None,
) -> None:
    """Lint a model's normalization: findings with their measurement and a concrete fix."""
    if batch_size < 1:
        raise NormlabError(f"--batch-size must be >= 1, got {batch_size}")
    if grad_accumulation < 1:
        raise NormlabError(f"--grad-accumulation must be >= 1, got {grad_accumulation}")
    if fix and checkpoint is None:
        raise NormlabError("--fix patches a copy of --checkpoint: give the checkpoint")
    output = _fix_output(checkpoint, fix_output) if fix else None
    dataset = data_from(data)
    ref = model_ref_from(model_ref)
    torch.manual_seed(0)
    model = build_model_from_ref(
        ref,
        num_classes=dataset.num_classes,
        in_channels=dataset.in_channels,
        input_shape=dataset.input_shape,
        norm=None,
    )
    check_model_fits(model, dataset, model_ref)
    if checkpoint is not None:
        model = load_into(model, load_checkpoint(checkpoint), checkpoint)
    # A random sample: the first examples of a class-sorted source are a few classes.
    sample = evaluation_permutation(len(dataset.y_train))[:SAMPLE_EXAMPLES]
    x, y = dataset.x_train[sample], dataset.y_train[sample]
    setting = None
    if weight_decay is not None:
        setting = WeightDecaySetting(weight_decay, norm_weight_decay)
    findings = examine(
        model,
        x,
        y,
        batch_size,
        grad_accumulation=grad_accumulation,
        weight_decay_config=setting,
        num_train_examples=len(dataset.y_train),
        sampler=sampler,
        classes_per_batch=classes_per_batch,
    )
    applied = fixes_for(findings) if fix else []
    command = None
    if checkpoint is not None and fixes_for(findings) and not fix:
        command = fix_command(
            model_ref,
            data,
            batch_size,
            checkpoint,
            grad_accumulation,
            weight_decay,
            norm_weight_decay,
        )
    if output is not None and applied:
        patched = model
        for kind in applied:
            patched = fix_checkpoint(patched, x, kind, batch_size=max(batch_size, 2))
        torch.save(patched.state_dict(), output)
    if as_json:
        report = {
            "model": model_ref,
            "batch_size": batch_size,
            "findings": [finding.to_dict() for finding in findings],
            "fixes": applied,
            "fixed_checkpoint": str(output) if output is not None and applied else None,
            "fix_command": command,
        }
        click.echo(to_json(report))
        return
    click.echo(format_findings(findings))
    kinds = ", ".join(fixes_for(findings))
    if command is not None:
        click.echo(f"to write a fixed copy of the checkpoint ({kinds}), run: {command}")
    elif kinds and not fix:
        click.echo(
            f"{kinds} can be applied mechanically to trained weights: give them with "
            "--checkpoint, and --fix writes a fixed copy"
        )
    if fix:
        if applied:
            click.echo(f"fixed ({', '.join(applied)}): {output}")
        else:
            click.echo("nothing to fix mechanically: no checkpoint written")


def _fix_output(checkpoint: str | None, fix_output: str | None) -> Path:
    """Where ``--fix`` writes: never the input, never an existing file."""
    source = Path(str(checkpoint))
    output = Path(fix_output) if fix_output else source.with_name(source.stem + ".fixed.pt")
    if output.resolve() == source.resolve():
        raise NormlabError(f"--fix-output {output}: is the input checkpoint; name another file")
    if output.exists():
        raise NormlabError(f"--fix-output {output}: exists; refusing to overwrite it")
    if output.is_symlink():  # dangling: torch.save would create the file the link points to
        raise NormlabError(
            f"--fix-output {output}: is a symbolic link to {os.readlink(output)} that does not "
            "exist; refusing to write through it"
        )
    return output
