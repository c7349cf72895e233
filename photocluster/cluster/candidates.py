"""Candidate pairs for scene verification: each photo's nearest neighbours in a band of cosines below the cut.

Two shots of one scene often have a cosine well below the cut, where unrelated photos that merely look alike
are as common (issue 12). A pair in the band [floor, cut) is only a candidate: the scenes stage verifies it. To
keep verification cheap each photo proposes only its `k` nearest photos in the band; the candidates are the
union of those lists (a pair is a candidate when either photo lists the other).

`BandNeighbours` keeps the lists current as photos come and go, so the daemon pays for one new photo's
neighbours only: a new photo's list is one pass over the library, and it joins an old photo's list when it is
closer than that list's last entry. A photo whose list lost an entry (a photo left or changed) is searched
again. A bulk change searches everything. The search is exhaustive (blocked float32 products of unit vectors),
so the lists are the same whatever the arrival order, except where two neighbours tie within float32 rounding.
Memory: the unit fingerprints as float32 (N x dim x 4 bytes) and k neighbours per photo.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

_QUERY_BLOCK = 512  # queries per product: a block of sims is 512 x N x 4 bytes (200 MB at 100,000 photos)


class BandNeighbours:
    """Each photo's k nearest photos with floor <= cosine < cut, photos keyed by path."""

    BULK_FRACTION = 4  # an update adding more than 1/4 of the photos rebuilds every list

    def __init__(self, floor: float, cut: float, k: int):
        if not (-1.0 <= floor <= cut <= 1.0) or k < 1:
            raise ValueError(f"need -1 <= floor <= cut <= 1 and k >= 1, got floor {floor}, cut {cut}, k {k}")
        self.floor, self.cut, self.k = float(floor), float(cut), int(k)
        self._slot: dict[str, int] = {}
        self._path: list[str | None] = []
        self._free: list[int] = []
        self._unit = np.zeros((0, 0), np.float32)
        self._usable = np.zeros(0, bool)
        self._lists: list[list[tuple[float, int]]] = []  # per slot: (cosine, slot), best first

    def __len__(self) -> int:
        return len(self._slot)

    def update(self, added: Mapping[str, np.ndarray] | None = None, removed: Iterable[str] = ()) -> None:
        """Add new or changed photos (path -> fingerprint) and forget `removed` ones."""
        added = dict(added or {})
        gone = {p for p in removed if p in self._slot} | {p for p in added if p in self._slot}
        gone_slots = {self._slot[p] for p in gone}
        for path in gone:
            self._forget(path)
        new_slots = [self._store(path, vector) for path, vector in added.items()]
        if len(new_slots) * self.BULK_FRACTION > len(self._slot):
            self._search(np.array(sorted(self._slot.values()), np.int64))
            return
        lost = [s for s in self._slot.values()
                if s not in new_slots and any(o in gone_slots for _, o in self._lists[s])]
        self._search(np.array(sorted(set(new_slots) | set(lost)), np.int64), offer=np.array(new_slots, np.int64))

    def pairs(self) -> dict[tuple[str, str], float]:
        """The candidate pairs, each as (smaller path, larger path), with their cosine."""
        found = {}
        for path, slot in self._slot.items():
            for sim, other in self._lists[slot]:
                found[tuple(sorted((path, self._path[other])))] = sim
        return found

    def neighbours(self, path: str) -> list[tuple[str, float]]:
        """`path`'s own list: (path, cosine), nearest first."""
        return [(self._path[o], sim) for sim, o in self._lists[self._slot[path]]]

    # -- search ------------------------------------------------------------------------------------------------

    def _search(self, queries: np.ndarray, offer: np.ndarray | None = None) -> None:
        """Recompute the lists of `queries`; photos `offer` also join other photos' lists where they rank."""
        live = np.array(sorted(s for s in self._slot.values() if self._usable[s]), np.int64)
        queries = queries[self._usable[queries]]
        offered = set() if offer is None else set(offer.tolist())
        for start in range(0, len(queries), _QUERY_BLOCK):
            block = queries[start:start + _QUERY_BLOCK]
            sims = self._unit[block] @ self._unit[live].T
            in_band = (sims >= self.floor) & (sims < self.cut) & (block[:, None] != live[None, :])
            for row, query in enumerate(block.tolist()):
                hits = np.flatnonzero(in_band[row])
                self._lists[query] = self._best(sims[row, hits], live[hits])
                if query in offered:
                    self._offer(query, sims[row, hits], live[hits])

    def _best(self, sims: np.ndarray, slots: np.ndarray) -> list[tuple[float, int]]:
        if len(sims) > self.k:
            keep = np.argpartition(-sims, self.k - 1)[:self.k + 8]  # a few spare, so ties are settled below
            sims, slots = sims[keep], slots[keep]
        order = np.lexsort((slots, -sims))[:self.k]  # nearest first, ties by slot
        return [(float(sims[i]), int(slots[i])) for i in order]

    def _offer(self, new: int, sims: np.ndarray, slots: np.ndarray) -> None:
        """Put `new` into the lists of the photos it is nearer to than their last entry."""
        for sim, slot in zip(sims.tolist(), slots.tolist()):
            entries = self._lists[slot]
            if len(entries) < self.k or (sim, -new) > (entries[-1][0], -entries[-1][1]):
                merged = [e for e in entries if e[1] != new] + [(sim, new)]
                merged.sort(key=lambda e: (-e[0], e[1]))
                self._lists[slot] = merged[:self.k]

    # -- bookkeeping -------------------------------------------------------------------------------------------

    def _store(self, path: str, vector: np.ndarray) -> int:
        row = np.asarray(vector, np.float64).reshape(-1)
        norm = float(np.sqrt(row @ row)) if np.all(np.isfinite(row)) else 0.0
        if self._unit.shape[1] not in (0, len(row)):
            raise ValueError(f"fingerprint of {path!r} has {len(row)} numbers, expected {self._unit.shape[1]}")
        if not self._free:
            self._grow(len(row))
        slot = self._free.pop()
        # A zero or non-finite fingerprint has no direction, so no neighbours (as it is a singleton in clustering)
        self._unit[slot] = row / norm if norm > 0 else 0.0
        self._usable[slot] = norm > 0
        self._slot[path], self._path[slot], self._lists[slot] = slot, path, []
        return slot

    def _forget(self, path: str) -> None:
        slot = self._slot.pop(path)
        self._path[slot], self._lists[slot] = None, []
        self._unit[slot], self._usable[slot] = 0.0, False
        self._free.append(slot)

    def _grow(self, dim: int) -> None:
        old = len(self._path)
        size = max(64, 2 * old)
        unit = np.zeros((size, dim), np.float32)
        if old:
            unit[:old] = self._unit
        self._unit = unit
        self._usable = np.concatenate([self._usable, np.zeros(size - old, bool)])
        self._path.extend([None] * (size - old))
        self._lists.extend([] for _ in range(size - old))
        self._free.extend(range(size - 1, old - 1, -1))
