"""Types for recipe fields that say more than `int` or `str`: ranges and closed choices.

A recipe field annotated `PositiveInt` or `Literal["gru", "lstm"]` is checked when the recipe is
loaded (`s2s.recipe.coerce`), before anything is written to a run directory, so `hidden_dim: -2`
or `cell: lstn` is one clear line naming the key, never a traceback minutes later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated


@dataclass(frozen=True)
class Range:
    """Bounds a number must respect; `open_low` excludes `low` itself (e.g. a learning rate > 0)."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def check(self, value: float) -> str | None:
        """None if `value` is in range, else what it must be."""
        if self.low is not None and (value < self.low or (self.open_low and value == self.low)):
            return f"{'greater than' if self.open_low else 'at least'} {self.low:g}"
        if self.high is not None and (value > self.high or (self.open_high and value == self.high)):
            return f"{'less than' if self.open_high else 'at most'} {self.high:g}"
        return None


PositiveInt = Annotated[int, Range(low=1)]
NonNegativeInt = Annotated[int, Range(low=0)]
PositiveFloat = Annotated[float, Range(low=0, open_low=True)]
NonNegativeFloat = Annotated[float, Range(low=0)]
Probability = Annotated[float, Range(low=0, high=1, open_high=True)]  # dropout: 1 would drop all
Fraction = Annotated[float, Range(low=0, high=1)]
