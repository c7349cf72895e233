"""The gallery stage through the pipeline (stand-in model): pages, thumbnails, links, the best photo, paging, and
rewriting only what changed."""
from __future__ import annotations

import html
import os
import re
import urllib.parse
from pathlib import Path

import numpy as np
import pytest

from photocluster import gallery_html
from photocluster.pipeline import run_once

from .conftest import save, scene
from .test_pipeline import make_library, settings


def gallery(out: Path) -> Path:
    return out / "gallery"


def links(page: Path, attribute: str) -> list[str]:
    return [html.unescape(v) for v in re.findall(fr'{attribute}="([^"]*)"', page.read_text())]


def target(page: Path, href: str) -> Path:
    return (page.parent / urllib.parse.unquote(href)).resolve()


def run(lib, out, **kw):
    return run_once(settings(lib, out=out, **kw))


def test_a_run_writes_the_overview_with_a_thumbnail_and_a_link_to_each_original(tmp_path, stand_in):
    lib = make_library(tmp_path / "lib")
    report = run(lib, tmp_path / "out")
    index = gallery(tmp_path / "out") / "index.html"
    assert report.gallery.index == str(index)
    images, anchors = links(index, "src"), [h for h in links(index, "href") if h.startswith("../")]
    assert len(images) == 9  # three clusters of three
    assert all(target(index, src).is_file() for src in images)
    photos = {target(index, h) for h in anchors}
    clustered = {(lib / rel).resolve() for members in report.layout.clusters.values() for rel in members}
    assert photos == clustered
    for number in report.layout.clusters:
        assert (gallery(tmp_path / "out") / f"cluster-{number}.html").is_file()
    unclustered = gallery(tmp_path / "out") / "unclustered.html"
    assert {target(unclustered, h) for h in links(unclustered, "href") if h.startswith("../")} == {
        (lib / "misc" / f"single{s}.png").resolve() for s in range(3)}


def test_each_cluster_names_and_marks_its_best_photo(tmp_path, stand_in):
    lib = make_library(tmp_path / "lib")
    report = run(lib, tmp_path / "out")
    best = report.as_dict()["gallery"]["best"]
    assert set(best) == {str(m) for m in report.layout.clusters}
    for number, members in report.layout.clusters.items():
        chosen = best[str(number)]["photo"]
        assert chosen in members and best[str(number)]["reason"]
        page = (gallery(tmp_path / "out") / f"cluster-{number}.html").read_text()
        marked = re.findall(r'<figure class="best"[^>]*><span class="badge">[^<]*</span><a href="([^"]*)"', page)
        assert [target(gallery(tmp_path / "out") / "x", h) for h in marked] == [(lib / chosen).resolve()]
    assert all((lib / rel).is_file() for members in report.layout.clusters.values() for rel in members)  # kept


def test_a_rerun_with_nothing_changed_writes_no_page(tmp_path, stand_in):
    lib = make_library(tmp_path / "lib")
    run(lib, tmp_path / "out")
    report = run(lib, tmp_path / "out")
    assert report.gallery.pages_written == [] and report.gallery.pages_unchanged > 0


def test_a_photo_added_to_one_cluster_rewrites_its_page_and_the_index_only(tmp_path, stand_in):
    lib = make_library(tmp_path / "lib")
    first = run(lib, tmp_path / "out")
    number = next(m for m, members in first.layout.clusters.items() if "trip1/orig.jpg" in members)
    save(scene(1).resize((300, 220)), lib / "trip1" / "another-copy.jpg")
    report = run(lib, tmp_path / "out")
    assert sorted(report.gallery.pages_written) == sorted([f"cluster-{number}.html", "index.html"])


