"""Evaluation with running vs batch statistics."""

import copy

import torch
from torch import nn

from normlab.norms import make_norm
from normlab.train.evaluate import accuracy, chunks


def test_chunks_merge_a_trailing_single_example():
    assert chunks(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert chunks(9, 3) == [(0, 3), (3, 6), (6, 9)]
    assert chunks(1, 4) == [(0, 1)]


def test_batch_statistics_mode_leaves_the_model_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.Flatten())
    model = nn.Sequential(model, nn.LazyLinear(3))
    x, y = torch.randn(20, 1, 6, 6) * 3 + 1, torch.randint(0, 3, (20,))
    model(x)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    accuracy(model, x, y, statistics="batch", batch_size=4)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not model.training


def test_batch_statistics_differ_from_running_statistics():
    # A BN whose running statistics are far from the data: eval mode and batch mode disagree.
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(2)
    bn.running_mean.fill_(5.0)
    model = nn.Sequential(bn, nn.Flatten(), nn.Linear(2 * 4 * 4, 2))
    x = torch.randn(32, 2, 4, 4)
    y = model.eval()(x).argmax(1)  # labels = the running-statistics predictions
    assert accuracy(model, x, y, statistics="running") == 1.0
    assert accuracy(model, x, y, statistics="batch", batch_size=8) < 1.0


def test_batch_statistics_of_brn_are_its_training_transform():
    """Batch mode is the forward the network trained with: for brn past its warm-up that
    includes r and d (unlike PreciseBN's pass, which turns them off), so it is not BN's."""
    torch.manual_seed(0)
    options = {"warmup_steps": 0, "relax_steps": 0, "d_relax_steps": 0, "momentum": 0.0}
    renorm = nn.Sequential(
        nn.Conv2d(1, 4, 3), make_norm("brn", 4, **options), nn.Flatten(), nn.Linear(64, 3)
    ).double()
    with torch.no_grad():
        renorm[1].running_mean.fill_(3.0)  # stale statistics: r and d far from 1 and 0
        renorm[1].running_var.fill_(0.1)
    x = torch.randn(8, 1, 6, 6, dtype=torch.float64) * 2 + 1
    as_trained = copy.deepcopy(renorm).train()(x).argmax(1)
    assert accuracy(renorm, x, as_trained, statistics="batch", batch_size=8) == 1.0
    plain = copy.deepcopy(renorm).train()
    plain[1].renormalize = False
    assert not torch.equal(plain(x).argmax(1), as_trained)  # the setup exercises r and d


def _sorted_by_class(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.argsort(y, stable=True)
    return x[order], y[order]


def test_batch_statistics_do_not_depend_on_stored_order():
    """A class-sorted test set (as an image folder is read) used to be evaluated in batches of
    one class, whose statistics erase the class signal (here 0.246, chance, against 0.883 for
    the same examples shuffled). The batches are now drawn from a fixed permutation, so sorted,
    reversed and shuffled stored orders give the same accuracy up to the noise of which
    examples share a batch: measured, the three differ by 6 of 256 examples (0.023); 0.07
    allows three times that, far below the 0.64 the stored order cost."""
    generator = torch.Generator().manual_seed(0)
    y = torch.arange(512) % 4
    pattern = torch.randn(4, 1, 8, 8, generator=generator)
    x = pattern[y] + 0.8 * torch.randn(512, 1, 8, 8, generator=generator)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for step in range(60):  # mixed batches of 8: every class in each
        start = (step * 8) % 256
        loss = nn.functional.cross_entropy(model(x[start : start + 8]), y[start : start + 8])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    x_test, y_test = x[256:], y[256:]
    shuffled = torch.randperm(256, generator=generator)
    sorted_x, sorted_y = _sorted_by_class(x_test, y_test)
    orders = {
        "sorted": (sorted_x, sorted_y),
        "reversed": (sorted_x.flip(0), sorted_y.flip(0)),
        "shuffled": (x_test[shuffled], y_test[shuffled]),
    }
    accuracies = {
        name: accuracy(model, xs, ys, statistics="batch", batch_size=8)
        for name, (xs, ys) in orders.items()
    }
    assert max(accuracies.values()) - min(accuracies.values()) <= 0.07, accuracies
    assert min(accuracies.values()) > 0.7, accuracies  # far from chance (0.25)


def test_batch_statistics_batches_follow_the_sampler():
    """With classes_per_batch = 1 every evaluation batch holds one class, as in training; the
    model sees a class-pure batch as its statistics (here: prediction = majority class of the
    labels, a model that reads the batch composition only)."""

    class BatchMajority(nn.Module):
        # Predicts, for every example, the class whose mean input is largest in the batch:
        # right for all of a class-pure batch, for about 1/4 of a mixed one.
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            mean = x.mean(dim=0, keepdim=True)
            return mean.expand(len(x), -1) if self.training else torch.zeros_like(x)

    model = BatchMajority()
    y = torch.arange(64) % 4
    x = nn.functional.one_hot(y, 4).double()
    pure = accuracy(model, x, y, statistics="batch", batch_size=8, classes_per_batch=1)
    mixed = accuracy(model, x, y, statistics="batch", batch_size=8)
    assert pure == 1.0
    assert mixed < 0.9
