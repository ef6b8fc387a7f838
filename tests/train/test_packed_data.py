"""Packed runs see their own data: order (classes_per_batch, epochs of different lengths) and
augmentation, exactly as each run alone (``train_run``)."""

from __future__ import annotations

import pytest
import torch
from test_packed import alone_and_packed, assert_same_metrics, assert_same_weights, pack_of

from normlab.data import augment_batch, epoch_order
from normlab.data.augment import augment_parameters
from normlab.train import engine
from normlab.train import packed_data as packed_data_module
from normlab.train.packed import train_packed
from normlab.train.packed_data import RunStreams, crop_and_flip, packed_batches


def test_crop_and_flip_is_augment_batch_with_its_parameters():
    x = torch.randn(6, 3, 10, 12, dtype=torch.float64)
    offsets, flips = augment_parameters(6, seed=3, step=17)
    assert torch.equal(crop_and_flip(x, offsets, flips), augment_batch(x, 3, 17))


def test_packed_batches_put_each_runs_augmented_batch_in_its_slice(tiny_config, tiny_data):
    configs = [tiny_config.replace(seed=s, augment=True) for s in (0, 5)]
    streams = RunStreams(configs, tiny_data.y_train)
    index = streams.take(3)
    xs, ys = packed_batches(tiny_data.x_train, tiny_data.y_train, index, configs, first_step=7)
    channels = tiny_data.x_train.shape[1]
    for s in range(3):
        for k, config in enumerate(configs):
            batch = epoch_order(config.seed, 0, len(tiny_data.y_train), config.batch_size)[s]
            expected = augment_batch(tiny_data.x_train[batch], config.seed, 7 + s)
            assert torch.equal(xs[s][:, k * channels : (k + 1) * channels], expected)
            assert torch.equal(ys[s][k], tiny_data.y_train[batch])


def _uneven_order(seed, epoch, num_examples, batch_size, sampler="shuffle", **options):
    """A data order whose epochs have a length that depends on the seed (as classes_per_batch
    may give): the shuffle order without its last ``seed % 3`` batches."""
    order = epoch_order(seed, epoch, num_examples, batch_size, sampler, **options)
    return order[: len(order) - seed % 3]


def test_streams_stop_each_chunk_where_some_runs_epoch_ends(monkeypatch, tiny_config):
    monkeypatch.setattr(packed_data_module, "epoch_order", _uneven_order)
    configs = [tiny_config.replace(seed=s) for s in (0, 1, 2)]
    labels = torch.arange(120) % 4
    streams = RunStreams(configs, labels)
    taken: list[list[torch.Tensor]] = [[] for _ in configs]
    ends = []
    while sum(len(t) for t in taken[0]) < 40:
        index = streams.take(100)
        for k in range(3):
            taken[k].append(index[:, k])
        ends.append(streams.ended())
        assert any(ends[-1])
        streams.advance()
    for k, config in enumerate(configs):
        stream = torch.cat(taken[k])
        expected = torch.cat([_uneven_order(config.seed, e, 120, 8) for e in range(5)])
        assert torch.equal(stream, expected[: len(stream)])


def test_runs_whose_epochs_differ_in_length_match_alone(
    monkeypatch, tiny_config, tiny_data, tmp_path
):
    monkeypatch.setattr(packed_data_module, "epoch_order", _uneven_order)
    monkeypatch.setattr(engine, "epoch_order", _uneven_order)
    configs = pack_of(tiny_config.replace(norm="bn", epochs=2))
    alone, packed, paths = alone_and_packed(configs, tiny_data, tmp_path)
    # 30 steps: 2 epochs of 15 batches for seed 0, 3 epochs (14 + 14 + 2) for seed 1, ...
    assert len({len(r.epochs) for r in alone}) > 1
    for k in range(len(configs)):
        assert_same_metrics(alone[k], packed[k])
        assert_same_weights(tmp_path / f"alone{k}.pt", paths[k])


@pytest.mark.parametrize(
    "change",
    [
        {"augment": True},
        {"classes_per_batch": 2},
        {"augment": True, "norm": "gn", "norm_options": {"groups": 2}},
    ],
)
def test_augmentation_and_classes_per_batch_match_alone(change, tiny_config, tiny_data, tmp_path):
    configs = pack_of(tiny_config.replace(steps=20, **change))
    alone, packed, paths = alone_and_packed(configs, tiny_data, tmp_path)
    for k in range(len(configs)):
        assert_same_metrics(alone[k], packed[k])
        assert_same_weights(tmp_path / f"alone{k}.pt", paths[k])


def test_packed_results_record_pack_size_and_device(short_config, tiny_data):
    results = train_packed([short_config.replace(seed=s) for s in range(3)], tiny_data)
    assert [(r.pack_size, r.device) for r in results] == [(3, "cpu")] * 3


@pytest.fixture
def short_config(tiny_config):
    return tiny_config.replace(steps=4)
