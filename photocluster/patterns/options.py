"""The pattern settings as the miner uses them: minimum probability, minimum support, label level, object source.

Their defaults and checks have one home, settings.PatternOptions (the user's names for them); PatternSettings adds
what mining needs: the minimum support as a photo count.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..settings import PatternOptions
from ..wording import plural

MIN_FRACTION_COUNT = 2  # a fractional minimum support never asks for fewer photos than this


@dataclass(frozen=True)
class PatternSettings:
    """min_probability: the lowest probability that makes a prediction an object of the photo, in (0, 1].
    min_support: a photo count (whole number >= 1) or a fraction of a folder's photos (0 < x < 1).
    level: the label level, "coarse" (rolled up, readable) or "fine" (the 1000 ImageNet classes).
    objects: where a photo's objects come from: "detector", "imagenet" or "both" (see objects.py).
    min_probability is also the minimum detection score."""

    min_probability: float = PatternOptions.threshold
    min_support: int | float = PatternOptions.min_support
    level: str = PatternOptions.labels
    objects: str = PatternOptions.objects

    def __post_init__(self) -> None:
        PatternOptions(True, self.min_probability, self.min_support, self.level, self.objects).validate()

    @classmethod
    def from_options(cls, options: PatternOptions) -> PatternSettings:
        return cls(min_probability=options.threshold, min_support=options.min_support, level=options.labels,
                   objects=options.objects)

    def min_count(self, photos: int) -> int:
        """The minimum support as a photo count for a set of `photos` photos."""
        if self.min_support >= 1:
            return int(self.min_support)
        # round() first: 0.1 * 30 is 3.0000000000000004 in floating point, which must stay 3
        return max(MIN_FRACTION_COUNT, math.ceil(round(self.min_support * photos, 9)))

    def describe_support(self, photos: int) -> str:
        count = self.min_count(photos)
        if self.min_support >= 1:
            return plural(count, "photo")
        return f"{plural(count, 'photo')} ({self.min_support * 100:g}% of {photos}, at least {MIN_FRACTION_COUNT})"


def parse_min_support(text: str) -> int | float:
    """A command-line minimum support: "5" (photos), "0.1" or "10%" (fraction). ValueError names the setting."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise ValueError(f"min_support must be a number, a fraction or a percentage, got {text!r}") from None
    if value >= 1 and value == int(value):
        value = int(value)
    PatternSettings(min_support=value)  # validates
    return value
