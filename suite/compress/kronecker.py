"""Kronecker convolution (KConv; Zhou, Wu, Wu, Zhou, "Exploiting Local Structures with the
Kronecker Layer in Convolutional Networks", arXiv 1512.09194, 2015).

A KConv layer's weight is a sum of r Kronecker products of two 4-D tensors,

    W = sum_{i=1..r} A_i (x) B_i,   A_i: (o1, c1, h1, w1),   B_i: (o2, c2, h2, w2),

with o = o1 o2 output channels, c = c1 c2 input channels and an h x w kernel, h = h1 h2,
w = w1 w2; the 4-D Kronecker product multiplies every pair of entries,

    (A (x) B)[a o2 + e, b c2 + f, p h2 + s, q w2 + t] = A[a, b, p, q] B[e, f, s, t].

A configuration is named as in the paper's table by (r, o1, c1, h1, w1); the B shapes follow.
The layer has r (o1 c1 h1 w1 + o2 c2 h2 w2) weights instead of o c h w.

It is never formed in the forward pass: the deck's "Kronecker Conv" slide computes it in two
steps (A first):

1. per input-channel group f (the c1 channels of index b c2 + f, b = 0..c1-1), an h1 x w1
   convolution with A, dilated by (h2, w2), from c1 to r o1 channels, its weights shared by all
   groups: S[i, a, f] = A_i * x[:, f::c2];
2. per output block a, an h2 x w2 convolution with B from the r c2 channels S[:, a, :] to o2.

Each step is one grouped convolution (groups c2, then o1, the shared factor repeated per group)
after a reordering of the channels. (Folding the groups into the batch instead was slower for the
KConv table's 9 x 9 layers on this project's CPU and faster for its 8 x 8 layer, in one scratch
measurement; the grouped form is used throughout.)

The multiply-adds per output pixel drop from o c h w to about c2 r o1 c1 h1 w1 + o1 r c2 h2 w2
(the first step runs on a slightly larger map). Padding is applied to the input first; a stride
applies to the second step (the first step is computed at every position it needs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class KronShape:
    """(r, o1, c1, h1, w1) of the paper and the layer's (o, c, h, w); the B factor's shape follows."""

    r: int
    o1: int
    c1: int
    h1: int
    w1: int
    o: int
    c: int
    h: int
    w: int

    def __post_init__(self):
        for name in ("r", "o1", "c1", "h1", "w1", "o", "c", "h", "w"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for whole, part in (("o", "o1"), ("c", "c1"), ("h", "h1"), ("w", "w1")):
            if getattr(self, whole) % getattr(self, part):
                raise ValueError(f"{part} = {getattr(self, part)} must divide {whole} = {getattr(self, whole)}")

    @property
    def o2(self) -> int:
        return self.o // self.o1

    @property
    def c2(self) -> int:
        return self.c // self.c1

    @property
    def h2(self) -> int:
        return self.h // self.h1

    @property
    def w2(self) -> int:
        return self.w // self.w1

    @property
    def a_shape(self) -> tuple[int, int, int, int]:
        return (self.o1, self.c1, self.h1, self.w1)

    @property
    def b_shape(self) -> tuple[int, int, int, int]:
        return (self.o2, self.c2, self.h2, self.w2)

    @property
    def weights(self) -> int:
        return self.r * (math.prod(self.a_shape) + math.prod(self.b_shape))

    def macs(self, height: int, width: int) -> int:
        """Multiply-adds of the two steps on an unpadded height x width input, stride 1: step 1 runs
        at (height - (h1 - 1) h2) x (width - (w1 - 1) w2) positions, step 2 at the output's."""
        first = (height - (self.h1 - 1) * self.h2) * (width - (self.w1 - 1) * self.w2)
        out = (height - self.h + 1) * (width - self.w + 1)
        return first * self.c2 * self.r * self.o1 * self.c1 * self.h1 * self.w1 \
            + out * self.o1 * self.r * self.o2 * self.c2 * self.h2 * self.w2

    def macs_per_output_pixel(self) -> int:
        """Multiply-adds per output position of the two steps (ignoring the first step's border)."""
        return self.c2 * self.r * self.o1 * self.c1 * self.h1 * self.w1 + self.o1 * self.r * self.o2 * self.c2 \
            * self.h2 * self.w2


