"""The gallery's map: every photo's thumbnail placed on a 2-D embedding of the fingerprints (map.html), and a
quick-look picture of it (map.png), both inside the gallery folder.

The layout is openTSNE on the first 50 principal components of the unit-length fingerprints, with fixed seeds,
chosen over UMAP by scripts/bench_map.py (2 shared cores; layout seconds of wall time, PCA apart):

    data set                      openTSNE  kNN kept  group 1-NN     UMAP  kNN kept  group 1-NN
    devset, 217 real SqueezeNet      0.6 s     0.802       0.942    0.7 s     0.769       0.873
    synthetic 2,000                  5.8 s     0.246       0.689    6.9 s     0.168       0.333
    synthetic 15,000                47.3 s     0.381       0.977    8.4 s     0.235       0.819
    synthetic 20,000                58.6 s     0.387       0.986    9.1 s     0.239       0.861

(kNN kept: the share of each photo's 10 nearest in the fingerprint space still among its 10 nearest on the map;
group 1-NN: the share of grouped photos whose nearest photo on the map is of their group.) openTSNE keeps
neighbourhoods better at every size, which is what a map is read for. UMAP is faster above a few thousand photos
(and a fresh process first spends 11-39 s compiling its numba code), but the extra photos it could lay out would
not fit on the page anyway: a 6,400 px square holds about 17,800 of the 48 px thumbnails. So above MAX_POINTS
(PCA and openTSNE together about 50 s at 15,000, 66 s at 20,000) the map shows a fixed sample and says so.
"""
from __future__ import annotations

import colorsys
import hashlib
import html
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .fsutil import FILE, atomic_writer, is_atomic_temporary, make_dir, open_dir, read_regular, remove_made

SEED = 0
PCA_DIMS = 50
MAX_POINTS = 15_000  # PCA and openTSNE take about 50 s for this many (scripts/bench_map.py)
FORMAT = 1  # part of the input hash: bump when the drawing or the layout changes, so old maps are redrawn
HTML_NAME, PNG_NAME = "map.html", "map.png"
HASH_META = "photocluster-map-input"
TILE = 48  # a thumbnail's side on the map, in CSS pixels
PNG_SIDE = 1600
NO_CLUSTER = "#9a9a9a"


@dataclass(frozen=True)
class MapPoint:
    """One photo on the map. The hrefs are URLs relative to the gallery folder (already URL-quoted)."""

    rel: str  # the photo's path relative to the library, shown on hover
    cluster: int | None  # its cluster number, None when it is in no cluster
    thumb_href: str | None  # its thumbnail; None draws a dot
    photo_href: str  # the original photo


@dataclass(frozen=True)
class MapResult:
    written: bool  # False when the input was unchanged and the map was left as it was
    shown: int  # photos on the map
    total: int  # photos given


def write_map(gallery_dir: Path, points: Sequence[MapPoint], fingerprints: np.ndarray, *,
              max_points: int = MAX_POINTS, cluster_hrefs: Mapping[int, str] | None = None) -> MapResult:
    """Write <gallery_dir>/map.html and map.png for `points` (row i of `fingerprints` is points[i]'s).

    gallery_dir's parent (the output folder) must exist; gallery_dir is made if missing and never followed
    through a symlink (fsutil.ForeignEntry, an OSError). cluster_hrefs, when given, links each cluster's legend
    entry to its page. Nothing is written when the input is the same as the last map's.
    """
    fingerprints = np.asarray(fingerprints, np.float32)
    if fingerprints.ndim != 2 or len(fingerprints) != len(points):
        raise ValueError(f"the map needs one fingerprint per photo: {len(points)} photos, "
                         f"fingerprints shaped {fingerprints.shape}")
    hrefs = dict(cluster_hrefs or {})
    key = input_hash(points, fingerprints, max_points, hrefs)
    chosen = sample(points, max_points)
    result = MapResult(True, len(chosen), len(points))
    gallery_dir = Path(gallery_dir)
    with open_dir(gallery_dir.parent, follow=True) as out_fd:
        make_dir(gallery_dir.name, out_fd)
        with open_dir(gallery_dir.name, dir_fd=out_fd) as fd:
            _sweep_temporaries(fd, gallery_dir)
            if _unchanged(fd, key):
                return MapResult(False, result.shown, result.total)
            shown = [points[i] for i in chosen]
            xy = layout(fingerprints[chosen])
            with atomic_writer(PNG_NAME, "wb", dir_fd=fd) as fh:
                render_png(shown, xy).save(fh, "PNG")
            # the page last: it carries the input hash, so a run cut short before it draws both again
            with atomic_writer(HTML_NAME, "wb", dir_fd=fd) as page:  # undecodable names keep their bytes
                page.write(render_html(shown, xy, len(points), key, hrefs).encode("utf-8", "surrogateescape"))
    return result


