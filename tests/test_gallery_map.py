"""The gallery's map: every photo placed and linked, clusters coloured, sampling said on the page, writes atomic
and only inside the gallery folder, reruns stable; and the page as headless Chromium draws it."""
from __future__ import annotations

import csv
import os
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photocluster import gallery_map, images
from photocluster.fsutil import ForeignEntry
from photocluster.gallery_map import TILE, MapPoint, colour, layout, page_side, render_png, sample, write_map


def clustered(groups: int, per: int, dim: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative vectors in `groups` tight groups: each is its group's random centre plus 5% noise, so any two
    of one group have cosine near 1 and two of different groups about 0.75 (independent non-negative centres)."""
    rng = np.random.default_rng(seed)
    centres = rng.random((groups, dim))
    group = np.repeat(np.arange(groups), per)
    return centres[group] + 0.05 * rng.random((groups * per, dim)), group


def points_for(group: np.ndarray, thumbs: bool = True) -> list[MapPoint]:
    return [MapPoint(f"album/{i:03d}.jpg", int(g), f"thumbs/{i:03d}.jpg" if thumbs else None, f"../lib/{i:03d}.jpg")
            for i, g in enumerate(group)]


class Anchors(HTMLParser):
    """The map's points (<a class="p ...">) with their attributes, and the page's text."""

    def __init__(self, page: str):
        super().__init__()
        self.points: list[dict[str, str]] = []
        self.text: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and attrs.get("class", "").split()[:1] == ["p"]:
            self.points.append(attrs)
        elif tag == "img" and self.points and "img" not in self.points[-1]:
            self.points[-1]["img"] = attrs["src"]

    def handle_data(self, data):
        self.text.append(data)


def style_of(point: dict[str, str]) -> dict[str, str]:
    return dict(part.split(":", 1) for part in point["style"].rstrip(";").split(";"))


def test_every_point_is_placed_on_the_page_and_links_to_its_photo(tmp_path):
    x, group = clustered(4, 10)
    points = points_for(group)
    points[3] = MapPoint("album/no thumb & <b>.jpg", None, None, "../lib/no%20thumb.jpg")
    result = write_map(tmp_path / "gallery", points, x)
    assert (result.written, result.shown, result.total) == (True, 40, 40)
    found = Anchors((tmp_path / "gallery" / "map.html").read_text()).points
    side = page_side(40)
    assert [a["href"] for a in found] == [p.photo_href for p in points]
    assert [a.get("img") for a in found] == [p.thumb_href for p in points]
    for a in found:
        left, top = int(style_of(a)["left"].removesuffix("px")), int(style_of(a)["top"].removesuffix("px"))
        assert 0 <= left <= side - TILE and 0 <= top <= side - TILE
    assert found[3]["class"] == "p d" and found[3]["title"] == "album/no thumb & <b>.jpg (in no cluster)"
    assert Image.open(tmp_path / "gallery" / "map.png").size == (gallery_map.PNG_SIDE, gallery_map.PNG_SIDE)


def test_the_layout_keeps_each_group_together():
    x, group = clustered(4, 12)
    xy = layout(x)
    assert xy.shape == (48, 2) and xy.min() >= 0 and xy.max() <= 1
    distance = np.linalg.norm(xy[:, None] - xy[None], axis=2)
    np.fill_diagonal(distance, np.inf)
    nearest = np.argsort(distance, axis=1)[:, :11]  # each photo's 11 nearest: its group's other members
    assert (group[nearest] == group[:, None]).all()


def test_tiny_libraries_get_a_map(tmp_path):
    assert write_map(tmp_path / "empty", [], np.zeros((0, 8))).shown == 0
    assert Anchors((tmp_path / "empty" / "map.html").read_text()).points == []
    one = write_map(tmp_path / "one", points_for(np.array([0])), np.ones((1, 8)))
    assert one.shown == 1
    side = page_side(1)
    (point,) = Anchors((tmp_path / "one" / "map.html").read_text()).points
    assert style_of(point)["left"] == style_of(point)["top"] == f"{round(0.5 * (side - TILE))}px"
    x, group = clustered(3, 2)  # too few for t-SNE: principal components
    assert layout(x).shape == (6, 2)


def test_clusters_are_coloured_and_listed(tmp_path):
    x, group = clustered(5, 4)
    points = points_for(group)
    points[0] = MapPoint(points[0].rel, None, points[0].thumb_href, points[0].photo_href)
    write_map(tmp_path / "gallery", points, x, cluster_hrefs={2: "cluster-2.html"})
    page = (tmp_path / "gallery" / "map.html").read_text()
    found = Anchors(page).points
    for a, p in zip(found, points):
        assert style_of(a)["border-color"] == colour(p.cluster)
    assert len({colour(c) for c in range(5)} | {colour(None)}) == 6
    text = " ".join(Anchors(page).text)
    assert "cluster 1 (4)" in text and "cluster 0 (3)" in text and "in no cluster (1)" in text
    assert '<a href="cluster-2.html">cluster 2</a> (4)' in page


def test_the_png_draws_each_photo_in_its_clusters_colour():
    points = points_for(np.array([0, 1, 2]))
    points[2] = MapPoint("x.jpg", None, None, "x.jpg")
    picture = render_png(points, np.array([[0.0, 0.0], [1.0, 1.0], [0.5, 0.5]]))
    side = gallery_map.PNG_SIDE
    margin = 5 + 4  # the dot radius for a few photos, and its gap to the edge

    def rgb(cluster):
        return tuple(int(colour(cluster)[i:i + 2], 16) for i in (1, 3, 5))

    assert picture.getpixel((margin, margin)) == rgb(0)
    assert picture.getpixel((side - margin, side - margin)) == rgb(1)
    assert picture.getpixel((side // 2, side // 2)) == rgb(None)
    assert picture.getpixel((side // 4, side // 2)) == (255, 255, 255)


def test_above_the_limit_a_fixed_sample_is_drawn_and_the_page_says_so(tmp_path):
    x, group = clustered(3, 10)
    points = points_for(group)
    result = write_map(tmp_path / "gallery", points, x, max_points=20)
    assert (result.shown, result.total) == (20, 30)
    page = (tmp_path / "gallery" / "map.html").read_text()
    assert len(Anchors(page).points) == 20
    assert "a fixed sample of 20 of the library's 30 photos" in page
    # the sample is the same every time, and one more photo can displace at most one of it
    assert sample(points, 20) == sample(points, 20)
    grown = sample(points + [MapPoint("album/new.jpg", None, None, "new.jpg")], 20)
    assert len(set(sample(points, 20)) & set(grown)) >= 19
    write_map(tmp_path / "all", points, x)
    assert "fixed sample" not in (tmp_path / "all" / "map.html").read_text()


def test_writes_stay_inside_the_gallery_folder_and_are_atomic(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("the user's")
    x, group = clustered(2, 10)
    write_map(out / "gallery", points_for(group), x)
    assert sorted(os.listdir(out)) == ["gallery", "keep.txt"]
    assert sorted(os.listdir(out / "gallery")) == ["map.html", "map.png"]
    old = {name: (out / "gallery" / name).read_bytes() for name in ("map.html", "map.png")}

    def broken(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(gallery_map, "render_html", broken)
    with pytest.raises(OSError):
        write_map(out / "gallery", points_for(group[::-1]), x)
    assert sorted(os.listdir(out / "gallery")) == ["map.html", "map.png"]  # no temporary left behind
    assert (out / "gallery" / "map.html").read_bytes() == old["map.html"]


def test_a_killed_writes_temporaries_are_swept_and_nothing_else(tmp_path):
    gallery = tmp_path / "out" / "gallery"
    gallery.mkdir(parents=True)
    for name in (".map.html.0badc0de.tmp", ".map.png.12345678.tmp", ".index.html.0badc0de.tmp", "notes.txt"):
        (gallery / name).write_text("left")
    x, group = clustered(2, 10)
    write_map(gallery, points_for(group), x)
    # the map's own temporaries go; the gallery's pages' temporary and the user's file are not the map's
    assert sorted(os.listdir(gallery)) == [".index.html.0badc0de.tmp", "map.html", "map.png", "notes.txt"]


def test_a_planted_symlink_is_never_followed(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "map.html").write_text("someone's page")
    out = tmp_path / "out"
    out.mkdir()
    (out / "gallery").symlink_to(elsewhere)
    x, group = clustered(2, 10)
    with pytest.raises(ForeignEntry):
        write_map(out / "gallery", points_for(group), x)
    (out / "gallery").unlink()
    (out / "gallery").mkdir()
    (out / "gallery" / "map.html").symlink_to(elsewhere / "map.html")
    with pytest.raises(ForeignEntry):
        write_map(out / "gallery", points_for(group), x)
    assert os.listdir(elsewhere) == ["map.html"] and (elsewhere / "map.html").read_text() == "someone's page"


def test_reruns_draw_the_same_map_and_skip_unchanged_input(tmp_path):
    x, group = clustered(3, 10)
    points = points_for(group)
    write_map(tmp_path / "a", points, x)
    write_map(tmp_path / "b", points, x)
    for name in ("map.html", "map.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    before = {name: os.stat(tmp_path / "a" / name).st_ino for name in ("map.html", "map.png")}
    assert write_map(tmp_path / "a", points, x).written is False
    assert {name: os.stat(tmp_path / "a" / name).st_ino for name in ("map.html", "map.png")} == before
    moved = points[:1] + [MapPoint(p.rel, 2, p.thumb_href, p.photo_href) for p in points[1:2]] + points[2:]
    assert write_map(tmp_path / "a", moved, x).written is True
    assert write_map(tmp_path / "a", moved, x * 2).written is True  # other fingerprints, another map
    (tmp_path / "a" / "map.png").unlink()
    assert write_map(tmp_path / "a", moved, x * 2).written is True  # a missing picture is drawn again


def test_one_fingerprint_per_photo_or_a_clear_error(tmp_path):
    x, group = clustered(2, 5)
    with pytest.raises(ValueError, match="one fingerprint per photo: 10 photos, fingerprints shaped \\(9, 256\\)"):
        write_map(tmp_path / "gallery", points_for(group), x[:9])
    assert not (tmp_path / "gallery").exists()


# --- in a real browser ---------------------------------------------------------------------------------------

def devset_choice(devset: Path) -> tuple[list[str], list[str]]:
    """Five variants (resizes) of each of three wallpapers, the smallest files, and five photos of no group."""
    with open(devset / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    by_group: dict[str, list[str]] = {}
    for row in rows:
        by_group.setdefault(row["group"], []).append(row["file"])
    variants = sorted(g for g, files in by_group.items() if g.startswith("plasma:") and len(files) >= 5)[:3]
    chosen, groups = [], []
    for g in variants + [""]:
        files = sorted(by_group[g], key=lambda f: (devset / f).stat().st_size)[:5]
        chosen += files
        groups += [g] * len(files)
    return chosen, groups


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--allow-file-access-from-files"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_window_size(1400, 1400)
    yield driver
    driver.quit()


POINTS_JS = """
return Array.from(document.querySelectorAll('.map a.p')).map(a => {
  const r = a.getBoundingClientRect(), img = a.querySelector('img');
  return {href: a.href, left: r.left + scrollX, top: r.top + scrollY, width: r.width, height: r.height,
          img: img ? {complete: img.complete, naturalWidth: img.naturalWidth} : null};
});"""


def test_chromium_draws_every_point_and_thumbnail_of_the_devset_map(devset, squeezenet, browser, tmp_path):
    files, groups = devset_choice(devset)
    gallery = tmp_path / "out" / "gallery"
    (gallery / "thumbs").mkdir(parents=True)
    cluster_of = {g: k for k, g in enumerate(dict.fromkeys(g for g in groups if g))}
    points = []
    for i, (rel, g) in enumerate(zip(files, groups)):
        with Image.open(devset / rel) as img:
            img.thumbnail((256, 256))
            img.convert("RGB").save(gallery / "thumbs" / f"{i}.jpg", "JPEG", quality=85)
        href = urllib.parse.quote(os.path.relpath(devset / rel, gallery))
        thumb = None if i == len(files) - 1 else f"thumbs/{i}.jpg"  # the last one is drawn as a dot
        points.append(MapPoint(rel, cluster_of.get(g), thumb, href))
    batch = np.stack([images.load_image(devset / rel, squeezenet.input_size) for rel in files])
    write_map(gallery, points, squeezenet.predict(batch)[0])

    browser.get((gallery / "map.html").as_uri())
    browser.execute_async_script("const done = arguments[0]; window.scrollTo(0, document.body.scrollHeight);"
                                 "Promise.all(Array.from(document.images).map(i => i.decode().catch(() => 0)))"
                                 ".then(() => done());")
    drawn = browser.execute_script(POINTS_JS)
    page_w, page_h = browser.execute_script("return [document.documentElement.scrollWidth,"
                                            "document.documentElement.scrollHeight];")
    box = browser.execute_script("const r = document.querySelector('.map').getBoundingClientRect();"
                                 "return {left: r.left + scrollX, top: r.top + scrollY, right: r.right + scrollX,"
                                 "bottom: r.bottom + scrollY};")
    errors = [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    assert errors == []
    assert len(drawn) == len(points) == 20
    for point, seen in zip(points, drawn):
        assert seen["width"] > 0 and seen["height"] > 0
        assert box["left"] <= seen["left"] and seen["left"] + seen["width"] <= box["right"] <= page_w
        assert box["top"] <= seen["top"] and seen["top"] + seen["height"] <= box["bottom"] <= page_h
        assert Path(urllib.request.url2pathname(urllib.parse.urlparse(seen["href"]).path)).resolve() \
            == (devset / point.rel).resolve()  # the link opens the original
        assert (seen["img"] is None) == (point.thumb_href is None)
        assert seen["img"] is None or (seen["img"]["complete"] and seen["img"]["naturalWidth"] > 0)
    # resizes of one wallpaper have near-identical fingerprints: each one's nearest on the map is a sibling
    at = np.array([[seen["left"], seen["top"]] for seen in drawn])
    for i in range(15):
        distance = np.linalg.norm(at - at[i], axis=1)
        distance[i] = np.inf
        assert groups[int(np.argmin(distance))] == groups[i]
    browser.set_window_size(max(page_w, 800) + 40, page_h + 160)
    assert browser.save_screenshot(str(tmp_path / "map-screenshot.png"))
    legend = browser.find_element("tag name", "details").text
    assert all(f"cluster {k} (5)" in legend for k in range(3)) and "in no cluster (5)" in legend
