#!/usr/bin/env python3
"""Open gallery pages in headless Chromium (Debian's chromium and chromium-driver, driven by Selenium) from file://.

    python scripts/gallery_screenshot.py OUT/gallery/index.html docs/gallery.png [--width 1200 --height 900]

Writes a screenshot of the page, with every thumbnail loaded first (the pages load them lazily, as they scroll into
view). tests/test_gallery_browser.py uses the same functions to check the pages as a person would see them.
"""
from __future__ import annotations

import argparse
import io
import shutil
import time
from pathlib import Path

from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def start_browser(width: int = 1200, height: int = 900) -> webdriver.Chrome:
    """Headless Chromium with its console kept, for driver.get_log('browser')."""
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or CHROMEDRIVER), options=options)


def load_every_image(driver: webdriver.Chrome, timeout: float = 60.0) -> list[dict]:
    """Bring each image not loaded yet into view, one after the other (they load lazily, when near the view), until
    all have loaded or failed; scroll back to the top; return each image's src, whether it is complete, its
    naturalWidth (0: not decoded) and whether it is inside a figure marked best."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not driver.execute_script(
            "const i = Array.from(document.images).find(i => !i.complete);"
            "if (i) i.scrollIntoView({block: 'center', inline: 'center'});"
            "return i === undefined;"):
        time.sleep(0.05)
    driver.execute_script("document.querySelectorAll('.strip').forEach(s => s.scrollLeft = 0); window.scrollTo(0, 0);")
    return driver.execute_script(
        "return Array.from(document.images).map(i => ({src: i.src, naturalWidth: i.naturalWidth, "
        "complete: i.complete, best: i.closest('figure.best') !== null}));")


def screenshot(page: Path, png: Path, width: int = 1200, height: int = 900) -> None:
    driver = start_browser(width, height)
    try:
        driver.get(page.resolve().as_uri())
        load_every_image(driver)
        raw = driver.get_screenshot_as_png()
    finally:
        driver.quit()
    # 256 colours keep a screenshot of thumbnails small enough for a README, and still faithful
    Image.open(io.BytesIO(raw)).convert("RGB").quantize(256).save(png, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args()
    screenshot(args.page, args.png, args.width, args.height)
    print(f"{args.png}: {args.png.stat().st_size} bytes")


if __name__ == "__main__":
    main()
