"""``normlab doctor`` and ``normlab diagnose`` end to end through the CLI, on the small models of
``doctor_models.py``: each planted problem is found, the healthy model gets no findings,
``--json`` parses, ``--fix`` writes a loadable patched copy and leaves the input unchanged."""

from __future__ import annotations

import importlib
import json
import re
import shlex
from pathlib import Path

import click
import pytest
import torch

from normlab.cli import main
from normlab.commands.doctor import doctor as doctor_command
from normlab.data import load_dataset
from normlab.surgery import recalibrate_bn
from normlab.train.evaluate import chunks
from normlab.train.model_ref import resolve_factory

MODELS = Path(__file__).with_name("doctor_models.py")


def ref(factory: str) -> str:
    return f"{MODELS}:{factory}"


def trained(factory, batch_size: int = 32, steps: int = 60, calibrate: bool = True):
    """The factory's model trained briefly on digits (SGD, in order), statistics made exact."""
    data = load_dataset("digits")
    x, y = data.x_train, data.y_train
    torch.manual_seed(0)
    model = factory(data.num_classes, data.in_channels)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()
    for step in range(steps):
        start = (step * batch_size) % (len(x) - batch_size + 1)
        batch = slice(start, start + batch_size)
        loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if calibrate:
        recalibrate_bn(model, (x[a:b] for a, b in chunks(len(x), batch_size)))
    return model.eval()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("checkpoints")
    healthy = trained(resolve_factory(ref("healthy")))
    stale = {
        k: (torch.zeros_like(v) if k.endswith("running_mean") else torch.ones_like(v))
        if "running" in k
        else v
        for k, v in healthy.state_dict().items()
    }
    states = {
        "healthy": healthy.state_dict(),
        "stale": stale,
        "dropout": trained(resolve_factory(ref("dropout_before_bn"))).state_dict(),
    }
    paths = {}
    for name, state in states.items():
        paths[name] = folder / f"{name}.pt"
        torch.save(state, paths[name])
    return paths


def doctor(capsys, *args: str) -> tuple[int, dict]:
    code = main(["doctor", "--json", *args])
    out = capsys.readouterr().out
    return code, json.loads(out) if code == 0 else {}


def codes(report: dict) -> set[str]:
    return {finding["code"] for finding in report["findings"]}


DOCTOR_OPTIONS = {
    name for param in doctor_command.params for name in param.opts + param.secondary_opts
}


def assert_hint_runs(hint: str) -> None:
    """What a fix text names exists as printed: each --option is one of the doctor's, each
    ``doctor --...`` is a whole command the CLI parser accepts, each normlab.name resolves."""
    for option in re.findall(r"(?<![\w-])--[a-z][a-z-]*", hint):
        assert option in DOCTOR_OPTIONS, (option, hint)
    for fragment in re.findall(r"\bdoctor (--[^,;)]*)", hint):
        doctor_command.make_context("doctor", shlex.split(fragment))  # raises if rejected
    for name in re.findall(r"\bnormlab(?:\.\w+)+", hint):
        module, *attributes = name.split(".")
        target = importlib.import_module(module)
        for attribute in attributes:
            target = getattr(target, attribute, None) or importlib.import_module(
                f"{target.__name__}.{attribute}"
            )


def test_healthy_model_has_no_findings(capsys, checkpoints):
    healthy = str(checkpoints["healthy"])
    code = main(
        ["doctor", "--model", ref("healthy"), "--batch-size", "32", "--checkpoint", healthy]
    )
    assert code == 0
    assert capsys.readouterr().out.strip() == "no findings"


@pytest.mark.parametrize(
    ("factory", "checkpoint", "options", "expected"),
    [
        (
            "healthy",
            "healthy",
            ["--batch-size", "8", "--grad-accumulation", "4"],
            "grad-accumulation-bn",
        ),
        (
            "healthy",
            "healthy",
            ["--batch-size", "32", "--weight-decay", "5e-4"],
            "weight-decay-on-norm",
        ),
        ("healthy", "stale", ["--batch-size", "32"], "eval-train-gap"),
        ("slow_statistics", "healthy", ["--batch-size", "32"], "ema-horizon"),
        ("frozen_but_updating", "healthy", ["--batch-size", "32"], "frozen-bn-updating"),
        ("sync_batch_norm", "healthy", ["--batch-size", "32"], "sync-bn-inactive"),
        ("dropout_before_bn", "dropout", ["--batch-size", "32"], "dropout-before-bn"),
        ("pooled_bn", None, ["--batch-size", "4"], "bn-batch-noise"),
        ("pooled_bn", None, ["--batch-size", "4"], "batch-one-failure"),
    ],
)
def test_each_planted_problem_is_found(capsys, checkpoints, factory, checkpoint, options, expected):
    given = ["--checkpoint", str(checkpoints[checkpoint])] if checkpoint else []
    code, report = doctor(capsys, "--model", ref(factory), *options, *given)
    assert code == 0
    assert expected in codes(report)
    finding = next(f for f in report["findings"] if f["code"] == expected)
    assert finding["evidence"] and finding["fix"]
    for each in report["findings"]:
        assert_hint_runs(each["fix"])
    if report["fix_command"] is not None:  # the command that applies the mechanical fixes
        argv = shlex.split(report["fix_command"])
        assert argv[:2] == ["normlab", "doctor"] and argv[-1] == "--fix"
        doctor_command.make_context("doctor", argv[2:])
    if checkpoint == "healthy" and factory == "healthy":
        # The set-up problem alone, nothing templated; at a per-step batch below 16 BN's batch
        # noise is above the threshold too (in between-example units, issue 23).
        below_16 = {"bn-batch-noise"} if int(options[1]) < 16 else set()
        assert codes(report) == {expected} | below_16


