"""The digits splits: shapes, ranges, stratification, seeding, loaders."""

import pytest
import torch

from cnncourse.data.digits import digits_loaders, load_digits_splits


def test_splits_shapes_ranges_and_disjoint_stratified_parts():
    splits = load_digits_splits()
    assert set(splits) == {"train", "val", "test"}
    sizes = {k: len(v) for k, v in splits.items()}
    assert sum(sizes.values()) == 1797
    assert sizes["test"] == 360 and sizes["val"] == 360  # 20 % each, rounded up by sklearn
    x, y = splits["train"].tensors
    assert x.shape[1:] == (1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    for part in splits.values():  # stratified: every class holds about a tenth of each split
        counts = torch.bincount(part.tensors[1], minlength=10).float() / len(part)
        assert counts.min() > 0.08 and counts.max() < 0.12
    rows = {tuple(t.flatten().tolist()) for part in splits.values() for t in part.tensors[0]}
    assert len(rows) > 1700  # the parts do not repeat images (the raw set has a few duplicates only)


def test_upsampled_subset_is_seeded():
    a = load_digits_splits(28, n=200, seed=1)
    b = load_digits_splits(28, n=200, seed=1)
    c = load_digits_splits(28, n=200, seed=2)
    assert a["train"].tensors[0].shape[1:] == (1, 28, 28)
    assert sum(len(v) for v in a.values()) == 200
    assert torch.equal(a["train"].tensors[0], b["train"].tensors[0])
    assert not torch.equal(a["train"].tensors[1], c["train"].tensors[1])
    assert 0.0 <= float(a["train"].tensors[0].min()) and float(a["train"].tensors[0].max()) <= 1.0


def test_loaders_shuffle_train_only_and_reproducibly():
    train, val, test = digits_loaders(batch_size=32, n=300)
    first = next(iter(train))[1]
    again = next(iter(digits_loaders(batch_size=32, n=300)[0]))[1]
    assert torch.equal(first, again)
    assert next(iter(val))[0].shape == (32, 1, 8, 8)
    assert torch.equal(torch.cat([y for _, y in test]), test.dataset.tensors[1])


@pytest.mark.parametrize("kwargs, word", [({"size": 4}, "size"), ({"n": 10}, "n must"),
                                          ({"val_fraction": 0.5, "test_fraction": 0.5}, "sum")])
def test_bad_arguments_say_what_to_change(kwargs, word):
    with pytest.raises(ValueError, match=word):
        load_digits_splits(**kwargs)
