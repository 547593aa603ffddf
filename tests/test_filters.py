"""Classic filters against torch's own convolution, and the offline photos."""

import pytest
import torch
import torch.nn.functional as F

from cnncourse.filters import FILTERS, classic_filter, filter_image, load_photo


def test_kernels_have_their_textbook_values():
    assert torch.allclose(classic_filter("box"), torch.full((3, 3), 1 / 9))
    g = classic_filter("gaussian", 5, sigma=1.0)
    assert g.shape == (5, 5) and abs(float(g.sum()) - 1) < 1e-6 and g.argmax() == 12 and torch.equal(g, g.T)
    assert classic_filter("sobel_x").tolist() == [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]
    assert torch.equal(classic_filter("sobel_y"), classic_filter("sobel_x").T)
    assert classic_filter("diff_x").tolist() == [[-1, 1]] and classic_filter("diff_y").shape == (2, 1)
    sharpen = classic_filter("sharpen")
    assert abs(float(sharpen.sum()) - 1) < 1e-6 and float(sharpen[1, 1]) == pytest.approx(2 - 1 / 9)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("name", FILTERS)
def test_filter_image_is_conv2d_with_same_padding_per_channel(name):
    torch.manual_seed(0)
    image = torch.rand(3, 11, 13)
    kernel = classic_filter(name)
    expected = F.conv2d(image[:, None], kernel[None, None], padding="same")[:, 0]
    assert torch.allclose(filter_image(image, kernel), expected, atol=1e-6)
    assert torch.allclose(filter_image(image[0], kernel), expected[0], atol=1e-6)


def test_sobel_x_finds_a_vertical_edge():
    image = torch.zeros(8, 8)
    image[:, 4:] = 1.0
    out = filter_image(image, classic_filter("sobel_x"))
    assert out[4].argmax() in (3, 4) and float(out[4, 3]) == 4.0 and float(out[4, 1]) == 0.0


def test_load_photo_gray_and_resized():
    cat = load_photo()
    assert cat.shape == (3, 300, 451) and cat.dtype == torch.float32 and 0 <= float(cat.min()) <= float(cat.max()) <= 1
    small = load_photo("chelsea", gray=True, size=64)
    assert small.shape == (1, 64, 96)
    assert load_photo("camera", size=(32, 40)).shape == (1, 32, 40)


@pytest.mark.parametrize("call, word", [(lambda: classic_filter("blur"), "unknown filter"),
                                        (lambda: classic_filter("box", 4), "odd"),
                                        (lambda: classic_filter("sobel_x", 5), "fixed shape"),
                                        (lambda: filter_image(torch.zeros(2, 2, 5, 5), torch.ones(3, 3)), "(H, W)"),
                                        (lambda: load_photo("dog"), "unknown photo")])
def test_bad_input_names_the_fix(call, word):
    with pytest.raises(ValueError, match=word.replace("(", r"\(").replace(")", r"\)")):
        call()
