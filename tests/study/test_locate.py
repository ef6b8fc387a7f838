"""Key paths -> line numbers of a TOML text, for error messages."""

import sys

from normlab.study.locate import SpecOrigin, dotted, key_lines

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TEXT = """\
# a comment with [brackets] and key = value
[study]
name = "x # not a comment [nor a table]"   # trailing comment
seeds = [0,
  1, 2]

[run]
dataset_options = { num_examples = 200, "a.b" = 1 }
note = \"\"\"two
lines\"\"\"
widths = [4, 4, 4]

[factors]
norm = [
  "bn",   # BatchNorm
  "gn",
]
norm_options.gn.groups = [1, 2]

[factors.norm_options.bn]
momentum = [0.1]

[[exclude]]
norm = "bn"

[[exclude]]
batch_size = 2
when = 1979-05-27 07:32:00Z
nested = [[1, 2], [3]]
"""


def test_text_is_valid_toml():
    tomllib.loads(TEXT)


def test_lines_of_tables_keys_and_elements():
    lines = key_lines(TEXT)
    assert lines[("study",)] == 2
    assert lines[("study", "name")] == 3
    assert lines[("study", "seeds", 0)] == 4
    assert lines[("study", "seeds", 2)] == 5
    assert lines[("run", "dataset_options", "num_examples")] == 8
    assert lines[("run", "dataset_options", "a.b")] == 8
    assert lines[("run", "widths")] == 11  # after a two-line string
    assert lines[("factors", "norm", 0)] == 15
    assert lines[("factors", "norm", 1)] == 16
    assert lines[("factors", "norm_options", "gn", "groups", 1)] == 18
    assert lines[("factors", "norm_options", "bn")] == 20
    assert lines[("factors", "norm_options", "bn", "momentum")] == 21


def test_arrays_of_tables_are_indexed():
    lines = key_lines(TEXT)
    assert lines[("exclude", 0)] == 23
    assert lines[("exclude", 0, "norm")] == 24
    assert lines[("exclude", 1, "batch_size")] == 27
    assert lines[("exclude", 1, "nested", 1, 0)] == 29


def test_origin_falls_back_to_the_enclosing_key_and_formats_errors():
    origin = SpecOrigin("s.toml", key_lines(TEXT))
    assert origin.line(("run", "widths", 7)) == 11
    assert origin.line(("run", "depth")) == 7  # not written: the [run] header
    assert origin.line(("lr", "mode")) is None
    assert str(origin.error(("factors", "norm", 1), "bad")) == "s.toml:16: factors.norm[1]: bad"
    assert str(origin.error(("lr", "mode"), "bad")) == "s.toml: lr.mode: bad"
    assert (
        dotted(("exclude", 0, "norm_options", "gn", "groups"))
        == "exclude[0].norm_options.gn.groups"
    )