def test_long_lists_are_paged_and_pages_no_longer_needed_are_removed(tmp_path, stand_in, monkeypatch):
    lib = make_library(tmp_path / "lib")
    monkeypatch.setattr(gallery_html, "CLUSTERS_PER_PAGE", 2)
    monkeypatch.setattr(gallery_html, "PHOTOS_PER_PAGE", 2)
    run(lib, tmp_path / "out")
    names = set(os.listdir(gallery(tmp_path / "out")))
    assert {"index.html", "index-2.html", "unclustered.html", "unclustered-2.html"} <= names
    assert "index-3.html" not in names and {"cluster-0.html", "cluster-0-2.html"} <= names
    second = links(gallery(tmp_path / "out") / "index-2.html", "src")
    assert len(second) == 3  # the third cluster's strip
    monkeypatch.setattr(gallery_html, "CLUSTERS_PER_PAGE", 50)
    run(lib, tmp_path / "out")
    assert "index-2.html" not in os.listdir(gallery(tmp_path / "out"))


def test_photos_fingerprinted_before_the_gallery_get_thumbnails_without_a_new_fingerprint(tmp_path, stand_in):
    lib = make_library(tmp_path / "lib")
    run(lib, tmp_path / "out", gallery=False)
    assert not gallery(tmp_path / "out").exists()
    stand_in.calls = 0
    report = run(lib, tmp_path / "out")
    assert stand_in.calls == 0 and report.gallery.thumbs_made == 12
    assert len([n for n in os.listdir(gallery(tmp_path / "out") / "thumbs") if n.endswith(".jpg")]) == 12


def test_the_thumbnail_of_a_deleted_photo_goes_and_a_user_s_file_stays(tmp_path, stand_in):
    lib = make_library(tmp_path / "lib")
    run(lib, tmp_path / "out")
    thumbs = gallery(tmp_path / "out") / "thumbs"
    (thumbs / "my-notes.txt").write_text("mine")
    (gallery(tmp_path / "out") / "my-page.html").write_text("mine")
    (lib / "misc" / "single0.png").unlink()
    report = run(lib, tmp_path / "out")
    assert report.gallery.thumbs_removed == 1
    assert len([n for n in os.listdir(thumbs) if n.endswith(".jpg")]) == 11
    assert (thumbs / "my-notes.txt").read_text() == "mine"
    assert (gallery(tmp_path / "out") / "my-page.html").read_text() == "mine"


def test_a_gallery_folder_of_someone_else_is_left_alone(tmp_path, stand_in, caplog):
    lib = make_library(tmp_path / "lib")
    (tmp_path / "out").mkdir()
    run(lib, tmp_path / "out", gallery=False)
    (tmp_path / "out" / "gallery").mkdir()
    (tmp_path / "out" / "gallery" / "index.html").write_text("my own page")
    report = run(lib, tmp_path / "out")
    assert report.gallery is None and report.layout is not None
    assert os.listdir(tmp_path / "out" / "gallery") == ["index.html"]
    assert (tmp_path / "out" / "gallery" / "index.html").read_text() == "my own page"
    assert "gallery: not written" in caplog.text


def test_names_from_the_library_are_escaped_and_their_links_resolve(tmp_path, stand_in):
    lib = make_library(tmp_path / "lib", groups=1, singles=0)
    odd = "<b>bold</b> & \"quoted\" #1 ?.jpg"
    save(scene(0).resize((250, 180)), lib / "trip0" / odd)
    run(lib, tmp_path / "out")
    page = gallery(tmp_path / "out") / "cluster-0.html"
    text = page.read_text()
    assert "<b>bold</b>" not in text and "&lt;b&gt;bold&lt;/b&gt;" in text
    resolved = {target(page, h) for h in links(page, "href") if h.startswith("../../")}
    assert (lib / "trip0" / odd).resolve() in resolved


def test_the_map_gets_every_photo_with_its_cluster_hrefs_and_fingerprint(tmp_path, stand_in, monkeypatch):
    from photocluster import gallery as gallery_module
    from photocluster.cache import load_or_new

    calls = []
    monkeypatch.setattr(gallery_module, "write_map", lambda gallery_dir, points, fingerprints, cluster_hrefs:
                        calls.append((gallery_dir, points, fingerprints, cluster_hrefs)))
    lib = make_library(tmp_path / "lib")
    report = run(lib, tmp_path / "out")
    ((gallery_dir, points, fingerprints, cluster_hrefs),) = calls
    assert gallery_dir == gallery(tmp_path / "out").resolve()
    owner = {rel: m for m, members in report.layout.clusters.items() for rel in members}
    assert {p.rel: p.cluster for p in points} == {rel: owner.get(rel) for rel in report.unclustered + list(owner)}
    for point in points:
        assert (gallery_dir / point.thumb_href).is_file()
        assert (gallery_dir / point.photo_href).resolve() == (lib / point.rel).resolve()
    cache = load_or_new(tmp_path / "out" / "fingerprints.pk", stand_in.model_id, stand_in.dim)
    assert np.array_equal(fingerprints, cache.vectors([p.rel for p in points]))  # row i is point i's
    assert cluster_hrefs == {m: f"cluster-{m}.html" for m in report.layout.clusters}
    assert all((gallery_dir / href).is_file() for href in cluster_hrefs.values())


