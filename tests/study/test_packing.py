"""Studies with packing: units of work, the pack size rule, the store's pack_size, device."""

from __future__ import annotations

import sqlite3

import pytest

from normlab.errors import NormlabError
from normlab.study import STORE_NAME, run_study, spec_from_dict
from normlab.study.dryrun import estimate_time, packing_lines
from normlab.study.plan import PlannedRun, expand
from normlab.study.work import MAX_PACK_SIZE, Execution, dataset_for, pack_size_limit, work_units
from normlab.train import RunConfig, train_runs


def cell(count: int, **changes) -> list[RunConfig]:
    base = RunConfig(
        dataset="synthetic",
        dataset_options={"num_examples": 200, "num_classes": 4, "size": 8, "noise": 0.8},
        widths=(4, 8, 8),
        **{"batch_size": 8, "steps": 6, **changes},
    )
    return [base.replace(seed=k % 3, lr=0.01 * (1 + k // 3)) for k in range(count)]


def test_pack_size_limit_shrinks_with_batch_and_image_size():
    assert pack_size_limit(2, 64) == MAX_PACK_SIZE
    assert pack_size_limit(8, 64) == 32 and pack_size_limit(32, 64) == 8
    assert pack_size_limit(64, 64) == pack_size_limit(128, 64) == 1  # packing loses there
    assert pack_size_limit(2, 32 * 32) == 8 and pack_size_limit(4, 32 * 32) == 1


def test_off_gives_one_run_per_unit_and_auto_groups_a_cell():
    configs = cell(5) + cell(3, norm="gn")
    assert work_units(configs, "off") == [[c] for c in configs]
    assert work_units(configs, "auto") == [configs[:5], configs[5:]]


def test_a_cell_above_the_limit_splits_into_near_equal_packs():
    configs = cell(15, batch_size=32)  # 8x8 images: at most 8 runs per pack
    units = work_units(configs, "auto")
    assert [len(u) for u in units] == [8, 7]
    assert [c for u in units for c in u] == configs


def test_runs_that_cannot_pack_are_units_alone():
    configs = cell(2, init="skipinit") + cell(1)
    assert work_units(configs, "auto") == [[configs[0]], [configs[1]], [configs[2]]]
    assert "init='skipinit' is not packed yet" in "\n".join(
        packing_lines([_planned(c) for c in configs], "auto")
    )


def test_unknown_pack_mode_is_refused():
    with pytest.raises(NormlabError, match="--pack 'sometimes'"):
        work_units(cell(2), "sometimes")


def test_train_runs_packs_a_unit_of_several_and_records_pack_size():
    configs = cell(3)
    results = train_runs(configs, dataset_for(configs[0]))
    assert [r.run_id for r in results] == [c.run_id for c in configs]
    assert {(r.pack_size, r.device, r.status) for r in results} == {(3, "cpu", "done")}
    (alone,) = train_runs(configs[:1], dataset_for(configs[0]))
    assert (alone.pack_size, alone.device) == (1, "cpu")


def _planned(config):
    return PlannedRun(config, {})


def tiny_spec() -> dict:
    return {
        "study": {"name": "packing", "seeds": [0, 1]},
        "run": {
            "dataset": "synthetic",
            "dataset_options": {"num_examples": 200, "num_classes": 4, "size": 8, "noise": 0.8},
            "widths": [4, 8, 8],
            "batch_size": 8,
            "steps": 6,
        },
        "factors": {"norm": ["bn", "ln"]},
        "lr": {"mode": "tuned", "grid": [0.01, 0.03], "extend": 0},
    }


@pytest.mark.parametrize("pack, size", [("auto", 4), ("off", 1)])
def test_the_store_records_the_pack_size_of_each_run(pack, size, tmp_path):
    spec = spec_from_dict(tiny_spec())
    outcome = run_study(spec, tmp_path, workers=1, threads=1, execution=Execution(pack=pack))
    assert outcome.trained == 8 and outcome.failed == 0
    with sqlite3.connect(tmp_path / STORE_NAME) as db:
        rows = db.execute("SELECT status, pack_size, device FROM runs").fetchall()
    assert rows == [("done", size, "cpu")] * 8


def test_packed_and_unpacked_studies_agree_on_what_they_record(tmp_path):
    spec = spec_from_dict(tiny_spec())
    for pack in ("auto", "off"):
        run_study(spec, tmp_path / pack, workers=1, threads=1, execution=Execution(pack=pack))
    query = "SELECT run_id, status, steps FROM runs ORDER BY run_id"
    packed = sqlite3.connect(tmp_path / "auto" / STORE_NAME)
    alone = sqlite3.connect(tmp_path / "off" / STORE_NAME)
    assert packed.execute(query).fetchall() == alone.execute(query).fetchall()
    packed.close()
    alone.close()


def test_cuda_without_cuda_is_one_error_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    spec = spec_from_dict(tiny_spec())
    with pytest.raises(NormlabError, match="--device cuda: torch.cuda.is_available"):
        run_study(spec, tmp_path, workers=1, execution=Execution(device="cuda"))
    assert not (tmp_path / STORE_NAME).exists()


def test_the_estimate_counts_packs_as_units():
    spec = spec_from_dict(tiny_spec())
    runs = expand(spec)
    data = dataset_for(runs[0].config)
    packed = estimate_time(runs, data, workers=1, threads=1, pack="auto")
    alone = estimate_time(runs, data, workers=1, threads=1, pack="off")
    units = work_units([run.config for run in runs], "auto", packed.pack_sizes)
    assert (packed.units, alone.units) == (len(units), 8)  # at the measured pack sizes
    assert packed.calibrated == 2 and set(packed.run_seconds) == set(alone.run_seconds)
    # Without measured sizes the fixed rule packs each cell of 4 whole.
    assert packing_lines(runs, "auto")[0].startswith("Packing: 8 of 8 runs train in 2 packs")


def test_runs_too_large_to_pack_say_so():
    runs = [_planned(c) for c in cell(3, batch_size=64)]  # 64 x 8 x 8 pixels per step
    lines = packing_lines(runs, "auto")
    assert lines[0].startswith("Packing: 0 of 3 runs train in 0 packs")
    assert "batch size 64: batch x pixels above 2048" in lines[1]
