"""What the packed bits of an operand stand for (the "form" a quantizer's output takes).

- `Signs()`: values s sign, sign in {-1, +1} (bit 1 = -1); the scale s (1, XNOR-Net's alpha per
  output channel, DoReFa's E|W|) is passed beside the bits.
- `Codes(bits, step, offset)`: values step c + offset, c in {0, ..., 2^bits - 1} (DoReFa's k-bit
  activations: step 1/(2^k - 1), offset 0; its k-bit weights: step 2/(2^k - 1), offset -1).
- `MaskedSigns(scale)`: values scale sign or 0 (an input sign followed by dropout while training:
  the kept ones scaled by 1 / (1 - p)); packed as two planes, the signs and the nonzero bits.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Signs:
    pass


@dataclass(frozen=True)
class MaskedSigns:
    scale: float = 1.0


@dataclass(frozen=True)
class Codes:
    bits: int
    step: float
    offset: float = 0.0

    @property
    def top(self) -> int:
        return 2**self.bits - 1

    def symmetric(self) -> bool:
        """The levels 2 c / n - 1 of [-1, 1] (DoReFa's k-bit weights)."""
        return self.offset == -1.0 and abs(self.step * self.top - 2.0) < 1e-12
