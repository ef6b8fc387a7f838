"""``normlab list``: the registered norms, models and datasets."""

from __future__ import annotations

import click

from normlab.data import DATASETS
from normlab.models import describe_models
from normlab.norms import norm_entry, norm_names


@click.command(name="list")
@click.argument("what", type=click.Choice(["norms", "models", "datasets"]))
def list_(what: str) -> None:
    """List the available norms, models or datasets, one per line."""
    if what == "norms":
        for name in norm_names():
            click.echo(f"{name:<12} {norm_entry(name).citation}")
    elif what == "models":
        click.echo(f"{'name':<16} {'input':<8} {'params (bn, 10 classes)':>24}  description")
        for name, input_shape, parameters, description in describe_models():
            click.echo(f"{name:<16} {input_shape:<8} {parameters:>24,}  {description}")
    else:
        for name, (_, description) in DATASETS.items():
            click.echo(f"{name:<16} {description}")