# --- layout -----------------------------------------------------------------------------------------------

def reduce(fingerprints: np.ndarray) -> np.ndarray:
    """The unit-length fingerprints (cosine is the library's similarity) in their first 50 principal components."""
    from sklearn.decomposition import PCA

    x = np.asarray(fingerprints, np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    dims = min(PCA_DIMS, *x.shape)
    return PCA(dims, random_state=SEED).fit_transform(x).astype(np.float32)


def layout(fingerprints: np.ndarray) -> np.ndarray:
    """(n, 2) positions in [0, 1], one per fingerprint, in the same proportions on both axes."""
    n = len(fingerprints)
    if n < 2:
        return np.full((n, 2), 0.5)
    x50 = reduce(fingerprints)
    if n < 16:  # too few for t-SNE's neighbourhoods: the first two principal components are the honest picture
        xy = np.pad(x50[:, :2], ((0, 0), (0, max(0, 2 - x50.shape[1]))))
    else:
        xy = embed(x50)
    return _to_unit_square(xy.astype(np.float64))


def embed(x50: np.ndarray, n_jobs: int = 1) -> np.ndarray:
    """openTSNE's 2-D embedding of at least 16 reduced fingerprints, with a fixed seed (scripts/bench_map.py).

    One thread: with two, openTSNE's threads wait on each other for many times the work whenever another
    process shares the cores (the daemon's worker, anything else), and gain little when none does.
    """
    from openTSNE import TSNE

    perplexity = min(30.0, (len(x50) - 1) / 3)
    return np.asarray(TSNE(perplexity=perplexity, n_jobs=n_jobs, random_state=SEED).fit(x50))


def _to_unit_square(xy: np.ndarray) -> np.ndarray:
    low, span = xy.min(0), np.ptp(xy, 0)
    scale = span.max()
    if scale <= 0:
        return np.full(xy.shape, 0.5)
    return (xy - low) / scale + (1 - span / scale) / 2  # the shorter axis centred


def sample(points: Sequence[MapPoint], max_points: int) -> list[int]:
    """Indices of the photos to draw, in their order: all, or the max_points whose path hashes lowest.

    A hash of the path rather than a random draw: the same photos stay on the map as the library grows.
    """
    if len(points) <= max_points:
        return list(range(len(points)))
    rank = sorted(range(len(points)), key=lambda i: hashlib.blake2b(points[i].rel.encode(), digest_size=8,
                                                                    person=b"pc-map").digest())
    return sorted(rank[:max_points])


def input_hash(points: Sequence[MapPoint], fingerprints: np.ndarray, max_points: int,
               cluster_hrefs: Mapping[int, str]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    described = [FORMAT, max_points, sorted(cluster_hrefs.items()),
                 [(p.rel, p.cluster, p.thumb_href, p.photo_href) for p in points]]
    digest.update(json.dumps(described).encode())
    digest.update(np.ascontiguousarray(fingerprints, np.float32).tobytes())
    return digest.hexdigest()


def _sweep_temporaries(fd: int, gallery_dir: Path) -> None:
    """Remove the temporaries of a map write that was killed (regular files by our names only)."""
    with os.scandir(fd) as it:
        left = {e.name: FILE for e in it if is_atomic_temporary(e.name, (HTML_NAME, PNG_NAME))}
    remove_made(fd, left, str(gallery_dir))


def _unchanged(fd: int, key: str) -> bool:
    try:
        page = read_regular(HTML_NAME, fd, limit=4096)
        picture = read_regular(PNG_NAME, fd, limit=8)
    except OSError:
        return False
    return picture is not None and page is not None and f'content="{key}"'.encode() in page


# --- drawing ----------------------------------------------------------------------------------------------

def colour(cluster: int | None) -> str:
    """A cluster's colour: hues a golden angle apart, so consecutive numbers differ; grey for no cluster."""
    if cluster is None:
        return NO_CLUSTER
    # lightness cycles too: numbers 5 or 8 apart (Fibonacci) land on close hues
    r, g, b = colorsys.hls_to_rgb((cluster * 0.381966) % 1.0, (0.42, 0.60, 0.30)[cluster % 3], 0.75)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


def page_side(n: int) -> int:
    """The map's width and height in CSS pixels: room for the thumbnails to overlap only where photos crowd."""
    return int(min(6400, max(640, round(np.sqrt(n) * TILE * 1.4))))


_STYLE = f"""
body {{ font: 14px sans-serif; margin: 1em; color: #222; }}
.note {{ background: #fff4d6; padding: .4em .6em; }}
.legend {{ display: flex; flex-wrap: wrap; gap: .3em 1em; list-style: none; padding: 0; }}
.legend span {{ display: inline-block; width: .9em; height: .9em; margin-right: .3em; vertical-align: -.1em; }}
.map {{ position: relative; background: #f6f6f6; margin-top: 1em; }}
.p {{ position: absolute; box-sizing: border-box; width: {TILE}px; height: {TILE}px; border: 3px solid;
      background: #ddd; }}
.p:hover {{ z-index: 1; outline: 2px solid #000; }}
.p img {{ display: block; width: 100%; height: 100%; object-fit: cover; }}
.p.d {{ width: 12px; height: 12px; border-radius: 50%; border: 0; margin: {(TILE - 12) // 2}px; }}
"""


def render_html(points: Sequence[MapPoint], xy: np.ndarray, total: int, key: str,
                cluster_hrefs: Mapping[int, str]) -> str:
    side = page_side(len(points))
    lines = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f'<meta name="{HASH_META}" content="{key}">', "<title>Map of the library</title>",
             f"<style>{_STYLE}</style></head><body>", "<h1>Map of the library</h1>",
             "<p>Each photo sits near the photos whose fingerprints are most like its own; the colour of its frame "
             "is its cluster's. Click a photo to open it.</p>"]
    if len(points) < total:
        lines.append(f'<p class="note">The map shows a fixed sample of {len(points):,} of the library\'s '
                     f"{total:,} photos: laying out more would take over a minute.</p>")
    lines += _legend(points, cluster_hrefs)
    lines.append(f'<div class="map" style="width:{side}px;height:{side}px">')
    lines += [_point(p, x, y, side) for p, (x, y) in zip(points, xy)]
    lines += ["</div>", "</body></html>", ""]
    return "\n".join(lines)


def _legend(points: Sequence[MapPoint], cluster_hrefs: Mapping[int, str]) -> list[str]:
    sizes: dict[int | None, int] = {}
    for p in points:
        sizes[p.cluster] = sizes.get(p.cluster, 0) + 1
    items = []
    for cluster in sorted(sizes, key=lambda c: (c is None, c or 0)):
        name = "in no cluster" if cluster is None else f"cluster {cluster}"
        if cluster in cluster_hrefs:
            name = f'<a href="{html.escape(cluster_hrefs[cluster])}">{name}</a>'
        items.append(f'<li><span style="background:{colour(cluster)}"></span>{name} ({sizes[cluster]:,})</li>')
    opened = " open" if len(items) <= 60 else ""
    return [f"<details{opened}><summary>Colours</summary>", '<ul class="legend">', *items, "</ul></details>"]


def _point(p: MapPoint, x: float, y: float, side: int) -> str:
    left, top = round(x * (side - TILE)), round(y * (side - TILE))
    where = "in no cluster" if p.cluster is None else f"cluster {p.cluster}"
    attrs = (f'class="p{"" if p.thumb_href else " d"}" href="{html.escape(p.photo_href)}" '
             f'title="{html.escape(p.rel)} ({where})" style="left:{left}px;top:{top}px;')
    if p.thumb_href is None:
        return f'<a {attrs}background:{colour(p.cluster)}"></a>'
    return (f'<a {attrs}border-color:{colour(p.cluster)}"><img src="{html.escape(p.thumb_href)}" alt="" '
            'loading="lazy" decoding="async"></a>')


def render_png(points: Sequence[MapPoint], xy: np.ndarray) -> Image.Image:
    """Coloured dots, one per photo, at the map's positions; clustered photos drawn over the grey ones."""
    image = Image.new("RGB", (PNG_SIDE, PNG_SIDE), "white")
    draw = ImageDraw.Draw(image)
    radius = 5 if len(points) <= 2000 else 3 if len(points) <= 20000 else 2
    margin = radius + 4
    order = sorted(range(len(points)), key=lambda i: points[i].cluster is not None)
    for i in order:
        cx, cy = (margin + xy[i] * (PNG_SIDE - 2 * margin)).round()
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour(points[i].cluster))
    return image
