"""The four-layer maxout CNN of the KConv table (Zhou et al., "Exploiting Local Structures with the
Kronecker Layer in Convolutional Networks", 2015), with Kronecker convolutions where asked.

The deck's table gives only the KConv configurations (r, o1, c1, h1, w1) of two layers,
"1,128,24,9,1; 1,256,64,8,1" and so on, and says the first layer "(2, 12, 1, 1, 9)" KConv beats
"Jaderberg-style rank-1 filter with (2, 96, 1, 1, 9)". Those numbers fit exactly the character
classifier of Jaderberg, Vedaldi, Zisserman ("Speeding up Convolutional Neural Networks with Low
Rank Expansions", BMVC 2014; "Deep Features for Text Spotting", ECCV 2014), whose speed-up the
KConv paper compares with: no pooling, 24 x 24 inputs,

    conv1 9 x 9,  96 filters, maxout of 2 ->  48 maps, 16 x 16
    conv2 9 x 9, 128 filters, maxout of 2 ->  64 maps,  8 x 8
    conv3 8 x 8, 512 filters, maxout of 4 -> 128 maps,  1 x 1
    conv4 1 x 1, 4 x classes filters, maxout of 4 -> class scores

(o1 = 128 with c1 = 24 divides conv2's 128 x 48 filters; o1 = 256 with c1 = 64 divides conv3's
512 x 64; o1 = 96 is conv1's filter count.) The architecture is our reading of those numbers and
of Jaderberg et al.'s description, not a copy of the authors' code (none is public). `kconv`
names the layers made Kronecker convolutions: {"conv2": [r, o1, c1, h1, w1], ...}.
Maxout takes the maximum over consecutive groups of filters.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from suite.compress.kronecker import KroneckerConv2d
from suite.nn import QuantConfig

FILTERS = (96, 128, 512)
KERNELS = (9, 9, 8)
PIECES = (2, 2, 4)
LAST_PIECES = 4
NAMES = ("conv1", "conv2", "conv3", "conv4")


class Maxout(nn.Module):
    """The maximum over groups of `pieces` consecutive channels: (N, C, H, W) -> (N, C / pieces, H, W)."""

    def __init__(self, pieces: int):
        super().__init__()
        self.pieces = pieces

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.view(n, c // self.pieces, self.pieces, h, w).amax(2)

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}"


def maxout_cnn(*, num_classes: int, in_shape: tuple[int, ...], quant: QuantConfig | None = None,
               kconv: dict | None = None, dropout: float = 0.0) -> nn.Sequential:
    """conv1-conv4 with maxout (see the module docstring); `kconv` maps layer names to (r, o1, c1,
    h1, w1) to make them Kronecker convolutions; dropout before conv2..conv4 (0: none)."""
    kconv = dict(kconv or {})
    unknown = set(kconv) - set(NAMES)
    if unknown:
        raise ValueError(f"kconv names unknown layers {sorted(unknown)}; the layers are {', '.join(NAMES)}")
    if len(in_shape) != 3:
        raise ValueError(f"maxout_cnn needs images (C x H x W), got input shape {tuple(in_shape)}")
    channels, height, width = in_shape
    if (height, width) != (24, 24):
        raise ValueError(f"maxout_cnn takes 24 x 24 images (its convolutions end at 1 x 1), got {height} x {width}; "
                         "set data.image_size = 24")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    quant = quant or QuantConfig()
    filters = (*FILTERS, LAST_PIECES * num_classes)
    kernels = (*KERNELS, 1)
    pieces = (*PIECES, LAST_PIECES)
    layers: list[nn.Module] = []
    for i, name in enumerate(NAMES):
        if i and dropout:
            layers.append(nn.Dropout(dropout))
        if name in kconv:
            conf = kconv[name]
            if len(conf) != 5:
                raise ValueError(f"kconv.{name}: expected [r, o1, c1, h1, w1], got {conf!r}")
            r, o1, c1, h1, w1 = conf
            layers.append(KroneckerConv2d(channels, filters[i], kernels[i], r=r, o1=o1, c1=c1, h1=h1, w1=w1))
        else:
            position = "first" if i == 0 else "last" if i == len(NAMES) - 1 else None
            layers.append(quant.conv2d(channels, filters[i], kernels[i], position=position))
        layers.append(Maxout(pieces[i]))
        channels = filters[i] // pieces[i]
    layers.append(nn.Flatten())
    return nn.Sequential(*layers)
