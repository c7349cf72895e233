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
The candidate pairs are kept too, and only those of the lists an update changed are looked at again, so one new
photo in a 100,000-photo library costs one product and a few lists, not a pass over every list.
Memory: the unit fingerprints as float32 (N x dim x 4 bytes) and k neighbours per photo (twice: as tuples, and as
an array that finds the lists naming a photo that left).
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
        self._rows = np.zeros((0, self.k), np.int64)  # per slot: its list's slots, -1 padded (who names a slot)
        # per slot: when its photo came. A pair both lists name takes the later photo's cosine, as a fresh pass
        # over the photos in arrival order does (the two products may differ in the last float32 bit).
        self._order: list[int] = []
        self._arrivals = 0
        self._pairs: dict[tuple[str, str], float] = {}  # kept current, so an update costs its changes only
        self._touched: set[tuple[str, str]] | None = None  # during an update: pairs whose lists changed

    def __len__(self) -> int:
        return len(self._slot)

    def update(self, added: Mapping[str, np.ndarray] | None = None, removed: Iterable[str] = ()) -> None:
        """Add new or changed photos (path -> fingerprint) and forget `removed` ones."""
        added = dict(added or {})
        gone = {p for p in removed if p in self._slot} | {p for p in added if p in self._slot}
        gone_slots = [self._slot[p] for p in gone]
        lost = self._naming(gone_slots)
        self._touched = set()
        try:
            for slot in gone_slots + lost:  # their pairs now, while every slot still holds its photo
                self._note(slot, self._lists[slot])
            for path in gone:
                self._forget(path)
            new_slots = [self._store(path, vector) for path, vector in added.items()]
            if len(new_slots) * self.BULK_FRACTION > len(self._slot):
                self._touched = None
                self._search(np.flatnonzero(self._usable))
                self._pairs = self._all_pairs()
                return
            new = set(new_slots)
            lost = [s for s in lost if s not in new and self._path[s] is not None]
            self._search(np.array(sorted(new | set(lost)), np.int64), offer=np.array(new_slots, np.int64))
        finally:  # the pairs follow the lists, even when a fingerprint of another width stopped the update
            if self._touched is not None:
                self._settle()

    def pairs(self) -> dict[tuple[str, str], float]:
        """The candidate pairs, each as (smaller path, larger path), with their cosine."""
        return dict(self._pairs)

    def neighbours(self, path: str) -> list[tuple[str, float]]:
        """`path`'s own list: (path, cosine), nearest first."""
        return [(self._path[o], sim) for sim, o in self._lists[self._slot[path]]]

    # -- search ------------------------------------------------------------------------------------------------

    def _search(self, queries: np.ndarray, offer: np.ndarray | None = None) -> None:
        """Recompute the lists of `queries`; photos `offer` also join other photos' lists where they rank."""
        queries = queries[self._usable[queries]]
        offered = set() if offer is None else set(offer.tolist())
        # Against the slots up to the last photo's (free slots are zero rows, masked out): a view, so an update
        # copies no fingerprints. Slots are taken lowest first, so few free ones lie below the last photo's.
        end = int(np.flatnonzero(self._usable)[-1]) + 1 if len(queries) else 0
        usable, unit = self._usable[:end], self._unit[:end]
        for start in range(0, len(queries), _QUERY_BLOCK):
            block = queries[start:start + _QUERY_BLOCK]
            sims = self._unit[block] @ unit.T
            in_band = (sims >= self.floor) & (sims < self.cut) & usable[None, :]
            in_band[np.arange(len(block)), block] = False
            for row, query in enumerate(block.tolist()):
                hits = np.flatnonzero(in_band[row])
                self._set_list(query, self._best(sims[row, hits], hits))
                if query in offered:
                    self._offer(query, sims[row, hits], hits)

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
                self._set_list(slot, merged[:self.k])

    # -- the pairs, kept current -------------------------------------------------------------------------------

    def _naming(self, slots: list[int]) -> list[int]:
        """The slots whose lists name any of `slots` (searched again when those photos leave)."""
        if not slots:
            return []
        return np.flatnonzero(np.isin(self._rows, slots).any(axis=1)).tolist()

    def _set_list(self, slot: int, entries: list[tuple[float, int]]) -> None:
        if self._touched is not None:
            self._note(slot, self._lists[slot])
            self._note(slot, entries)
        self._lists[slot] = entries
        self._rows[slot] = -1
        self._rows[slot, :len(entries)] = [o for _, o in entries]

    def _note(self, slot: int, entries: list[tuple[float, int]]) -> None:
        """Note the pairs of `slot` with `entries` as touched (their cosine is looked up again in _settle)."""
        me = self._path[slot]
        for _, other in entries:
            path = self._path[other]
            if me is not None and path is not None:
                self._touched.add((me, path) if me < path else (path, me))

    def _settle(self) -> None:
        """Bring the touched pairs up to date: gone when neither photo lists the other."""
        for pair in self._touched:
            sim = self._pair_cosine(*pair)
            if sim is None:
                self._pairs.pop(pair, None)
            else:
                self._pairs[pair] = sim
        self._touched = None

    def _pair_cosine(self, a: str, b: str) -> float | None:
        sa, sb = self._slot.get(a), self._slot.get(b)
        if sa is None or sb is None:
            return None
        named = [(self._order[s], sim) for s, o in ((sa, sb), (sb, sa)) for sim, x in self._lists[s] if x == o]
        return max(named)[1] if named else None

    def _all_pairs(self) -> dict[tuple[str, str], float]:
        found = {}
        for path, slot in self._slot.items():  # in arrival order: a pair both lists name takes the later cosine
            for sim, other in self._lists[slot]:
                found[tuple(sorted((path, self._path[other])))] = sim
        return found

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
        self._slot[path], self._path[slot] = slot, path
        self._set_list(slot, [])
        self._order[slot], self._arrivals = self._arrivals, self._arrivals + 1
        return slot

    def _forget(self, path: str) -> None:
        slot = self._slot.pop(path)
        self._set_list(slot, [])
        self._path[slot] = None
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
        self._rows = np.concatenate([self._rows, np.full((size - old, self.k), -1, np.int64)])
        self._path.extend([None] * (size - old))
        self._lists.extend([] for _ in range(size - old))
        self._order.extend([0] * (size - old))
        self._free.extend(range(size - 1, old - 1, -1))
