"""augment_batch: seeded by (seed, step) only, equal to a per-image reference crop and flip."""

import pytest
import torch
import torch.nn.functional as F

from normlab.data import augment_batch
from normlab.data.augment import augment_parameters
from normlab.errors import NormlabError


def reference(x: torch.Tensor, seed: int, step: int, padding: int = 4) -> torch.Tensor:
    """The slow, obvious version: pad each image, cut its window, flip it if drawn."""
    offsets, flips = augment_parameters(len(x), seed, step, padding)
    out = []
    for image, (row, column), flip in zip(x, offsets.tolist(), flips.tolist(), strict=True):
        padded = F.pad(image, (padding,) * 4)
        crop = padded[:, row : row + x.shape[2], column : column + x.shape[3]]
        out.append(crop.flip(-1) if flip else crop)
    return torch.stack(out)


@pytest.mark.parametrize(("height", "width"), [(32, 32), (8, 5)])
def test_equals_the_per_image_reference(height, width):
    x = torch.randn(64, 3, height, width, dtype=torch.float64)
    for step in range(3):
        assert torch.equal(augment_batch(x, seed=7, step=step), reference(x, 7, step))


def test_depends_only_on_seed_and_step():
    x = torch.randn(16, 3, 32, 32)
    torch.manual_seed(0)
    first = augment_batch(x, 1, 5)
    torch.manual_seed(99)  # global random state is not used
    assert torch.equal(first, augment_batch(x, 1, 5))
    assert not torch.equal(first, augment_batch(x, 1, 6))
    assert not torch.equal(first, augment_batch(x, 2, 5))


def test_draws_cover_every_offset_and_both_flips():
    offsets, flips = augment_parameters(4000, seed=0, step=0)
    assert sorted(set(offsets.flatten().tolist())) == list(range(9))
    assert 0.45 < flips.float().mean() < 0.55


def test_pads_with_zero_and_keeps_shape():
    x = torch.ones(200, 1, 6, 6)
    out = augment_batch(x, 0, 0)
    assert out.shape == x.shape
    assert set(out.unique().tolist()) == {0.0, 1.0}  # zero is the standardized train mean
    offsets, _ = augment_parameters(200, 0, 0)
    centred = (offsets == 4).all(dim=1)
    assert torch.equal(out[centred], x[centred])


def test_needs_a_batch_of_images():
    with pytest.raises(NormlabError, match=r"expected \(B, C, H, W\)"):
        augment_batch(torch.zeros(3, 8, 8), 0, 0)
