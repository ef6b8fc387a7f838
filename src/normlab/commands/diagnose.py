"""``normlab diagnose``: train one run (or load a checkpoint) and measure why BN helps or hurts.

Measurements (``normlab.diagnostics``), on the trained or loaded model and the data's fixed
training split:

- ``noise``: per BN layer, the error of mini-batch mean and variance against population
  statistics at each of ``--batch-sizes``, its spread, and the fitted log-log ``slope`` (theory
  -0.5 for the mean); ``mean_slope`` over layers;
- ``gap``: test accuracy with EMA running statistics, PreciseBN statistics (over at most
  ``PRECISE_MAX_EXAMPLES`` training examples) and batch statistics at the training batch size;
- ``variance_shift``: every BN with dropout upstream, Var_inference / Var_train of its input, and
  the accuracy it costs;
- ``stability`` (trained runs only): loss instability (the fraction of the run's loss windows
  whose mean rose more than 5 standard errors above the lowest before it), gradient norms,
  divergence, collapse.

Trained: one run of the default protocol's shape (depth 8, widths 16/32/64 for ``resnet``; SGD
momentum 0.9, weight decay 5e-4, cosine schedule; ``--epochs``, default 6) at the first batch
size, lr ``0.03 * sqrt(B / 32)`` (the default grid's centre, moved as the study moves it).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click
import torch

from normlab.data import Dataset
from normlab.diagnostics import batch_stat_noise, inference_gap, variance_shift
from normlab.diagnostics.layers import batch_norm_layers
from normlab.errors import NormlabError
from normlab.norms import norm_names
from normlab.study.diagnose import PRECISE_MAX_EXAMPLES, diagnose_run
from normlab.train import RunConfig, build_model, train_run
from normlab.train.model_fit import check_model_fits

from .inputs import data_from, load_checkpoint, load_into, model_ref_from, to_json

DEFAULT_BATCH_SIZES = "2,4,8,16,32,64,128,256"
CENTER_LR, CENTER_BATCH = 0.03, 32


def batch_sizes_from(text: str) -> tuple[int, ...]:
    """``--batch-sizes 2,4,8``: positive integers, the first one the training batch size."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise NormlabError(f"--batch-sizes {text}: expected integers separated by commas") from None
    if not sizes or min(sizes) < 2:
        raise NormlabError(f"--batch-sizes {text}: every batch size must be >= 2")
    return sizes


def run_config(model: str, data: str, norm: str, batch_size: int, epochs: int) -> RunConfig:
    """The one run ``diagnose`` trains (see the module docstring)."""
    lr = float(f"{CENTER_LR * math.sqrt(batch_size / CENTER_BATCH):.3g}")
    return RunConfig(
        dataset=data,
        model=model,
        norm=norm,
        batch_size=batch_size,
        lr=lr,
        epochs=epochs,
        momentum=0.9,
        weight_decay=5e-4,
        schedule="cosine",
    )


def measure(
    model: torch.nn.Module, dataset: Dataset, batch_size: int, batch_sizes: tuple[int, ...]
) -> dict[str, Any]:
    """The measurements of ``model`` (see the module docstring); BN-free models get none."""
    if not batch_norm_layers(model):
        return {"note": "no BatchNorm layer: batch statistics have nothing to measure"}
    x_train = dataset.x_train
    return {
        "noise": batch_stat_noise(model, x_train, batch_sizes).to_dict(),
        "gap": inference_gap(
            model, x_train[:PRECISE_MAX_EXAMPLES], dataset.x_test, dataset.y_test, batch_size
        ).to_dict(),
        "variance_shift": variance_shift(
            model, x_train, x_eval=dataset.x_test, y_eval=dataset.y_test, batch_size=batch_size
        ).to_dict(),
    }


def summary_lines(report: dict[str, Any]) -> list[str]:
    """A readable digest of ``report`` (the JSON has everything)."""
    lines = [
        f"{report['model']} ({report['norm']}) on {report['data']}, batch {report['batch_size']}"
    ]
    if "run" in report:
        run = report["run"]
        lines.append(
            f"trained: {run['status']}, test {run['test_acc']}, train loss {run['train_loss']}, "
            f"lr {run['lr']}, {run['steps']} steps, collapsed {run['collapsed']}"
        )
    if "note" in report:
        lines.append(report["note"])
    if "noise" in report:
        noise = report["noise"]
        lines.append(
            f"noise: mean slope {_num(noise['mean_slope'])} (theory -0.5) over sizes "
            f"{noise['batch_sizes']}"
        )
        for layer in noise["layers"]:
            errors = ", ".join(
                f"{b}: {e:.3f}"
                for b, e in zip(layer["batch_sizes"], layer["mean_error"], strict=True)
            )
            lines.append(f"  {layer['name']}: slope {_num(layer['slope'])}; mean error {errors}")
    if "gap" in report:
        gap = report["gap"]
        lines.append(
            f"gap: EMA {gap['running_acc']:.4f}, PreciseBN {gap['precise_acc']:.4f}, batch "
            f"statistics {gap['batch_acc']:.4f} (PreciseBN pass {gap['precise_seconds']:.2f} s "
            f"over {gap['precise_examples']} examples)"
        )
    if "variance_shift" in report:
        shift = report["variance_shift"]
        layers = shift["layers"]
        lines.append(f"variance shift: {len(layers)} BN layer(s) with dropout upstream")
        for layer in layers:
            lines.append(
                f"  {layer['name']} after {layer['dropout']} (keep "
                f"{layer['keep_probability']:.2f}): ratio {layer['ratio']:.3f}"
            )
    if "stability" in report:
        s = report["stability"]
        lines.append(
            f"stability: {_instability(s)}, grad norm mean {_num(s['grad_norm_mean'])} "
            f"variance {_num(s['grad_norm_variance'])}, diverged at {s['diverged_at']}, "
            f"collapsed {s['collapsed']}"
        )
    return lines


