"""How counts and durations read in the lines photocluster prints and logs."""
from __future__ import annotations


def plural(count: int, noun: str, plural_noun: str | None = None) -> str:
    """'1 photo', '2 photos', '1,234 libraries' (give `plural_noun` where adding an s is wrong)."""
    return f"{count:,} {noun if count == 1 else plural_noun or noun + 's'}"


def duration(seconds: float) -> str:
    """A rough duration for estimates: '40 seconds', '3 minutes', '2.5 hours'."""
    if seconds < 90:
        return plural(max(1, round(seconds)), "second")
    if seconds < 90 * 60:
        return plural(round(seconds / 60), "minute")
    hours = round(seconds / 3600, 1)
    return f"{hours:g} hour" if hours == 1 else f"{hours:,g} hours"
