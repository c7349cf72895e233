"""Mining: each photo's objects are a transaction; the maximal frequent itemsets are the patterns.

mlxtend's fpmax does the mining (BSD, pure Python wheel; Borgelt's pyfim is an sdist that needs a C compiler at
install time, and PAMI is GPL-3). Unlike PAMI's MaxFPGrowth, which drops transactions of one item before mining,
maximal itemsets of a single object are kept.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..labels import Predictions
from .options import PatternSettings

Pattern = tuple[tuple[str, ...], int]  # the object names of a maximal itemset, and how many photos hold them all


def photo_objects(predictions: Predictions | None, names: Sequence[str], min_probability: float) -> dict[str, float]:
    """A photo's objects: object name -> highest probability, for predictions at or above `min_probability`.

    `names` names each class at the chosen label level. Most probable first (ties by name). Classes that the
    roll-up names alike collapse into one object.
    """
    objects: dict[str, float] = {}
    for index, probability in predictions or ():
        if probability >= min_probability:
            name = names[index]
            objects[name] = max(probability, objects.get(name, 0.0))
    return dict(sorted(objects.items(), key=lambda item: (-item[1], item[0])))


def mine_maximal(transactions: Sequence[Collection[str]], min_count: int,
                 weight: Mapping[str, float] | None = None) -> list[Pattern]:
    """The maximal itemsets that occur in at least `min_count` transactions, with their counts.

    Sorted by count (highest first), then by size (largest first), then by items. Within a pattern the items go
    by `weight` (highest first; default: how many transactions hold the item), then by name. Maximal itemsets of
    one item are reported too.
    """
    from mlxtend.frequent_patterns import fpmax  # imported here: pandas + mlxtend cost ~0.5 s to import

    total = len(transactions)
    item_counts = Counter(item for transaction in transactions for item in set(transaction))
    frequent = sorted(item for item, count in item_counts.items() if count >= min_count)
    if not total or not frequent:
        return []
    column = {item: j for j, item in enumerate(frequent)}
    onehot = np.zeros((total, len(frequent)), dtype=bool)
    for row, transaction in enumerate(transactions):
        for item in transaction:
            if item in column:
                onehot[row, column[item]] = True
    import pandas as pd

    # fpmax takes a fractional support and compares count/total >= it; half a photo below min_count makes that
    # comparison exact for whole counts, free of floating-point ties.
    found = fpmax(pd.DataFrame(onehot, columns=frequent), min_support=(min_count - 0.5) / total, use_colnames=True)
    patterns = []
    for support, itemset in zip(found["support"], found["itemsets"]):
        items = tuple(sorted(itemset, key=lambda item: (-(weight or item_counts)[item], item)))
        patterns.append((items, round(support * total)))
    patterns.sort(key=lambda pattern: (-pattern[1], -len(pattern[0]), pattern[0]))
    return patterns


@dataclass
class PhotoObjects:
    """One photo's transaction: its objects, with their probabilities (or detection scores), and utilities."""

    rel: str  # library-relative path
    objects: dict[str, float]  # most confident first
    utilities: dict[str, int] = field(default_factory=dict)  # how many of each were found; missing: one

    def utility(self, item: str) -> int:
        return self.utilities.get(item, 1)


@dataclass
class Summary:
    """One summary folder's mined patterns."""


    title: str  # the folder's library path, or a description
    photos: list[PhotoObjects]
    patterns: list[Pattern]
    object_counts: Counter  # photos holding each object
    min_count: int
    instance_counts: Counter = field(default_factory=Counter)  # each object's instances over all the photos


def summarise(title: str, photos: list[PhotoObjects], settings: PatternSettings) -> Summary:
    min_count = settings.min_count(len(photos))
    transactions = [photo.objects.keys() for photo in photos]
    confidence: Counter = Counter()  # summed probability: the main object of "tram + street sign" goes first
    for photo in photos:
        confidence.update(photo.objects)
    patterns = mine_maximal(transactions, min_count, confidence)
    counts = Counter(item for transaction in transactions for item in transaction)
    instances: Counter = Counter()  # one pass over the photos, not one per object: 100,000 photos take 0.1 s
    for photo in photos:
        for item in photo.objects:
            instances[item] += photo.utility(item)
    return Summary(title, photos, patterns, counts, min_count, instances)


def transaction_stats(transactions: Sequence[Collection[str]]) -> tuple[float, float]:
    """The share of transactions with two or more items, and the mean number of items per transaction (issue 13's
    measures: how often a photo shows objects together). (0.0, 0.0) for no transactions."""
    if not transactions:
        return 0.0, 0.0
    sizes = [len(set(transaction)) for transaction in transactions]
    return sum(1 for size in sizes if size >= 2) / len(sizes), sum(sizes) / len(sizes)
