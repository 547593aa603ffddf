"""Hand-made filters of classic image processing, the ones a CNN's first layer ends up rediscovering.

``classic_filter("sobel_x")`` returns the kernel; ``filter_image(photo, kernel)`` slides it over every
channel of an image exactly as a convolution layer would (cross-correlation, 'same' zero padding);
``load_photo("chelsea")`` gives a real photo from ``skimage.data`` (offline) as a ``(C, H, W)`` tensor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["FILTERS", "PHOTOS", "classic_filter", "filter_image", "load_photo"]

FILTERS = ("box", "gaussian", "sharpen", "diff_x", "diff_y", "sobel_x", "sobel_y")
# skimage.data images shipped with scikit-image itself (no download needed).
PHOTOS = ("chelsea", "astronaut", "coffee", "rocket", "camera", "coins", "cell", "moon", "brick", "grass", "gravel")


def classic_filter(name: str, size: int = 3, sigma: float = 1.0) -> torch.Tensor:
    """A classic filter kernel, float32.

    Args:
        name: ``"box"`` (mean of a ``size x size`` window), ``"gaussian"`` (normalised, std ``sigma``),
            ``"sharpen"`` (2 x identity - box: the centre minus its blurred surroundings), ``"diff_x"``
            (``[[-1, 1]]``, shape ``(1, 2)``), ``"diff_y"`` (its transpose, ``(2, 1)``), ``"sobel_x"`` /
            ``"sobel_y"`` (3x3 smoothed differences; positive where brightness grows to the right / down).
        size: window side for box, gaussian and sharpen (odd, >= 1); the other filters have fixed shapes
            and accept only the default 3.
        sigma: standard deviation of the Gaussian, in pixels.

    Returns:
        The kernel ``(kh, kw)``: ``(size, size)`` for box/gaussian/sharpen, as stated above for the rest.
    """
    if name not in FILTERS:
        raise ValueError(f"unknown filter {name!r}; choose one of {', '.join(FILTERS)}.")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1 or size % 2 == 0:
        raise ValueError(f"size must be an odd int >= 1 (the window needs a centre), got {size!r}.")
    if name in ("diff_x", "diff_y", "sobel_x", "sobel_y") and size != 3:
        raise ValueError(f"filter {name!r} has a fixed shape; call it without size (got size={size}).")
    if name == "box":
        return torch.full((size, size), 1.0 / size**2)
    if name == "gaussian":
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma!r}.")
        r = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
        g = torch.exp(-(r**2) / (2 * sigma**2))
        kernel = torch.outer(g, g)
        return kernel / kernel.sum()
    if name == "sharpen":
        kernel = -classic_filter("box", size)
        kernel[size // 2, size // 2] += 2.0
        return kernel
    if name in ("diff_x", "diff_y"):
        kernel = torch.tensor([[-1.0, 1.0]])
        return kernel if name == "diff_x" else kernel.T.contiguous()
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    return sobel if name == "sobel_x" else sobel.T.contiguous()


def filter_image(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Slide ``kernel`` over each channel of ``image`` (cross-correlation, as in CNNs), 'same' zero padding.

    Args:
        image: ``(H, W)`` or ``(C, H, W)`` float tensor.
        kernel: ``(kh, kw)``; even sizes pad one pixel more at the bottom/right (as PyTorch's
            ``padding="same"``).

    Returns:
        A tensor of ``image``'s shape: ``out[c, i, j] = sum_ab image_padded[c, i + a, j + b] * kernel[a, b]``.
    """
    if not isinstance(image, torch.Tensor) or image.dim() not in (2, 3) or not image.is_floating_point():
        got = f"{tuple(image.shape)} {image.dtype}" if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"image must be a float tensor (H, W) or (C, H, W), got {got}; "
                         f"use load_photo() or image.float() / 255.")
    if not isinstance(kernel, torch.Tensor) or kernel.dim() != 2:
        got = tuple(kernel.shape) if isinstance(kernel, torch.Tensor) else type(kernel).__name__
        raise ValueError(f"kernel must be a 2-D tensor (kh, kw), got {got}.")
    x = image if image.dim() == 3 else image.unsqueeze(0)
    c = x.shape[0]
    kh, kw = kernel.shape
    top, left = (kh - 1) // 2, (kw - 1) // 2  # 'same': the output keeps the input's size
    xp = F.pad(x.unsqueeze(0), (left, kw - 1 - left, top, kh - 1 - top))
    weight = kernel.to(x).expand(c, 1, kh, kw)  # the same kernel for every channel: depthwise
    out = F.conv2d(xp, weight, groups=c).squeeze(0)
    return out if image.dim() == 3 else out.squeeze(0)


def load_photo(name: str = "chelsea", gray: bool = False, size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """A photo from ``skimage.data`` (shipped with scikit-image; no download) as ``(C, H, W)`` float32 in [0, 1].

    Args:
        name: one of :data:`PHOTOS`; ``"chelsea"`` is the cat.
        gray: convert colour photos to one luminance channel (``C = 1``).
        size: an int resizes so the shorter side is ``size`` (aspect kept), an ``(h, w)`` pair resizes to it
            exactly (antialiased bilinear); None keeps the original.
    """
    import skimage.color
    import skimage.data

    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}; choose one of {', '.join(PHOTOS)}.")
    array = getattr(skimage.data, name)()
    if gray and array.ndim == 3:
        array = skimage.color.rgb2gray(array)  # float in [0, 1]
    x = torch.as_tensor(array, dtype=torch.float32)
    if array.dtype.kind == "u":
        x = x / 255.0
    x = x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1)
    if size is not None:
        h, w = x.shape[1:]
        if isinstance(size, int) and not isinstance(size, bool) and size >= 1:
            scale = size / min(h, w)
            hw = (max(1, round(h * scale)), max(1, round(w * scale)))
        elif isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(v, int) and v >= 1 for v in size):
            hw = (size[0], size[1])
        else:
            raise ValueError(f"size must be None, a positive int (shorter side) or an (h, w) pair, got {size!r}.")
        x = F.interpolate(x.unsqueeze(0), size=hw, mode="bilinear", antialias=True, align_corners=False)[0]
    return x.clamp(0, 1).contiguous()