def _instability(stability: dict[str, Any]) -> str:
    """``instability 0.00 (loss never rose beyond its noise; windows of 107 steps)``."""
    fraction = stability["instability"]
    if fraction is None:
        return "instability - (run too short for two loss windows)"
    if not stability["excursion_steps"]:
        where = "loss never rose beyond its noise"
    else:
        steps = ", ".join(str(step) for step in stability["excursion_steps"])
        where = f"loss rose beyond its noise from step {steps}; largest rise {_num(stability['max_rise'])} SE"
    return f"instability {fraction:.2f} ({where}; windows of {stability['window_steps']} steps)"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


@click.command()
@click.option(
    "--model",
    "model_ref",
    default="resnet",
    show_default=True,
    help="Built-in name, pkg.module:factory or file.py:factory.",
)
@click.option("--data", default="digits", show_default=True, help="Dataset name or path.")
@click.option("--norm", default="bn", show_default=True, help="Normalization to train with.")
@click.option(
    "--batch-sizes",
    default=DEFAULT_BATCH_SIZES,
    show_default=True,
    help="Batch sizes of the noise measurement; the first one trains.",
)
@click.option(
    "--checkpoint",
    default=None,
    type=click.Path(dir_okay=False),
    help="Load these weights (state dict, weights_only) instead of training.",
)
@click.option(
    "--epochs",
    default=6,
    show_default=True,
    type=click.IntRange(min=1),
    help="Epochs of the run trained when no checkpoint is given.",
)
@click.option(
    "--out",
    "out_dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Write diagnose.json (and the trained weights, weights.pt) here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the measurements as JSON.")
def diagnose(
    model_ref: str,
    data: str,
    norm: str,
    batch_sizes: str,
    checkpoint: str | None,
    epochs: int,
    out_dir: str | None,
    as_json: bool,
) -> None:
    """Train one run (or load --checkpoint) and measure batch-statistic noise, the
    inference-statistics gap, dropout variance shift and stability."""
    sizes = batch_sizes_from(batch_sizes)
    if norm not in norm_names():
        raise NormlabError(f"--norm {norm}: unknown; valid: {', '.join(norm_names())}")
    dataset = data_from(data)
    ref = model_ref_from(model_ref)
    config = run_config(ref, data, norm, sizes[0], epochs)
    report: dict[str, Any] = {
        "model": model_ref,
        "data": data,
        "norm": norm,
        "batch_size": sizes[0],
    }
    torch.manual_seed(0)
    model = build_model(config, dataset)
    check_model_fits(model, dataset, model_ref)  # one line, not a traceback from training
    if checkpoint is not None:
        model = load_into(model, load_checkpoint(checkpoint), checkpoint)
        report["checkpoint"] = checkpoint
    else:
        kept: dict[str, Any] = {}

        def keep(config, model, dataset, trace):
            kept["model"] = model
            return diagnose_run(config, model, dataset, trace, kinds=("stability",))

        weights = Path(out_dir) / "weights.pt" if out_dir else None
        if weights is not None:
            weights.parent.mkdir(parents=True, exist_ok=True)
        result = train_run(config, dataset, weights_path=weights, after_training=keep)
        model = kept["model"]
        report["run"] = {
            "status": result.status,
            "test_acc": result.test_acc,
            "train_loss": result.train_loss,
            "lr": config.lr,
            "steps": result.steps,
            "collapsed": result.collapsed,
            "error": result.error,
        }
        report.update(result.diagnostics)
        if result.status != "done":
            return _emit(report, out_dir, as_json)
    report.update(measure(model, dataset, sizes[0], sizes))
    _emit(report, out_dir, as_json)


def _emit(report: dict[str, Any], out_dir: str | None, as_json: bool) -> None:
    text = to_json(report)
    if out_dir:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "diagnose.json").write_text(text + "\n")
    click.echo(text if as_json else "\n".join(summary_lines(report)))
