"""cnncourse.data.synthetic: the offline stand-in for the malaria cells."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnncourse.data.malaria import patient_split
from cnncourse.data.synthetic import synthetic_cells


@pytest.fixture(scope="module")
def cells():
    return synthetic_cells(240, size=48, seed=3)


def test_shapes_dtypes_and_classes(cells):
    images, labels, patients = cells
    assert images.shape == (240, 3, 48, 48) and images.dtype == torch.uint8 and images.is_contiguous()
    assert labels.shape == (240,) and labels.dtype == torch.int64 and set(labels.tolist()) == {0, 1}
    assert 0.4 < labels.float().mean() < 0.6
    assert len(patients) == 240 and len(set(patients)) == 4 and all(p.startswith("SYN") for p in patients)
    assert set(synthetic_cells(2, size=16).labels.tolist()) == {0, 1}


def test_reproducible_for_a_seed(cells):
    again = synthetic_cells(240, size=48, seed=3)
    assert torch.equal(again.images, cells.images) and torch.equal(again.labels, cells.labels)
    assert again.patient_ids == cells.patient_ids
    assert not torch.equal(synthetic_cells(240, size=48, seed=4).images, cells.images)


def test_looks_like_a_cell_on_black(cells):
    images = cells.images.float()
    corners = images[:, :, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert corners.max() == 0  # black background, as in the real crops
    centre = images[:, :, 20:28, 20:28].mean(dim=(2, 3))  # (N, 3)
    assert (centre.min(dim=1).values > 100).all()  # pale ...
    assert (centre[:, 0] > centre[:, 1]).all()  # ... pink to violet: more red than green, never green-dominant
    covered = (images.sum(1) > 30).float().mean(dim=(1, 2))
    assert (covered > 0.45).all() and (covered < 0.95).all()


def test_parasites_are_dark_magenta_spots(cells):
    """Within the cell, parasitized crops have clearly darker, greener-poor pixels than uninfected ones."""
    images, labels, _ = cells
    inside = images.float().sum(1) > 300  # away from the black background and the soft edge
    green = images[:, 1].float().masked_fill(~inside, 255)
    darkest = green.flatten(1).min(dim=1).values
    assert darkest[labels == 1].median() < darkest[labels == 0].median() - 20


def test_patients_allow_stratified_splits():
    _, labels, patients = synthetic_cells(600, size=16, seed=0)
    infected = {}
    for y, p in zip(labels.tolist(), patients, strict=True):
        infected[p] = infected.get(p, False) or bool(y)
    assert sum(infected.values()) == 8 and len(infected) - sum(infected.values()) == 2  # some never infected
    split = patient_split(infected)
    assert all(split[s] for s in ("train", "val", "test"))


@pytest.mark.parametrize("kwargs", [{"n": 0}, {"n": 2.5}, {"n": 4, "size": 8}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="n must|size must"):
        synthetic_cells(**kwargs)


def test_small_cnn_separates_the_classes():
    """A three-block CNN trained for a few seconds on CPU beats chance by far on unseen synthetic cells."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        x, y, _ = synthetic_cells(600, size=32, seed=1)
        x_test, y_test, _ = synthetic_cells(300, size=32, seed=2)  # other cells, other patients

        def block(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

        net = nn.Sequential(*block(3, 16), nn.MaxPool2d(2), *block(16, 32), nn.MaxPool2d(2), *block(32, 32),
                            nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(32, 2))  # fmt: skip
        opt = torch.optim.Adam(net.parameters(), 3e-3)
        x = x.float() / 255
        for _ in range(4):
            net.train()
            for batch in torch.randperm(len(x)).split(32):
                loss = nn.functional.cross_entropy(net(x[batch]), y[batch])
                opt.zero_grad()
                loss.backward()
                opt.step()
        net.eval()
        with torch.no_grad():
            accuracy = (net(x_test.float() / 255).argmax(1) == y_test).float().mean().item()
    finally:
        torch.set_num_threads(threads)
    assert accuracy > 0.85, f"accuracy {accuracy:.3f} on held-out synthetic cells"
