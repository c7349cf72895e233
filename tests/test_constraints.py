"""The rule that applies corrections to the cut's clusters: cannot-links split a photo out, must-links join whole
clusters, and a join that would unite a cannot-linked pair is refused."""
import numpy as np

from photocluster.constraints import Constraints, constrain

RELS = ["a", "b", "c", "d", "e", "f"]


def groups(labels):
    found = {}
    for rel, label in zip(RELS, labels):
        found.setdefault(int(label), set()).add(rel)
    return sorted(map(frozenset, found.values()), key=sorted)


def test_a_cannot_link_takes_the_photo_out_of_its_cluster_alone():
    cut = np.array([0, 0, 0, 1, 1, 2])  # {a b c} {d e} {f}
    labels = constrain(RELS, cut, [], Constraints(cannot=frozenset({("c", "a")})))
    assert groups(labels) == [{"a", "b"}, {"c"}, {"d", "e"}, {"f"}]
    assert list(labels) == [0, 0, 1, 2, 2, 3]  # numbered by each cluster's first photo, as cluster() does


def test_a_must_link_joins_whole_clusters_the_cut_kept_apart():
    cut = np.array([0, 0, 0, 1, 1, 2])
    labels = constrain(RELS, cut, [], Constraints(must=frozenset({("f", "d")})))
    assert groups(labels) == [{"a", "b", "c"}, {"d", "e", "f"}]


def test_a_move_leaves_the_old_cluster_and_joins_the_new_one():
    cut = np.array([0, 0, 0, 1, 1, 2])
    moved = Constraints(must=frozenset({("c", "d"), ("c", "e")}), cannot=frozenset({("c", "a"), ("c", "b")}))
    assert groups(constrain(RELS, cut, [], moved)) == [{"a", "b"}, {"c", "d", "e"}, {"f"}]


def test_a_cannot_link_wins_over_must_links_and_scene_links():
    cut = np.array([0, 1, 2, 3, 4, 5])  # every photo alone
    # a with b, b with c: but c is not with a, so the second join is refused, whichever link asks for it.
    constraints = Constraints(must=frozenset({("a", "b"), ("b", "c")}), cannot=frozenset({("c", "a")}))
    assert groups(constrain(RELS, cut, [], constraints)) == [{"a", "b"}, {"c"}, {"d"}, {"e"}, {"f"}]
    scene_links = [("c", "b"), ("d", "e")]
    constraints = Constraints(must=frozenset({("a", "b")}), cannot=frozenset({("c", "a")}))
    assert groups(constrain(RELS, cut, scene_links, constraints)) == [{"a", "b"}, {"c"}, {"d", "e"}, {"f"}]


def test_of_two_photos_each_not_with_the_other_only_the_first_by_name_leaves():
    cut = np.array([0, 0, 0, 1, 1, 1])
    constraints = Constraints(cannot=frozenset({("a", "b"), ("b", "a")}))
    assert groups(constrain(RELS, cut, [], constraints)) == [{"a"}, {"b", "c"}, {"d", "e", "f"}]


def test_constraints_about_photos_not_clustered_change_nothing():
    cut = np.array([0, 0, 1, 1, 2, 2])
    constraints = Constraints(must=frozenset({("a", "zz")}), cannot=frozenset({("b", "yy")}))
    assert groups(constrain(RELS, cut, [], constraints)) == [{"a", "b"}, {"c", "d"}, {"e", "f"}]