def test_a_run_writes_the_map_beside_the_pages(tmp_path, stand_in):
    run(make_library(tmp_path / "lib"), tmp_path / "out")
    assert (gallery(tmp_path / "out") / "map.html").is_file() and (gallery(tmp_path / "out") / "map.png").is_file()
    assert 'href="map.html"' in (gallery(tmp_path / "out") / "index.html").read_text()


@pytest.mark.parametrize("flag", [True, False])
def test_no_gallery_writes_none(tmp_path, stand_in, flag):
    lib = make_library(tmp_path / "lib", groups=1, singles=1)
    report = run(lib, tmp_path / "out", gallery=flag)
    assert gallery(tmp_path / "out").exists() is flag and (report.gallery is not None) is flag


def test_a_large_library_redraws_the_map_only_after_enough_change_or_time(tmp_path, stand_in, monkeypatch):
    import json

    from photocluster import gallery as gallery_module

    calls = []
    real_write_map = gallery_module.write_map
    monkeypatch.setattr(gallery_module, "write_map", lambda *a, **kw: calls.append(len(a[1])) or real_write_map(*a, **kw))
    monkeypatch.setattr(gallery_module, "MAP_EVERY_RUN_BELOW", 0)  # these 12 photos count as a large library
    monkeypatch.setattr(gallery_module, "MAP_CHANGED_SHARE", 0.25)
    lib, out = make_library(tmp_path / "lib"), tmp_path / "out"  # 3 scenes x 3 copies + 3 singles: 12 photos
    run(lib, out)
    assert calls == [12]
    for s in range(2):  # 2 new photos of 12: 1/6 changed, not over a quarter
        save(scene(200 + s), lib / "new" / f"n{s}.png")
    run(lib, out)
    assert calls == [12]
    for s in range(2, 4):  # 4 of the 12 the last map showed: a third changed
        save(scene(200 + s), lib / "new" / f"n{s}.png")
    run(lib, out)
    assert calls == [12, 16]
    state_path = gallery(out) / gallery_module.STATE_NAME
    state = json.loads(state_path.read_text())
    state["map"]["at"] -= gallery_module.MAP_MAX_AGE + 1  # the last map is older than the limit
    state_path.write_text(json.dumps(state))
    run(lib, out)
    assert calls == [12, 16, 16]


def test_photos_arriving_while_the_facts_are_gathered_leave_the_map_and_pages_to_the_next_update(tmp_path, stand_in,
                                                                                                monkeypatch):
    from photocluster import gallery as gallery_module
    from photocluster.pipeline import LibraryPipeline

    lib, out = make_library(tmp_path / "lib"), tmp_path / "out"
    arrived = []
    real_facts = gallery_module._Gallery._facts
    monkeypatch.setattr(gallery_module._Gallery, "_facts",
                        lambda self, *a: arrived.append(1) or real_facts(self, *a))  # a photo comes meanwhile
    pipe = LibraryPipeline(settings(lib, out=out), incremental=True)
    report = pipe.update(should_yield=lambda: bool(arrived))
    assert arrived and report.gallery is None and report.clusters == 3
    assert not (gallery(out) / "index.html").exists() and not (gallery(out) / "map.html").exists()
    arrived.clear()
    monkeypatch.setattr(gallery_module._Gallery, "_facts", real_facts)
    assert pipe.update().gallery is not None and (gallery(out) / "map.html").is_file()
