"""Study specs: parsing into dataclasses, and every validation error naming its key and line.

Each bad spec marks the line the error must point at with ``# <-``; the test asserts the exact
``FILE:LINE: KEY: message`` prefix.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from normlab.errors import NormlabError
from normlab.study import LrProtocol, load_spec, preset_path, spec_from_dict
from normlab.study.plan import check_study

EXAMPLES = Path(__file__).parents[2] / "examples"

STUDY = """\
[study]
name = "tiny"
seeds = [0, 1]
"""

RUN = """\
[run]
dataset = "synthetic"
dataset_options = { num_examples = 200 }
depth = 8
widths = [4, 4, 4]
epochs = 1
"""

FULL = (
    STUDY
    + RUN
    + """
[run.norm_options.gn]
eps = 1e-3

[factors]
norm = ["bn", "gn", "none"]
batch_size = [8, 16]
weight_decay = [0, 5e-4]

[factors.norm_options.gn]
groups = [1, 2]

[factors.norm_options.bn]
momentum = [0.1, 0.01]

[lr]
mode = "tuned"
grid = [0.01, 0.1]
grid_scaling = "none"

[[exclude]]
norm = "gn"
batch_size = 16
norm_options.gn.groups = 2
"""
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


def marked_line(text: str) -> int:
    lines = [number for number, line in enumerate(text.splitlines(), 1) if "# <-" in line]
    assert len(lines) == 1, "mark exactly one line with # <-"
    return lines[0]


# -- parsing --------------------------------------------------------------------------------


def test_full_spec_parses_into_dataclasses(tmp_path):
    spec = load_spec(write(tmp_path, FULL))
    assert spec.name == "tiny" and spec.seeds == (0, 1)
    assert spec.base.dataset == "synthetic" and spec.base.widths == (4, 4, 4)
    assert spec.base.dataset_options == {"num_examples": 200}
    assert spec.norm_options == {"gn": {"eps": 1e-3}}
    assert list(spec.factors) == [
        "norm",
        "batch_size",
        "weight_decay",
        "norm_options.gn.groups",
        "norm_options.bn.momentum",
    ]
    assert spec.factors["weight_decay"] == (0.0, 5e-4)
    assert isinstance(spec.factors["weight_decay"][0], float)  # 0 and 0.0: one run id
    assert spec.lr == LrProtocol(mode="tuned", grid=(0.01, 0.1), grid_scaling="none")
    assert spec.exclude == ({"norm": "gn", "batch_size": 16, "norm_options.gn.groups": 2},)
    json.dumps(spec.to_dict())  # the store keeps it as JSON


def test_study_id_is_the_content_not_the_file(tmp_path):
    first = load_spec(write(tmp_path, FULL))
    reformatted = FULL.replace("batch_size = [8, 16]", "batch_size = [\n  8,\n  16,\n]")
    assert load_spec(write(tmp_path, reformatted)).study_id == first.study_id
    changed = FULL.replace("seeds = [0, 1]", "seeds = [0, 2]")
    assert load_spec(write(tmp_path, changed)).study_id != first.study_id


def test_seed_count_and_defaults():
    spec = spec_from_dict({"study": {"seeds": 4}})
    assert spec.seeds == (0, 1, 2, 3)
    assert spec.name == "spec" and spec.factors == {} and spec.lr == LrProtocol()


@pytest.mark.parametrize("name", ["default", "quick"])
def test_presets_load(name):
    assert load_spec(preset_path(name)).factors["norm"] == ("bn", "none", "ln", "gn")


def test_examples_default_is_the_preset():
    assert (EXAMPLES / "default.toml").read_text() == preset_path("default").read_text()


# -- validation: every error names the file line and the key ---------------------------------

FACTORS = '[factors]\nnorm = ["bn", "gn"]\n'

CASES = {
    "unknown key": (
        RUN + "batchsize = 8  # <-\n",
        "run.batchsize: unknown key; did you mean 'batch_size'?",
    ),
    "unknown section": (RUN + "[factorz]  # <-\nnorm = ['bn']\n", "factorz: unknown section"),
    "wrong type": (
        RUN + 'batch_size = "eight"  # <-\n',
        "run.batch_size: expected an integer, got 'eight'",
    ),
    "wrong type in a multi-line level list": (
        RUN + '[factors]\nbatch_size = [\n  8,\n  "eight",  # <-\n]\n',
        "factors.batch_size[1]: expected an integer, got 'eight'",
    ),
    "wrong bool": (
        RUN + 'norm_weight_decay = "yes"  # <-\n',
        "run.norm_weight_decay: expected true or false",
    ),
    "wrong list": (
        RUN.replace("widths = [4, 4, 4]", 'widths = [4, "4"]  # <-'),
        "run.widths: expected a list of integers",
    ),
    "levels not a list": (
        RUN + "[factors]\nbatch_size = 8  # <-\n",
        "factors.batch_size: expected a non-empty list of levels, got 8",
    ),
    "empty factor": (
        RUN + "[factors]\nnorm = []  # <-\n",
        "factors.norm: expected a non-empty list of levels, got []",
    ),
    "repeated level": (
        RUN + '[factors]\nnorm = ["bn", "bn"]  # <-\n',
        "factors.norm[1]: repeats the level 'bn'",
    ),
    "unknown norm": (
        RUN + '[factors]\nnorm = ["bn", "bnn"]  # <-\n',
        "factors.norm[1]: unknown normalization 'bnn'",
    ),
    "unknown norm in [run]": (
        RUN + 'norm = "batchnorm"  # <-\n',
        "run.norm: unknown normalization 'batchnorm'",
    ),
    "unknown dataset": (
        RUN.replace('dataset = "synthetic"', 'dataset = "cifar"  # <-'),
        "run.dataset: 'cifar' is neither a dataset name (digits, synthetic, shapes) nor a path",
    ),
    "missing data file": (
        RUN.replace('dataset = "synthetic"', 'dataset = "/nowhere/cifar-10-python.tar.gz"  # <-'),
        "run.dataset: /nowhere/cifar-10-python.tar.gz: no such file or folder",
    ),
    "unknown model": (
        RUN + 'model = "resnet21"  # <-\n',
        "run.model: ",
    ),
    "fingerprint set by hand": (
        RUN + 'data_fingerprint = "abc"  # <-\n',
        "run.data_fingerprint: set by normlab from the content of the data files",
    ),
    "unknown optimizer level": (
        RUN + '[factors]\noptimizer = ["sgd", "lamb"]  # <-\n',
        "factors.optimizer[1]: 'lamb' is not one of: sgd, adamw",
    ),
    "dropout out of range": (
        RUN + "[factors]\ndropout = [0.5, 1.0]  # <-\n",
        "factors.dropout[1]: must be in [0, 1), got 1.0",
    ),
    "unknown sampler": (
        RUN + '[factors]\nsampler = ["sequential"]  # <-\n',
        "factors.sampler[0]: 'sequential' is not one of: shuffle, balanced",
    ),
    "unknown sampler in [run]": (
        RUN + 'sampler = "sequential"  # <-\n',
        "run.sampler: 'sequential' is not one of: shuffle, balanced",
    ),
    "bn_momentum out of range": (
        RUN + "[factors]\nbn_momentum = [0.1, 0]  # <-\n",
        "factors.bn_momentum[1]: must be in (0, 1], got 0.0",
    ),
    "bn_momentum of the wrong type": (
        RUN + 'bn_momentum = "fast"  # <-\n',
        "run.bn_momentum: expected a number, got 'fast'",
    ),
    "bn_momentum and a norm's momentum option": (
        RUN + "bn_momentum = 0.1  # <-\n" + FACTORS + "[run.norm_options.bn]\nmomentum = 0.01\n",
        "run.bn_momentum: momentum of 'bn' also set at run.norm_options.bn.momentum; set it once",
    ),
    "bn_momentum factor and a varied norm momentum option": (
        RUN
        + "[factors]\nbn_momentum = [0.1, 0.01]  # <-\n"
        + "[factors.norm_options]\nmomentum = [0.1]\n",
        "factors.bn_momentum[0]: momentum of 'bn' also set at factors.norm_options.momentum[0]; "
        "set it once",
    ),
    "gn groups do not divide the channels": (
        RUN + FACTORS + "[factors.norm_options.gn]\ngroups = [2, 3]  # <-\n",
        "factors.norm_options.gn.groups[1]: gn: groups=3 does not divide num_channels=4",
    ),
    "fixed gn groups do not divide the channels": (
        RUN + "[run.norm_options.gn]\ngroups = 3  # <-\n" + FACTORS,
        "run.norm_options.gn.groups: gn: groups=3 does not divide num_channels=4",
    ),
    "option the norm does not take": (
        RUN + '[factors]\nnorm = ["bn", "none"]\n[factors.norm_options.none]\neps = [1e-3]  # <-\n',
        "factors.norm_options.none.eps[0]: normalization 'none' does not take option",
    ),
    "option for every norm that one norm does not take": (
        RUN
        + '[factors]\nnorm = ["gn", "none"]\n[factors.norm_options]\neps = [1e-5, 1e-3]  # <-\n',
        "factors.norm_options.eps[0]: normalization 'none' does not take option",
    ),
    "batch size 1 with batch statistics": (
        RUN + FACTORS + "batch_size = [1, 8]  # <-\n",
        "factors.batch_size[0]: batch size 1 with norm 'bn', which computes batch statistics",
    ),
    "depth that does not fit the widths": (
        RUN.replace("depth = 8", "depth = 9  # <-"),
        "run.depth: resnet: depth=9",
    ),
    "seed of the wrong type": (
        STUDY.replace("seeds = [0, 1]", 'seeds = [0, "1"]  # <-'),
        "study.seeds[1]: expected an integer >= 0, got '1'",
    ),
    "lr set per run": (RUN + "lr = 0.1  # <-\n", "run.lr: set by the [lr] protocol"),
    "dataset as a factor": (
        RUN + '[factors]\ndataset = ["digits"]  # <-\n',
        "factors.dataset: one study has one dataset",
    ),
    "a factor also fixed": (
        RUN + "batch_size = 8  # <-\n[factors]\nbatch_size = [8, 16]\n",
        "run.batch_size: is also a factor (factors.batch_size)",
    ),
    "two budgets": (
        RUN + "steps = 10  # <-\n",
        "run.steps: set one budget: epochs (equal examples) or steps",
    ),
    "per-norm options of a norm not studied": (
        RUN + "[run.norm_options.gn]  # <-\ngroups = 2\n",
        "run.norm_options.gn: 'gn' is not a norm of this study (bn)",
    ),
    "per-norm options of an unknown norm": (
        RUN + "[factors.norm_options.gnn]  # <-\ngroups = [2]\n",
        "factors.norm_options.gnn: unknown normalization 'gnn'",
    ),
    "an option set twice": (
        RUN
        + "[run.norm_options.gn]\ngroups = 2\n"
        + FACTORS
        + "[factors.norm_options.gn]\ngroups = [1, 2]  # <-\n",
        "factors.norm_options.gn.groups: option of 'gn' also set at run.norm_options.gn.groups",
    ),
    "unknown lr mode": (
        '[lr]\nmode = "auto"  # <-\n',
        "lr.mode: 'auto' is not one of: tuned, scaled, fixed",
    ),
    "lr key of another mode": (
        '[lr]\nmode = "fixed"\nrule = "sqrt"  # <-\n',
        "lr.rule: not read by mode 'fixed'",
    ),
    "lr grid and generated grid": (
        "[lr]\ngrid = [0.1]\ncenter = 0.1  # <-\n",
        "lr.center: unused when lr.grid lists",
    ),
    "negative lr": (
        "[lr]\ngrid = [\n  0.1,\n  -1.0,  # <-\n]\n",
        "lr.grid[1]: grid values must be positive and distinct",
    ),
    "spacing": ("[lr]\nspacing = 1.0  # <-\n", "lr.spacing: must be > 1"),
    "exclusion of a non-factor": (
        RUN + FACTORS + "[[exclude]]\nmomentum = 0.9  # <-\n",
        "exclude[0].momentum: not a factor of this study (factors: norm)",
    ),
    "exclusion of a missing level": (
        RUN + FACTORS + '[[exclude]]\nnorm = "bn"\n[[exclude]]\nnorm = "ln"  # <-\n',
        "exclude[1].norm: 'ln' is not a level of factors.norm ('bn', 'gn')",
    ),
    "exclusion of everything": (
        RUN + FACTORS + '[[exclude]]  # <-\nnorm = "bn"\n[[exclude]]\nnorm = "gn"\n',
        "exclude: excludes every combination of factor levels",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_error_names_file_line_and_key(tmp_path, case):
    text, expected = CASES[case]
    if not text.startswith("[study]"):
        text = STUDY + text
    path = write(tmp_path, text)
    with pytest.raises(NormlabError) as error:
        load_spec(path)
    assert str(error.value).startswith(f"{path}:{marked_line(text)}: {expected}"), str(error.value)
    assert "\n" not in str(error.value)


def test_batch_larger_than_the_training_split_is_refused_before_training(tmp_path):
    text = STUDY + RUN + FACTORS + "batch_size = [8, 512]  # <-\n"
    path = write(tmp_path, text)
    with pytest.raises(NormlabError) as error:
        check_study(load_spec(path))
    assert str(error.value).startswith(
        f"{path}:{marked_line(text)}: factors.batch_size[1]: batch size 512 is larger than the "
        "training split of synthetic"
    )


def test_bad_dataset_option_is_located(tmp_path):
    text = STUDY + RUN.replace("num_examples = 200 }", "num_exemples = 200 }  # <-")
    path = write(tmp_path, text)
    with pytest.raises(NormlabError, match=rf"^{path}:{marked_line(text)}: run.dataset_options: "):
        check_study(load_spec(path))


def test_invalid_toml_names_the_file_and_line(tmp_path):
    path = write(tmp_path, STUDY + "[run\n")
    with pytest.raises(NormlabError, match=r"spec.toml: invalid TOML: .*line 4"):
        load_spec(path)


def test_missing_file():
    with pytest.raises(NormlabError, match="no such study file"):
        load_spec("/nonexistent/study.toml")


def test_spec_from_dict_without_text_names_the_key():
    with pytest.raises(NormlabError, match=r"^mine: factors.norm\[1\]: unknown normalization"):
        spec_from_dict({"factors": {"norm": ["bn", "nope"]}}, source="mine")


def test_excluding_the_impossible_pair_makes_the_spec_valid(tmp_path):
    text = STUDY + RUN + FACTORS + 'batch_size = [1, 8]\n[[exclude]]\nnorm = "bn"\nbatch_size = 1\n'
    spec = load_spec(write(tmp_path, text))
    assert {"norm": "gn", "batch_size": 1} in spec.cells()
    assert {"norm": "bn", "batch_size": 1} not in spec.cells()


def test_the_format_documented_in_the_spec_module_parses(tmp_path):
    import textwrap

    import normlab.study.spec as module

    doc = module.__doc__
    example = textwrap.dedent(doc[doc.index("::\n") + 3 : doc.index("**Norm options.**")])
    spec = load_spec(write(tmp_path, example))
    assert spec.factors["norm_options.bn.momentum"] == (0.1, 0.01)
    assert spec.norm_options == {"gn": {"groups": 4}}
    assert len(spec.cells()) == (2 + 1 + 1) * 3 - 2  # bn splits on momentum; bn at 128 excluded