def test_fix_writes_a_patched_copy(capsys, checkpoints, tmp_path):
    source = checkpoints["stale"]
    before = source.read_bytes()
    output = tmp_path / "fixed.pt"
    args = ["--model", ref("healthy"), "--batch-size", "32", "--checkpoint", str(source)]
    code, report = doctor(capsys, *args, "--fix", "--fix-output", str(output))
    assert code == 0 and report["fixes"] == ["precise_bn"]
    assert report["fixed_checkpoint"] == str(output)
    assert source.read_bytes() == before  # the input is unchanged
    state = torch.load(output, weights_only=True)
    assert not torch.equal(state["1.running_var"], torch.ones(8))
    code, again = doctor(
        capsys, "--model", ref("healthy"), "--batch-size", "32", "--checkpoint", str(output)
    )
    assert code == 0 and "eval-train-gap" not in codes(again)
    # An existing output is refused, one line, exit code 2.
    assert main(["doctor", *args, "--fix", "--fix-output", str(output)]) == 2
    assert "exists; refusing to overwrite" in capsys.readouterr().err


def test_the_hint_check_rejects_a_command_the_cli_rejects():
    # The hint the doctor printed before: the parser rejects it (extra argument, no --model).
    with pytest.raises(click.UsageError):
        assert_hint_runs("recalibrate (doctor --fix precise_bn, or normlab.recalibrate_bn)")
    with pytest.raises(AssertionError):
        assert_hint_runs("use --fix-it")
    assert_hint_runs("the doctor's --fix on the checkpoint, or normlab.surgery.freeze_bn")


def test_the_printed_fix_command_runs_as_printed(capsys, checkpoints, tmp_path):
    # Before: the findings said "doctor --fix precise_bn", which the CLI rejects.
    source = tmp_path / "stale weights.pt"  # a space: the command must be quoted
    source.write_bytes(checkpoints["stale"].read_bytes())
    args = ["doctor", "--model", ref("healthy"), "--batch-size", "32", "--checkpoint", str(source)]
    assert main(args) == 0
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if "run: normlab doctor" in line]
    argv = shlex.split(line.split("run: ", 1)[1])
    assert argv[0] == "normlab"
    assert main(argv[1:]) == 0
    assert "fixed (precise_bn)" in capsys.readouterr().out
    assert (tmp_path / "stale weights.fixed.pt").is_file()


def test_fix_freezes_frozen_layers(capsys, checkpoints, tmp_path):
    output = tmp_path / "frozen.pt"
    args = ["--model", ref("frozen_but_updating"), "--batch-size", "32"]
    args += ["--checkpoint", str(checkpoints["healthy"]), "--fix", "--fix-output", str(output)]
    code, report = doctor(capsys, *args)
    assert code == 0 and report["fixes"] == ["freeze_bn"]
    state = torch.load(output, weights_only=True)
    assert "1.running_mean" in state and "1.weight" in state


def test_errors_are_one_line_with_exit_code_2(capsys, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_text("not weights")
    odd = tmp_path / "odd.pt"
    torch.save({1: torch.zeros(2)}, odd)  # loads with weights_only, not a state dict
    dangling = tmp_path / "link.pt"
    dangling.symlink_to(tmp_path / "elsewhere.pt")
    cases = [
        ["--model", ref("healthy"), "--batch-size", "4", "--checkpoint", str(odd)],
        ["--model", ref("healthy"), "--batch-size", "4", "--checkpoint", str(bad), "--fix"]
        + ["--fix-output", str(dangling)],
        ["--model", ref("healthy"), "--batch-size", "0"],
        ["--model", ref("nope"), "--batch-size", "4"],
        ["--model", ref("healthy"), "--batch-size", "4", "--fix"],
        ["--model", ref("healthy"), "--batch-size", "4", "--checkpoint", str(bad)],
        ["--model", ref("healthy"), "--batch-size", "4", "--data", str(tmp_path / "none")],
    ]
    for args in cases:
        assert main(["doctor", *args]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("normlab: error:") and err.count("\n") == 1, err
    assert not (tmp_path / "elsewhere.pt").exists()  # nothing written through the link


def test_diagnose_json_on_a_checkpoint(capsys, checkpoints, tmp_path):
    args = ["diagnose", "--model", ref("dropout_before_bn"), "--checkpoint"]
    args += [
        str(checkpoints["dropout"]),
        "--batch-sizes",
        "4,8,16,32",
        "--json",
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert json.loads((tmp_path / "diagnose.json").read_text()) == report
    noise = report["noise"]
    assert noise["batch_sizes"] == [4, 8, 16, 32]
    assert all(isinstance(layer["slope"], float) for layer in noise["layers"])
    assert -0.8 < noise["mean_slope"] < -0.2  # theory -0.5
    assert {"running_acc", "precise_acc", "batch_acc", "precise_seconds"} <= set(report["gap"])
    (shifted,) = report["variance_shift"]["layers"]
    assert shifted["keep_probability"] == 0.5 and shifted["ratio"] < 0.9


def test_diagnose_trains_one_short_run(capsys, tmp_path):
    args = ["diagnose", "--model", ref("healthy"), "--batch-sizes", "16,32", "--epochs", "1"]
    assert main([*args, "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "trained: done" in text and "noise: error of the batch mean" in text
    assert "slope check" in text and "stability:" in text
    assert "stability: instability " in text and "windows of 8 steps" in text  # 67 steps: 8 x 8
    report = json.loads((tmp_path / "diagnose.json").read_text())
    assert report["run"]["steps"] == 1078 // 16
    assert report["stability"]["collapsed"] is False
    torch.load(tmp_path / "weights.pt", weights_only=True)
