"""clustering.link_groups: scene links join whole clusters, numbered as cluster() numbers them."""
from __future__ import annotations

import numpy as np

from photocluster.clustering import link_groups

RELS = ["a", "b", "c", "d", "e", "f"]


def test_no_links_leave_the_labels_as_they_are():
    labels = np.array([0, 1, 0, 2, 3, 1])
    assert link_groups(RELS, labels, []).tolist() == [0, 1, 0, 2, 3, 1]


def test_a_link_joins_the_two_clusters_whole():
    # clusters {a, c}, {b, f}, {d}, {e}; the link c-f joins {a, c} and {b, f}
    labels = np.array([0, 1, 0, 2, 3, 1])
    assert link_groups(RELS, labels, [("c", "f")]).tolist() == [0, 0, 0, 1, 2, 0]


def test_links_join_transitively_and_clusters_are_renumbered_by_their_first_photo():
    # singletons; links e-d and d-b chain b, d, e into one cluster whose first photo is b (row 1)
    labels = np.arange(6)
    joined = link_groups(RELS, labels, [("e", "d"), ("d", "b")])
    assert joined.tolist() == [0, 1, 2, 1, 1, 3]


def test_links_to_photos_not_clustered_are_ignored():
    labels = np.array([0, 1, 2, 3, 4, 5])
    assert link_groups(RELS, labels, [("a", "gone"), ("x", "y")]).tolist() == [0, 1, 2, 3, 4, 5]


def test_the_joined_clusters_are_numbered_by_first_photo_whatever_the_input_numbers():
    # a, b, c, d, e, f in clusters 2, 1, 0, 2, 1, 0; linking a-b makes {a, b, d, e} (first: a) and {c, f}
    labels = np.array([2, 1, 0, 2, 1, 0])
    assert link_groups(RELS, labels, [("a", "b")]).tolist() == [0, 0, 1, 0, 0, 1]
