"""The gallery of the devset in a real browser: Debian's Chromium, headless, driven by Selenium and chromium-driver
(scripts/install.sh --test installs them), loading every page from file:// as a person would."""
from __future__ import annotations

import urllib.parse
from pathlib import Path

import pytest
from PIL import Image

from photocluster.gallery_html import CLUSTERS_PER_PAGE
from photocluster.pipeline import run_once
from photocluster.settings import LibrarySettings

from .conftest import load_script


@pytest.fixture(scope="module")
def devset_gallery(devset, tmp_path_factory):
    """The devset run with the real SqueezeNet, as the README's screenshot was made."""
    from photocluster.weights import fetch_weights

    fetch_weights("squeezenet")
    out = tmp_path_factory.mktemp("devset") / "out"
    report = run_once(LibrarySettings(library=devset, out=out, model="squeezenet"), progress=False)
    return report, out / "gallery", Path(devset).resolve()


@pytest.fixture(scope="module")
def browser():
    shots = load_script("gallery_screenshot")
    driver = shots.start_browser()
    yield driver, shots
    driver.quit()


def visit(browser, page: Path) -> tuple[list[dict], list[dict]]:
    """Load `page`; (its images once every one has loaded or failed, the console's messages)."""
    driver, shots = browser
    driver.get_log("browser")  # what earlier pages said is theirs
    driver.get(page.as_uri())
    images = shots.load_every_image(driver)
    return images, driver.get_log("browser")


def local_links(browser) -> list[Path]:
    driver, _ = browser
    hrefs = driver.execute_script("return Array.from(document.links).map(a => a.href);")
    return [Path(urllib.parse.unquote(urllib.parse.urlparse(h).path)) for h in hrefs if h.startswith("file://")]


def test_the_overview_renders_without_errors_with_every_thumbnail_and_best_photo(devset_gallery, browser, tmp_path):
    report, gallery, _ = devset_gallery
    images, console = visit(browser, gallery / "index.html")
    assert [m for m in console if m["level"] == "SEVERE"] == []
    assert images and all(i["complete"] and i["naturalWidth"] > 0 for i in images)
    shown = min(len(report.layout.clusters), CLUSTERS_PER_PAGE)
    assert sum(i["best"] for i in images) == shown  # one starred photo in each cluster's strip
    photos = [p for p in local_links(browser) if p.suffix.lower() != ".html"]
    assert photos and all(p.is_file() for p in photos)
    driver, _ = browser
    driver.save_screenshot(str(tmp_path / "overview.png"))
    assert Image.open(tmp_path / "overview.png").size[0] >= 1000


def test_every_page_renders_without_errors_and_its_links_resolve(devset_gallery, browser):
    report, gallery, _ = devset_gallery
    pages = sorted(gallery.glob("*.html"))
    assert len(pages) >= len(report.layout.clusters) + 2  # the index, each cluster, the photos in none
    for page in pages:
        images, console = visit(browser, page)
        assert [m for m in console if m["level"] == "SEVERE"] == [], page.name
        assert all(i["naturalWidth"] > 0 for i in images), page.name
        broken = [p for p in local_links(browser) if not p.exists()]
        assert broken == [], page.name


def test_each_cluster_page_marks_its_best_photo(devset_gallery, browser):
    report, gallery, library = devset_gallery
    best = report.as_dict()["gallery"]["best"]
    assert len(best) == len(report.layout.clusters)
    driver, _ = browser
    for number in report.layout.clusters:
        images, _ = visit(browser, gallery / f"cluster-{number}.html")
        assert sum(i["best"] for i in images) == 1, number
        link = driver.execute_script("return document.querySelector('figure.best a').href;")
        photo = Path(urllib.parse.unquote(urllib.parse.urlparse(link).path))
        assert photo == library / best[str(number)]["photo"]
