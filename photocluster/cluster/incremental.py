"""Incremental clustering for the daemon: re-cluster only the components that a change touches."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from . import search
from .api import all_non_negative, check_cut, labels_from_first
from .core import GRAPH_MARGIN, ClusterError, ClusterParams, TooManyEdges, inverse_norms, paired_distances, unit64
from .linkage import component_roots, split_by, warn_oversized


class IncrementalClusterer:
    """The clusters of a changing set of photos, kept current by re-clustering only what a change touches.

    Photos are keyed by their path (str). `update(added, removed)` takes new or changed fingerprints and the
    paths that are gone; it finds the new photos' pairs within the cut by an exhaustive search, and re-clusters
    only the graph components that gained or lost a photo (a removal can split a component; its remaining photos
    get their components recomputed). The search is always exhaustive, also for a bulk update of many photos, so
    the clusters never depend on the order in which photos arrived or left: they are the partition that
    `cluster()` gives for the current photos, in sorted path order, whenever `cluster()`'s own search is exact
    (up to `ClusterParams.exact_search_max` photos; above, `cluster()` is approximate and this stays exact).
    `labels(paths)` returns exactly those labels.

    A cluster is named by its representative, the smallest path in it, which stays put while the cluster keeps
    that photo. `update` returns {path: representative} for every photo in the re-clustered components (the
    only ones whose clusters can have changed; removed paths are absent); `assignment()` gives all of them.

    Memory: the fingerprints (float32), the pairs within the cut with their distances, and a few ints per photo.
    """

    BULK_MIN = 256  # an update adding more photos than this and than a quarter of all searches everything at once

    def __init__(self, cut: float, params: ClusterParams | None = None):
        self.cut = check_cut(cut)
        self.params = params or ClusterParams()
        self._dim = 0  # fixed by the first fingerprint stored
        self._slot: dict[str, int] = {}
        self._key: list[str | None] = []
        self._free: list[int] = []
        self._rows = np.zeros((0, 0), np.float32)
        self._inv = np.zeros(0)
        self._near: list[dict[int, float]] = []  # per slot: {slot: cosine distance} of its pairs within the cut
        self._component = np.zeros(0, np.int64)
        self._component_members: dict[int, np.ndarray] = {}
        self._cluster = np.zeros(0, np.int64)  # cluster id per slot
        self._cluster_members: dict[int, list[int]] = {}
        self._cluster_rep: dict[int, str] = {}
        self._next_id = 0

    def __len__(self) -> int:
        return len(self._slot)

    def __contains__(self, path: object) -> bool:
        return path in self._slot

    def update(self, added: Mapping[str, np.ndarray] | None = None, removed: Iterable[str] = ()) -> dict[str, str]:
        """Apply the changes; return {path: representative} for the photos whose clusters were recomputed.

        A path in `added` that is already known is replaced (its fingerprint changed). Unknown removed paths are
        ignored. A bad fingerprint (wrong length, not numbers) raises ValueError before anything changes.
        """
        added = dict(added or {})
        new_rows = self._check_added(added)
        gone = {p for p in removed if p in self._slot} | {p for p in added if p in self._slot}
        dirty = {int(self._component[self._slot[p]]) for p in gone}
        for path in gone:
            self._forget(path)
        new_slots = [self._store(path, row) for path, row in zip(added, new_rows)]
        try:
            if self.cut <= 0 or len(new_slots) > max(self.BULK_MIN, len(self._slot) // 4):
                touched = self._rebuild_graph()  # a bulk change: one search over everything is cheaper
            else:
                touched = self._link(np.array(new_slots, np.int64), dirty)
        except TooManyEdges:
            raise ClusterError(
                f"cut {self.cut:.3f} links more than {self.params.max_edges:,} pairs of the {len(self):,} photos; "
                "use a higher sim (this clusterer must now be rebuilt)") from None
        return self._recluster(touched)

    def assignment(self) -> dict[str, str]:
        """{path: representative} for every photo."""
        return {path: self._cluster_rep[self._cluster[slot]] for path, slot in self._slot.items()}

    def clusters(self) -> list[list[str]]:
        """All clusters (singletons too) as sorted path lists, ordered by representative."""
        return sorted(sorted(self._key[s] for s in members) for members in self._cluster_members.values())

    def labels(self, paths: Sequence[str], min_size: int = 1) -> np.ndarray:
        """cluster()'s labels for the photos listed in this order (`paths` must name each known photo once)."""
        if len(paths) != len(self._slot) or set(paths) != self._slot.keys():
            raise ValueError("labels() needs every known photo exactly once")
        _, ids = np.unique(self._cluster[[self._slot[p] for p in paths]], return_inverse=True)
        first = np.full(len(paths), len(paths))
        np.minimum.at(first, ids, np.arange(len(paths)))
        return labels_from_first(first[ids], min_size)

    # -- bookkeeping -------------------------------------------------------------------------------------------

    def _check_added(self, added: dict[str, np.ndarray]) -> list[np.ndarray]:
        rows = []
        for path, vector in added.items():
            try:
                row = np.asarray(vector, dtype=np.float32).reshape(-1)
            except (TypeError, ValueError):
                raise ValueError(f"fingerprint of {path!r} is not an array of numbers") from None
            dim = self._dim or (len(rows[0]) if rows else len(row))
            if len(row) != dim or dim == 0:
                raise ValueError(f"fingerprint of {path!r} has {len(row)} numbers, expected {dim}")
            rows.append(row)
        return rows

    def _store(self, path: str, row: np.ndarray) -> int:
        self._dim = len(row)
        if not self._free:
            self._grow(len(row))
        slot = self._free.pop()
        self._slot[path] = slot
        self._key[slot] = path
        self._rows[slot] = row
        self._inv[slot] = inverse_norms(row[None, :])[0]
        self._component[slot] = -1
        return slot

    def _grow(self, dim: int) -> None:
        old = len(self._key)
        new = max(64, 2 * old)
        rows = np.zeros((new, dim), np.float32)
        if old:
            rows[:old] = self._rows
        self._rows = rows
        self._inv = np.concatenate([self._inv, np.zeros(new - old)])
        self._component = np.concatenate([self._component, np.full(new - old, -1)])
        self._cluster = np.concatenate([self._cluster, np.full(new - old, -1)])
        self._key.extend([None] * (new - old))
        self._near.extend({} for _ in range(new - old))
        self._free.extend(range(new - 1, old - 1, -1))  # pop() hands out the lowest slot first

    def _forget(self, path: str) -> None:
        slot = self._slot.pop(path)
        for other in self._near[slot]:
            self._near[other].pop(slot, None)
        self._near[slot] = {}
        self._key[slot] = None
        self._inv[slot] = 0.0
        self._rows[slot] = 0.0
        self._drop_cluster_of(slot)
        self._component[slot] = -1
        self._free.append(slot)

    def _drop_cluster_of(self, slot: int) -> None:
        cid = int(self._cluster[slot])
        if cid >= 0:
            for member in self._cluster_members.pop(cid, []):
                self._cluster[member] = -1
            self._cluster_rep.pop(cid, None)

    # -- the graph of pairs within the cut ---------------------------------------------------------------------

    def _alive(self) -> np.ndarray:
        return np.array(sorted(self._slot.values()), np.int64)

    def _rebuild_graph(self) -> np.ndarray:
        alive = self._alive()
        for slot in range(len(self._key)):
            self._near[slot] = {}
        usable = alive[self._inv[alive] > 0]
        if not self._everything_joins(usable):
            first, second = search.pairs_exact(self._rows, self._inv, usable, self.cut - GRAPH_MARGIN, self.params)
            self._add_pairs(usable[first], usable[second])
        return alive

    def _link(self, new_slots: np.ndarray, dirty: set[int]) -> np.ndarray:
        """Add the new photos' pairs; return every slot whose component may change."""
        usable_new = new_slots[self._inv[new_slots] > 0]
        if len(usable_new):
            stored = max(self._slot.values()) + 1  # slots above are free: not worth a look
            q, r = search.pairs_between(self._rows, self._inv, usable_new, stored, self.cut - GRAPH_MARGIN,
                                        self.params.block)
            for other in self._add_pairs(usable_new[q], r):
                dirty.add(int(self._component[other]))
        dirty.discard(-1)
        touched = [new_slots] + [self._component_members.pop(c) for c in dirty if c in self._component_members]
        touched = np.unique(np.concatenate(touched))
        return touched[[self._key[s] is not None for s in touched]] if len(touched) else touched

    def _add_pairs(self, first: np.ndarray, second: np.ndarray) -> list[int]:
        """Keep the pairs (slots) whose float64 distance is within the cut, exactly as `cluster()` measures
        them; return the slots they touch."""
        keep = first != second
        first, second = first[keep], second[keep]
        distance = paired_distances(self._rows, self._inv, first, second)
        within = distance <= 1.0 - self.cut
        first, second, distance = first[within].tolist(), second[within].tolist(), distance[within].tolist()
        for i, j, d in zip(first, second, distance):
            self._near[i][j] = self._near[j][i] = d
        return second

    # -- re-clustering -----------------------------------------------------------------------------------------

    def _recluster(self, touched: np.ndarray) -> dict[str, str]:
        if len(touched) == 0:
            return {}
        for slot in touched.tolist():
            self._drop_cluster_of(slot)
            self._component_members.pop(int(self._component[slot]), None)
        components = self._components_of(touched)
        warn_oversized([len(c) for c in components], self.params)
        for members in components:
            component_id = self._new_id()
            self._component[members] = component_id
            self._component_members[component_id] = members
            for group in self._clusters_of(members):
                self._add_cluster(group)
        return {self._key[s]: self._cluster_rep[self._cluster[s]] for s in touched.tolist()}

    def _everything_joins(self, usable: np.ndarray) -> bool:
        """cut <= 0 with non-negative fingerprints: one cluster, no graph (as in cluster())."""
        return self.cut <= 0 and all_non_negative(self._rows, usable)

    def _components_of(self, touched: np.ndarray) -> list[np.ndarray]:
        """Connected components of the graph restricted to `touched` (a union of whole components), each in
        path order: the order cluster() sees them in and breaks ties by."""
        if self._everything_joins(touched[self._inv[touched] > 0]):
            return [self._in_path_order(touched)]
        local = {s: k for k, s in enumerate(touched.tolist())}
        first, second = [], []
        for s, k in local.items():
            for other in self._near[s]:
                if other > s:
                    first.append(k)
                    second.append(local[other])
        n = len(touched)
        graph = coo_matrix((np.ones(len(first), np.int8), (first, second)), shape=(n, n))
        _, component = connected_components(graph, directed=False)
        order = np.argsort(component, kind="stable")
        parts = np.split(touched[order], np.flatnonzero(np.diff(component[order])) + 1)
        return [self._in_path_order(part) for part in parts]

    def _in_path_order(self, slots: np.ndarray) -> np.ndarray:
        return np.array(sorted(slots.tolist(), key=self._key.__getitem__), np.int64)

    def _clusters_of(self, members: np.ndarray) -> list[np.ndarray]:
        """The clusters (singletons included) of one component, as slot arrays."""
        usable = members[self._inv[members] > 0]
        groups: list[np.ndarray] = []
        if len(usable) > 1:
            if self._everything_joins(usable):
                groups = [usable]
            else:
                roots = component_roots(unit64(self._rows, self._inv, usable), *self._pairs_within(usable),
                                        1.0 - self.cut, self.params)
                groups = split_by(usable, roots)
        grouped = set(np.concatenate(groups).tolist()) if groups else set()
        return groups + [np.array([s]) for s in members.tolist() if s not in grouped]

    def _pairs_within(self, members: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        local = {s: k for k, s in enumerate(members.tolist())}
        pairs = [(k, local[o], d) for s, k in local.items() for o, d in self._near[s].items() if o > s]
        first = np.array([p[0] for p in pairs], np.int64)
        second = np.array([p[1] for p in pairs], np.int64)
        return first, second, np.array([p[2] for p in pairs], np.float64)

    def _add_cluster(self, slots: np.ndarray) -> None:
        cid = self._new_id()
        members = slots.tolist()
        self._cluster[slots] = cid
        self._cluster_members[cid] = members
        self._cluster_rep[cid] = min(self._key[s] for s in members)

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1
