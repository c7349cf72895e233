"""Photos that moved or vanished since the last run: their cache entries follow them or go."""
from __future__ import annotations

from collections import Counter

from .cache import FingerprintCache
from .library import PhotoFile


def rekey_moved(cache: FingerprintCache, photos: dict[str, PhotoFile]) -> dict[str, str]:
    """Carry fingerprints over to photos that were moved or renamed inside the library; return old -> new path.

    A move keeps a file's size and mtime (to the nanosecond), so a new path whose (size, mtime_ns) matches exactly
    one vanished cache entry, and no other new path, is that photo under its new name. This finds moves made
    while no daemon was watching, too.
    """
    gone = [rel for rel in cache.entries if rel not in photos]
    if not gone:
        return {}
    arrived = [p for rel, p in photos.items() if rel not in cache.entries]
    by_stamp: dict[tuple[int, int], list[str]] = {}
    for rel in gone:
        entry = cache.entries[rel]
        by_stamp.setdefault((entry.size, entry.mtime_ns), []).append(rel)
    arrived_stamps = Counter((p.size, p.mtime_ns) for p in arrived)
    moved = {}
    for photo in arrived:
        stamp = (photo.size, photo.mtime_ns)
        if len(by_stamp.get(stamp, ())) == 1 and arrived_stamps[stamp] == 1:
            cache.rename(by_stamp[stamp][0], photo.rel)
            moved[by_stamp[stamp][0]] = photo.rel
    return moved


def forget_missing(cache: FingerprintCache, photos: dict[str, PhotoFile]) -> int:
    """Drop cache entries of photos that are gone from the library."""
    gone = [rel for rel in cache.entries if rel not in photos]
    for rel in gone:
        cache.remove(rel)
    return len(gone)