def kron4(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The 4-D Kronecker product: (o1, c1, h1, w1) (x) (o2, c2, h2, w2) -> (o1 o2, c1 c2, h1 h2, w1 w2)."""
    if a.dim() != 4 or b.dim() != 4:
        raise ValueError(f"expected two 4-D tensors, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    out = torch.einsum("abpq,efst->aebfpsqt", a, b)
    return out.reshape(*(x * y for x, y in zip(a.shape, b.shape, strict=True)))


def kronecker_weight(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sum_i A_i (x) B_i for A (r, o1, c1, h1, w1) and B (r, o2, c2, h2, w2)."""
    return sum(kron4(a[i], b[i]) for i in range(a.shape[0]))


def nearest_kronecker(w: torch.Tensor, a_shape: tuple[int, int, int, int], r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The best sum of r Kronecker products (Frobenius norm) of the given A shape: Van Loan and
    Pitsianis's rearrangement R(W) (one row per A entry, one column per B entry) makes every
    A (x) B a rank-1 matrix vec(A) vec(B)^T, so the rank-r truncated SVD of R(W) is the answer."""
    o1, c1, h1, w1 = a_shape
    o, c, h, wd = w.shape
    b_shape = (o // o1, c // c1, h // h1, wd // w1)
    blocks = w.detach().double().reshape(o1, b_shape[0], c1, b_shape[1], h1, b_shape[2], w1, b_shape[3])
    rearranged = blocks.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(math.prod(a_shape), math.prod(b_shape))
    u, s, vh = torch.linalg.svd(rearranged, full_matrices=False)
    root = s[:r].sqrt()
    a = (u[:, :r] * root).T.reshape(r, *a_shape)
    b = (root[:, None] * vh[:r]).reshape(r, *b_shape)
    return a.to(w.dtype), b.to(w.dtype)


class KroneckerConv2d(nn.Module):
    """A convolution whose weight is sum_{i<r} A_i (x) B_i, run in two small convolutions."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], *, r: int, o1: int,
                 c1: int, h1: int, w1: int, stride: int = 1, padding: int | tuple[int, int] = 0, bias: bool = True):
        super().__init__()
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        self.shape = KronShape(r, o1, c1, h1, w1, out_channels, in_channels, kh, kw)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, (kh, kw)
        self.stride = stride
        self.padding = (padding, padding) if isinstance(padding, int) else tuple(padding)
        s = self.shape
        self.a = nn.Parameter(torch.empty(r, *s.a_shape))
        self.b = nn.Parameter(torch.empty(r, *s.b_shape))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """A ~ U(-1/sqrt(c1 h1 w1), .), B ~ U(-sqrt(3 / (r c2 h2 w2)), .): the composed weight's entries
        then have variance 1 / (3 c h w), a dense Conv2d's default (Kaiming-uniform, a = sqrt(5))."""
        s = self.shape
        nn.init.uniform_(self.a, -1 / math.sqrt(s.c1 * s.h1 * s.w1), 1 / math.sqrt(s.c1 * s.h1 * s.w1))
        bound = math.sqrt(3 / (s.r * s.c2 * s.h2 * s.w2))
        nn.init.uniform_(self.b, -bound, bound)
        if self.bias is not None:
            bound = 1 / math.sqrt(s.c * s.h * s.w)
            nn.init.uniform_(self.bias, -bound, bound)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, *, r: int, o1: int, c1: int, h1: int, w1: int) -> KroneckerConv2d:
        """The nearest sum of r Kronecker products to a trained convolution's weight."""
        if conv.groups != 1 or conv.dilation != (1, 1) or conv.stride[0] != conv.stride[1]:
            raise ValueError("only ungrouped, undilated convolutions with equal strides are converted")
        out = cls(conv.in_channels, conv.out_channels, conv.kernel_size, r=r, o1=o1, c1=c1, h1=h1, w1=w1,
                  stride=conv.stride[0], padding=conv.padding, bias=conv.bias is not None)
        a, b = nearest_kronecker(conv.weight, (o1, c1, h1, w1), r)
        with torch.no_grad():
            out.a.copy_(a)
            out.b.copy_(b)
            if conv.bias is not None:
                out.bias.copy_(conv.bias)
        return out.to(conv.weight.device)

    def weight(self) -> torch.Tensor:
        """The dense (o, c, h, w) weight (for tests and conversions; never used by forward)."""
        return kronecker_weight(self.a, self.b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, n = self.shape, x.shape[0]
        if any(self.padding):
            x = F.pad(x, (self.padding[1], self.padding[1], self.padding[0], self.padding[0]))
        height, width = x.shape[-2:]
        # step 1: input channel b c2 + f belongs to group f; reorder the channels group by group and run
        # one grouped convolution whose c2 groups share A (r o1 outputs each), dilated by (h2, w2)
        if s.c2 > 1:
            x = x.view(n, s.c1, s.c2, height, width).transpose(1, 2).reshape(n, s.c, height, width)
        a = self.a.reshape(s.r * s.o1, s.c1, s.h1, s.w1)
        # a dilation along an axis the kernel does not span changes nothing but can leave the fast path
        dilation = (s.h2 if s.h1 > 1 else 1, s.w2 if s.w1 > 1 else 1)
        first = F.conv2d(x, a.repeat(s.c2, 1, 1, 1) if s.c2 > 1 else a, dilation=dilation, groups=s.c2)
        h1_out, w1_out = first.shape[-2:]
        # channels (f, i, a) -> (a, i, f): step 2 is one grouped convolution, a group per output block a,
        # all sharing B: (r c2) channels in, o2 out, output channel a o2 + e
        first = first.view(n, s.c2, s.r, s.o1, h1_out, w1_out).permute(0, 3, 2, 1, 4, 5)
        first = first.reshape(n, s.o1 * s.r * s.c2, h1_out, w1_out)
        b = self.b.permute(1, 0, 2, 3, 4).reshape(s.o2, s.r * s.c2, s.h2, s.w2)
        out = F.conv2d(first, b.repeat(s.o1, 1, 1, 1), self.bias, stride=self.stride, groups=s.o1)
        return out

    def extra_repr(self) -> str:
        s = self.shape
        return (f"{s.c}, {s.o}, kernel=({s.h}, {s.w}), (r, o1, c1, h1, w1)=({s.r}, {s.o1}, {s.c1}, {s.h1}, {s.w1}), "
                f"stride={self.stride}, padding={self.padding}")
