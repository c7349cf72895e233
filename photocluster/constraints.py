"""A user's corrections as constraints on the clusters: must-link and cannot-link.

The rule, applied to the clusters that the cosine cut gives (cluster() or cluster_with_time()):

1. Cannot-link first. A cannot-link is directed: "photo P is not with Q" (the user took P out of the cluster that
   holds Q). If P's cluster holds any Q it is not with, P leaves that cluster and stands alone. Photos are taken
   in name order, so of two photos that are each "not with" the other only the first leaves.
2. Then the joins, each a whole-cluster merge (as clustering.link_groups does): the must-links ("P belongs with
   Q") first, then the scene links (scenes.SceneLinker), each in a fixed order. A join is refused when the merged
   cluster would hold a photo and a photo it is not with (either way round).

So a must-link wins over the cut (it joins clusters the cut keeps apart) but loses to an explicit cannot-link,
and a user's cannot-link also wins over the scene evidence.

Hand-written: constrained clustering libraries (COP-KMeans and the like) re-cluster from scratch and need a
cluster count; this keeps the cut's clusters and edits them, which is what a correction means.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Constraints:
    must: frozenset[tuple[str, str]] = frozenset()  # (P, Q): P belongs with Q
    cannot: frozenset[tuple[str, str]] = frozenset()  # (P, Q): P is not with Q; P is the one that leaves
    _against: dict[str, set[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        against: dict[str, set[str]] = {}
        for p, q in self.cannot:
            against.setdefault(p, set()).add(q)
            against.setdefault(q, set()).add(p)
        object.__setattr__(self, "_against", against)

    def __bool__(self) -> bool:
        return bool(self.must or self.cannot)

    def key(self) -> str:
        """A digest of the constraints, for clustering.cluster_input_key's evidence."""
        digest = hashlib.sha256()
        for kind, pairs in (("must", self.must), ("cannot", self.cannot)):
            for p, q in sorted(pairs):
                digest.update(f"{kind}\0{p}\0{q}\n".encode("utf-8", "surrogatepass"))
        return digest.hexdigest()[:16]


def constrain(rels: list[str], labels: np.ndarray, links: Iterable[tuple[str, str]],
              constraints: Constraints) -> np.ndarray:
    """The cluster of each of `rels` after the rule above, renumbered 0, 1, ... by each cluster's first photo."""
    index = {rel: i for i, rel in enumerate(rels)}
    labels = np.array(labels, dtype=np.int64, copy=True)
    _split_out(labels, index, constraints)
    groups = _Groups(labels, rels, constraints._against)
    for a, b in [*sorted(constraints.must), *sorted(links)]:
        if a in index and b in index:
            groups.join(labels[index[a]], labels[index[b]])
    merged = np.array([groups.find(label) for label in labels], dtype=np.int64)
    first_row = {}
    for i, label in enumerate(merged):
        first_row.setdefault(int(label), i)
    order = {label: n for n, label in enumerate(sorted(first_row, key=first_row.get))}
    return np.array([order[int(label)] for label in merged], dtype=np.int64)


def _split_out(labels: np.ndarray, index: dict[str, int], constraints: Constraints) -> None:
    """Step 1: each photo whose cluster holds a photo it is not with leaves it, to stand alone."""
    fresh = int(labels.max()) + 1 if len(labels) else 0
    not_with: dict[str, list[str]] = {}
    for p, q in constraints.cannot:
        not_with.setdefault(p, []).append(q)
    for p in sorted(not_with):
        i = index.get(p)
        if i is not None and any(q in index and labels[index[q]] == labels[i] for q in not_with[p]):
            labels[i], fresh = fresh, fresh + 1


class _Groups:
    """Union-find over cluster labels that refuses a join putting a cannot-linked pair together."""

    def __init__(self, labels: np.ndarray, rels: list[str], against: dict[str, set[str]]):
        self.parent: dict[int, int] = {}
        self.against = against
        self.guarded: dict[int, set[str]] = {}  # root -> its photos that have a cannot-link
        for rel, label in zip(rels, labels):
            if rel in against:
                self.guarded.setdefault(int(label), set()).add(rel)

    def find(self, label) -> int:
        label = int(label)
        root = label
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while label != root:  # path compression
            self.parent[label], label = root, self.parent.get(label, label)
        return root

    def join(self, a, b) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return True
        mine, theirs = self.guarded.get(ra, set()), self.guarded.get(rb, set())
        if any(self.against[p] & theirs for p in mine):
            return False
        self.parent[rb] = ra
        if theirs:
            self.guarded[ra] = mine | self.guarded.pop(rb)
        return True
