"""The cache's producer columns (cache.py): what computed each photo's fingerprint, such as "openvino-bf16".

Runtimes that agree within models.RUNTIME_MIN_COSINE share a model id, so one cache may hold fingerprints of
several; these columns say which made each. They are a short list of names ("producers") and one uint8 index per
photo ("producer"), UNKNOWN for a photo with no producer on record: a failure, a fingerprint from a cache before
version 3, or a model without a `runtime`.
"""
from __future__ import annotations

import numpy as np

from .cache_guard import column

UNKNOWN = 0xFF
PRODUCER_MAX = 64  # a runtime name is a few words ("openvino-bf16"); a longer one is not ours


def check_producer(producer: str | None) -> None:
    """ValueError unless `producer` is None or a name the file can hold."""
    if producer is not None and (type(producer) is not str or not 0 < len(producer) <= PRODUCER_MAX):
        raise ValueError(f"a producer must be a name of 1 to {PRODUCER_MAX} characters")


def producers_to_columns(producers: list[str | None]) -> tuple[list[str], np.ndarray]:
    """The "producers" names and the "producer" column of index bytes, one per photo."""
    names = sorted({p for p in producers if p is not None})
    if len(names) >= UNKNOWN:
        raise ValueError(f"more than {UNKNOWN - 1} producers in one cache")
    index = {name: i for i, name in enumerate(names)}
    return names, np.array([UNKNOWN if p is None else index[p] for p in producers], np.uint8)


def columns_to_producers(data: dict, n: int) -> list[str | None]:
    """Each photo's producer, checked: a name list or index that does not fit is a ValueError or TypeError."""
    names, indices = data["producers"], column(data, "producer", np.uint8)
    if not isinstance(names, list) or len(names) >= UNKNOWN or len(set(names)) != len(names):
        raise TypeError("producers are not a list of distinct names")
    for name in names:
        check_producer(name)
    if len(indices) != n:
        raise ValueError("producer column length disagrees")
    if np.any((indices >= len(names)) & (indices != UNKNOWN)):
        raise ValueError("producer index out of range")
    lookup = names + [None] * (UNKNOWN + 1 - len(names))  # one shared string per producer, not one per photo
    return [lookup[i] for i in indices.tolist()]
