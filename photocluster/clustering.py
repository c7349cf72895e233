"""The cluster stage over the cache: cached fingerprints in, groups of library paths out.

`cluster_cache` clusters from scratch, or through an `IncrementalClustering` that a daemon keeps between runs.
The `.cluster-input` key file in the output folder records a digest of everything the clusters shown depend on,
so a run whose input has not changed skips the clustering (see pipeline.LibraryPipeline).
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .cache import FingerprintCache
from .cluster import IncrementalClusterer, cluster, cluster_with_time
from .constraints import Constraints, constrain
from .fsutil import FILE, ForeignEntry, open_dir, read_regular, remove_made, write_text_atomic
from .library import PhotoFile

log = logging.getLogger(__name__)

class IncrementalClustering:
    """Keeps an IncrementalClusterer in step with the cache across a daemon's runs.

    After a few new photos, only the graph components they touch are re-clustered (scripts/bench_cluster.py
    measures it at 100,000 photos), and the result is exactly what `cluster()` gives from scratch. The price is a
    float32 copy of the fingerprints in the daemon's memory, so the one-shot run does not use it.
    """

    def __init__(self):
        self._clusterer: IncrementalClusterer | None = None
        self._versions: dict[str, tuple[int, int]] = {}  # path -> (size, mtime_ns) of the fingerprint it holds
        self._model_id = ""

    def cluster_ids(self, cache: FingerprintCache, rels: list[str], cut: float) -> np.ndarray:
        """The cluster number of each of `rels`, as `cluster()` numbers them."""
        if self._clusterer is None or self._clusterer.cut != cut or self._model_id != cache.model_id:
            self._clusterer, self._versions, self._model_id = IncrementalClusterer(cut), {}, cache.model_id
        current = {rel: (cache.entries[rel].size, cache.entries[rel].mtime_ns) for rel in rels}
        removed = [rel for rel in self._versions if rel not in current]
        changed = [rel for rel in rels if self._versions.get(rel) != current[rel]]
        self._clusterer.update(dict(zip(changed, cache.vectors(changed))), removed)
        self._versions = current
        return self._clusterer.labels(rels)


def cluster_cache(
    cache: FingerprintCache,
    *,
    cut: float,
    min_size: int,
    only: dict[str, PhotoFile] | None = None,
    incremental: IncrementalClustering | None = None,
    links: Iterable[tuple[str, str]] = (),
    time_weight: float = 0.0,
    capture_seconds: Callable[[list[str]], np.ndarray] | None = None,
    constraints: Constraints = Constraints(),
) -> tuple[list[str], list[list[str]]]:
    """Cluster the cached fingerprints; return the photos considered and the groups of at least `min_size`.

    `links` are pairs of photos known to show one scene (scenes.SceneLinker): the clusters of the two are joined.
    With `time_weight` > 0 the distance mixes in capture time (cluster_with_time; `capture_seconds(rels)` gives
    each photo's time, NaN for none); that path re-clusters everything, also in a daemon.
    `constraints` are the user's corrections (constraints.py): they split and join the clusters, links included.
    """
    rels = [r for r in cache.fingerprinted() if only is None or r in only]
    if not rels:
        return rels, []
    if time_weight > 0 and capture_seconds is not None:
        cluster_ids = cluster_with_time(cache.vectors(rels), capture_seconds(rels), cut, time_weight)
    elif incremental:
        cluster_ids = incremental.cluster_ids(cache, rels, cut)
    else:
        cluster_ids = cluster(cache.vectors(rels), cut)
    if constraints:
        cluster_ids = constrain(rels, cluster_ids, links, constraints)
    else:
        cluster_ids = link_groups(rels, cluster_ids, links)
    order = np.argsort(cluster_ids, kind="stable")
    groups: dict[int, list[str]] = {}
    for i in order:
        groups.setdefault(int(cluster_ids[i]), []).append(rels[i])
    return rels, [g for g in groups.values() if len(g) >= min_size]


def link_groups(rels: list[str], labels: np.ndarray, links: Iterable[tuple[str, str]]) -> np.ndarray:
    """Join the clusters of each linked pair: `labels` (cluster per photo of `rels`) with every two clusters that
    hold a linked pair made one, renumbered 0, 1, ... by each cluster's first photo, as cluster() numbers.

    Average linkage stays the rule for cosines. A link is not a distance: written into the average it would be
    diluted by the other members' distances, so that two shots verified as one scene could still stay apart.
    Being one scene is transitive, so a linked pair joins its two clusters whole.
    """
    index = {rel: i for i, rel in enumerate(rels)}
    edges = [(labels[index[a]], labels[index[b]]) for a, b in links if a in index and b in index]
    if not edges:
        return labels
    n = int(labels.max()) + 1
    first, second = np.array(edges).T
    graph = coo_matrix((np.ones(len(edges), np.int8), (first, second)), shape=(n, n))
    _, joined = connected_components(graph, directed=False)
    merged = joined[labels]
    first_row = np.full(merged.max() + 1, len(rels))
    np.minimum.at(first_row, merged, np.arange(len(rels)))
    _, renumbered = np.unique(first_row[merged], return_inverse=True)
    return renumbered


CLUSTER_KEY_NAME = ".cluster-input"


def cluster_input_key(cache: FingerprintCache, cut: float, min_size: int, photos: dict[str, PhotoFile],
                      evidence: str = "") -> str:
    """A digest of everything the clusters depend on: the model, the cut, min_size, how scene links are found
    (`evidence`: scenes.SceneOptions.key()) and each clustered photo's identity and version (path, size, mtime),
    which in one cache determine its fingerprint (and its capture time and local features)."""
    digest = hashlib.sha256(f"{cache.model_id}\0{cut!r}\0{min_size}\0{evidence}".encode())
    for rel, entry in sorted(cache.entries.items()):
        if entry.row >= 0 and rel in photos:
            digest.update(f"\0{rel}\t{entry.size}\t{entry.mtime_ns}".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def read_cluster_key(out_dir: Path) -> str | None:
    try:
        with open_dir(out_dir, follow=True) as out_fd:
            raw = read_regular(CLUSTER_KEY_NAME, out_fd, limit=256)
        return None if raw is None else raw.decode("ascii").strip()
    except FileNotFoundError:  # no output folder yet (a dry run)
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s: %s", out_dir / CLUSTER_KEY_NAME, getattr(exc, "strerror", None) or exc)
        return None


def write_cluster_key(out_dir: Path, key: str | None) -> None:
    """Record the input of the clusters now shown (None: forget it). A key file that is not ours is left alone,
    with a warning: the clusters are then simply computed again each run."""
    try:
        with open_dir(out_dir, follow=True) as out_fd:
            if key is None:
                remove_made(out_fd, {CLUSTER_KEY_NAME: FILE}, os.fspath(out_dir))  # a regular file only
            else:
                write_text_atomic(CLUSTER_KEY_NAME, key + "\n", dir_fd=out_fd)
    except ForeignEntry as exc:
        log.warning("left %s alone: %s", exc.filename, exc.strerror)
