"""From-scratch CNN layers on torch tensors, each checked against ``torch.nn.functional`` by the tests.

Functions: :func:`conv2d_naive`, :func:`im2col`, :func:`col2im`, :func:`conv2d`, :func:`max_pool2d`,
:func:`avg_pool2d`, :func:`batch_norm`, :func:`dropout`. Modules with ``torch.nn``'s constructor
arguments and state names: :class:`Conv2d`, :class:`MaxPool2d`, :class:`AvgPool2d`, :class:`BatchNorm1d`,
:class:`BatchNorm2d`, :class:`Dropout`; :func:`swap_layers` puts them into an existing model.

Every function works on any device (CPU or CUDA) and dtype the inputs have.
"""

from cnncourse.layers.batchnorm import batch_norm
from cnncourse.layers.conv import col2im, conv2d, conv2d_naive, im2col
from cnncourse.layers.dropout import dropout
from cnncourse.layers.modules import AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, MaxPool2d, swap_layers
from cnncourse.layers.pool import avg_pool2d, max_pool2d

__all__ = [
    "conv2d_naive",
    "im2col",
    "col2im",
    "conv2d",
    "max_pool2d",
    "avg_pool2d",
    "batch_norm",
    "dropout",
    "Conv2d",
    "MaxPool2d",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Dropout",
    "swap_layers",
]
