"""``normlab bench``: packed vs plain vs compiled training throughput on this machine; with
``--model REF`` any model's throughput alone and packed (``bench_model.py``)."""

from __future__ import annotations

import json

import click

from normlab.train.bench import BenchRow, run_bench
from normlab.train.device import DEVICES

from .bench_model import DEFAULT_PACK_SIZES, DEFAULT_STEPS, run_model_bench


def _integers(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise click.BadParameter(f"expected positive integers, got {text!r}")
    return values


def _line(row: BenchRow) -> str:
    def optional(value: float | None, form: str) -> str:
        return "-" if value is None else format(value, form)

    cells = [
        row.norm,
        str(row.batch_size),
        str(row.pack_size),
        f"{row.plain_ips:,.0f}",
        optional(row.compiled_ips, ",.0f"),
        f"{row.packed_ips:,.0f}",
        f"{row.ratio:.1f}",
        optional(row.ratio_compiled, ".1f"),
        f"{row.packed_gflops:.1f} ({100 * row.packed_peak_fraction:.0f}%)",
    ]
    return "| " + " | ".join(cells) + " |"


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of rows instead.")
@click.option(
    "--model",
    default=None,
    metavar="REF",
    help="Bench this model instead of the write-up's ResNet: a built-in name (normlab list "
    "models), 'pkg.module:factory', 'path/to/file.py:factory' or a registered name. Prints "
    "images/s alone and packed at each K, the ratio, the best K and the K the study's pack "
    "size rule would choose.",
)
@click.option(
    "--data",
    default="shapes",
    show_default=True,
    help="With --model: the data (a built-in name or a path, as --data of normlab run).",
)
@click.option("--norm", default="bn", show_default=True, help="With --model: the norm.")
@click.option(
    "--device",
    type=click.Choice(DEVICES),
    default="cpu",
    show_default=True,
    help="With --model: where to train. On CUDA TF32 is off unless NORMLAB_TF32=1.",
)
@click.option(
    "--steps",
    default=None,
    type=click.IntRange(min=1),
    help=f"Timed steps per measurement [default: 60; with --model {DEFAULT_STEPS}].",
)
@click.option("--threads", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--norms", default="bn,gn,ln", show_default=True, help="Without --model.")
@click.option("--batch-sizes", default="2,8,32,128", show_default=True)
@click.option(
    "--pack-sizes",
    default=None,
    help=f"[default: 15,64; with --model {','.join(map(str, DEFAULT_PACK_SIZES))}]",
)
@click.option(
    "--compile/--no-compile",
    "compiled",
    default=True,
    show_default=True,
    help="Without --model: also time the loop under torch.compile.",
)
def bench(
    as_json: bool,
    model: str | None,
    data: str,
    norm: str,
    device: str,
    steps: int | None,
    threads: int,
    norms: str,
    batch_sizes: str,
    pack_sizes: str | None,
    compiled: bool,
) -> None:
    """Train the same runs packed and one by one in this process. Without --model: the
    write-up's ResNet on digits (plain loop, torch.compile'd loop, packed engine), images/s,
    ratios and GFLOP/s vs the measured matmul peak. With --model: that model's step alone and
    packed at each pack size, timed as a study's calibration times it."""
    if model is not None:
        run_model_bench(
            model,
            data,
            norm,
            _integers(batch_sizes),
            _integers(pack_sizes) if pack_sizes else None,
            steps,
            threads,
            device,
            as_json,
        )
        return
    steps = steps or 60
    norm_list = [name.strip() for name in norms.split(",") if name.strip()]
    if not as_json:
        click.echo(f"{steps} steps per run, {threads} torch thread(s); digits, default ResNet")
        click.echo(
            "| norm | batch | pack | plain img/s | compiled img/s | packed img/s | packed/plain "
            "| packed/compiled | packed GFLOP/s (of peak) |"
        )
        click.echo("|---|---|---|---|---|---|---|---|---|")
    rows = run_bench(
        norm_list,
        _integers(batch_sizes),
        _integers(pack_sizes or "15,64"),
        steps,
        threads,
        compiled,
        on_row=None if as_json else lambda row: click.echo(_line(row)),
    )
    if as_json:
        click.echo(json.dumps([row.to_dict() for row in rows], indent=2))
    else:
        peaks = sorted(row.peak_gflops for row in rows)
        click.echo(
            f"fp32 matmul peak measured before each row: {peaks[0]:.1f} to {peaks[-1]:.1f} GFLOP/s"
        )
