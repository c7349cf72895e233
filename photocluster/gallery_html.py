"""The gallery's pages as HTML text: static files that work from file://, with no script, server or network.

Each page is a pure function of what it shows, so the gallery can tell an unchanged page by its content and leave
its file alone. Counts that change with every photo appear on the first index page only, not in the navigation, so
one changed cluster changes its own page and the index page that lists it, and no other. Every name from the library
is escaped for HTML, and every link is a relative, percent-encoded path (file names may hold any byte).
"""
from __future__ import annotations

import html
import os
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from .gallery_facts import ClusterFacts, FolderPatterns
from .library import printable_path
from .thumbs import Quality
from .wording import plural

STYLE = "style.css"
CLUSTERS_PER_PAGE = 50
PHOTOS_PER_PAGE = 400  # on a cluster's page and on the page of photos in no cluster
FOLDERS_PER_PAGE = 40
STRIP = 12  # thumbnails in a cluster's strip on the index

CSS = """\
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f4f4f2; color: #222; }
header { background: #263238; color: #fff; padding: 10px 16px; }
header a { color: #cfe8ff; margin-right: 16px; text-decoration: none; }
main { padding: 8px 16px 24px; }
h1 { font-size: 20px; margin: 8px 0; }
h2 { font-size: 16px; margin: 0 0 4px; }
section { background: #fff; border-radius: 6px; padding: 10px 12px; margin: 10px 0; box-shadow: 0 1px 2px #0002; }
.facts { color: #555; margin: 0 0 6px; }
.facts b { color: #222; font-weight: 600; }
.strip, .grid { display: flex; flex-wrap: wrap; gap: 6px; align-items: flex-end; }
.strip { flex-wrap: nowrap; overflow-x: auto; padding-bottom: 4px; }
figure { margin: 0; position: relative; flex: none; }
figure img { display: block; height: 112px; width: auto; max-width: 256px; border-radius: 3px; background: #ddd; }
.grid figure img { height: 192px; }
figcaption { font-size: 12px; color: #555; max-width: 256px; overflow-wrap: anywhere; }
figure.best img { outline: 4px solid #f9a825; outline-offset: -4px; }
.badge { position: absolute; top: 4px; left: 4px; background: #f9a825; color: #000; font-size: 12px;
         padding: 1px 5px; border-radius: 3px; }
.more { align-self: center; padding: 0 8px; }
nav.pages { margin: 12px 0; }
nav.pages a, nav.pages span { margin-right: 8px; }
"""


@dataclass(frozen=True)
class PhotoView:
    """One photo as the pages show it; hrefs are relative to the gallery folder."""

    rel: str
    thumb_href: str | None  # None: no thumbnail (could not be made)
    photo_href: str
    quality: Quality | None = None
    taken: datetime | None = None


def href(path: str) -> str:
    """A relative path as a URL path: every byte percent-encoded but the slashes."""
    return urllib.parse.quote(os.fsencode(path), safe="/")


def text(value: str) -> str:
    return html.escape(printable_path(value))


def figure(photo: PhotoView, best_reason: str | None = None, caption: bool = False) -> str:
    name = text(photo.rel.rpartition("/")[2])
    title = text(photo.rel) + (f" \u2014 suggested best: {html.escape(best_reason)}" if best_reason else "")
    inner = (f'<img src="{href(photo.thumb_href)}" alt="{name}" loading="lazy">' if photo.thumb_href
             else f'<span class="nothumb">{name}</span>')
    badge = '<span class="badge">\u2605 best</span>' if best_reason else ""
    lines = [text(photo.rel)] if caption else []
    if caption and photo.quality is not None:
        q = photo.quality
        lines.append(f"{q.width}\u00d7{q.height}, sharpness {q.sharpness:.0f}, {q.clipped:.1%} clipped")
    if caption and photo.taken is not None:
        lines.append(photo.taken.strftime("%Y-%m-%d %H:%M:%S"))
    cap = f"<figcaption>{'<br>'.join(lines)}</figcaption>" if lines else ""
    return (f'<figure class="{"best" if best_reason else "photo"}" title="{title}">{badge}'
            f'<a href="{html.escape(href(photo.photo_href))}">{inner}</a>{cap}</figure>')


def page(title: str, body: str, has_patterns: bool, has_map: bool) -> str:
    links = ['<a href="index.html">Clusters</a>', '<a href="unclustered.html">Not in a cluster</a>']
    links += ['<a href="patterns.html">Object patterns</a>'] if has_patterns else []
    links += ['<a href="map.html">Map</a>'] if has_map else []
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<link rel="stylesheet" href="{STYLE}"></head>\n<body><header>{" ".join(links)}</header>\n'
            f"<main>\n<h1>{html.escape(title)}</h1>\n{body}\n</main></body></html>\n")


def page_name(stem: str, number: int) -> str:
    """The file of page `number` (1-based) of a paged list: stem.html, stem-2.html..."""
    return f"{stem}.html" if number == 1 else f"{stem}-{number}.html"


def paged(stem: str, items: Sequence, per_page: int) -> list[tuple[str, Sequence, str]]:
    """(file name, the items on it, its page navigation) for each page of `items` (at least one page)."""
    count = max(1, -(-len(items) // per_page))
    pages = []
    for number in range(1, count + 1):
        nav = "" if count == 1 else "<nav class=\"pages\">" + "".join(
            f"<span>{n}</span>" if n == number else f'<a href="{page_name(stem, n)}">{n}</a>'
            for n in range(1, count + 1)) + "</nav>"
        pages.append((page_name(stem, number), items[(number - 1) * per_page:number * per_page], nav))
    return pages


def cluster_stem(number: int) -> str:
    return f"cluster-{number}"


def facts_html(facts: ClusterFacts) -> str:
    parts = [f"<b>{plural(len(facts.members), 'photo')}</b>"]
    if facts.taken is not None:
        first, last = facts.taken
        until = last.strftime("%H:%M") if first.date() == last.date() else last.strftime("%Y-%m-%d %H:%M")
        untimed = len(facts.members) - facts.timed
        parts.append(f"taken {first.strftime('%Y-%m-%d %H:%M')} \u2013 {until} ({_span(last - first)})"
                     + (f", {untimed} without a time" if untimed else ""))
    else:
        parts.append("no capture times")
    if facts.objects:
        shown = ", ".join(f"{html.escape(item)} {n}/{len(facts.members)}" for item, n in facts.objects)
        parts.append(f"shared objects: {shown}")
    why = []
    if facts.cosine is not None:
        why.append(f"cosine similarity lowest {facts.cosine[0]:.2f}, mean {facts.cosine[1]:.2f}")
    if facts.verified_pairs:
        why.append(f"{plural(facts.verified_pairs, 'pair')} verified as one scene")
    if facts.burst_photos:
        why.append(f"{plural(facts.burst_photos, 'photo')} in bursts")
    if why:
        parts.append("grouped by " + "; ".join(why))
    best = facts.best
    if best is not None:
        parts.append(f"suggested best: {text(best.rel.rpartition('/')[2])}, {html.escape(best.reason)}")
    return '<p class="facts">' + " \u00b7 ".join(parts) + "</p>"


def _span(delta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return plural(seconds, "second")
    if seconds < 2 * 3600:
        return plural(seconds // 60, "minute")
    if seconds < 2 * 86400:
        return plural(seconds // 3600, "hour")
    return plural(seconds // 86400, "day")


def index_pages(clusters: Sequence[ClusterFacts], views: Callable[[str], PhotoView], header: str,
                has_patterns: bool, has_map: bool) -> dict[str, str]:
    pages = {}
    for number, (name, shown, nav) in enumerate(paged("index", clusters, CLUSTERS_PER_PAGE), 1):
        sections = [_strip(facts, views) for facts in shown]
        body = (header if number == 1 else "") + nav + "\n".join(sections) + nav
        if not clusters:
            body += "<p>No clusters yet.</p>"
        pages[name] = page("Clusters" if number == 1 else f"Clusters, page {number}", body, has_patterns, has_map)
    return pages


def _strip(facts: ClusterFacts, views: Callable[[str], PhotoView]) -> str:
    best = facts.best.rel if facts.best else None
    order = ([best] if best else []) + [rel for rel in facts.members if rel != best]
    figures = [figure(views(rel), facts.best.reason if rel == best else None) for rel in order[:STRIP]]
    link = page_name(cluster_stem(facts.number), 1)
    if len(order) > STRIP:
        figures.append(f'<a class="more" href="{link}">+{len(order) - STRIP} more</a>')
    return (f'<section id="c{facts.number}"><h2><a href="{link}">Cluster {facts.number}</a></h2>'
            f'{facts_html(facts)}<div class="strip">{"".join(figures)}</div></section>')


def cluster_pages(facts: ClusterFacts, views: Callable[[str], PhotoView], folder_href: str,
                  has_patterns: bool, has_map: bool) -> dict[str, str]:
    best = facts.best.rel if facts.best else None
    pages = {}
    for number, (name, shown, nav) in enumerate(paged(cluster_stem(facts.number), facts.members, PHOTOS_PER_PAGE), 1):
        grid = "".join(figure(views(rel), facts.best.reason if rel == best else None, caption=True)
                       for rel in shown)
        body = (f'<section>{facts_html(facts)}<p>Its folder of links: <a href="{html.escape(href(folder_href))}">'
                f"{text(folder_href)}</a></p></section>{nav}<div class=\"grid\">{grid}</div>{nav}")
        title = f"Cluster {facts.number}" + (f", page {number}" if number > 1 else "")
        pages[name] = page(title, body, has_patterns, has_map)
    return pages


def unclustered_pages(rels: Sequence[str], views: Callable[[str], PhotoView], has_patterns: bool,
                      has_map: bool) -> dict[str, str]:
    pages = {}
    for number, (name, shown, nav) in enumerate(paged("unclustered", rels, PHOTOS_PER_PAGE), 1):
        grid = "".join(figure(views(rel), caption=True) for rel in shown)
        intro = f"<p>{plural(len(rels), 'photo')} in no cluster.</p>" if number == 1 else ""
        title = "Not in a cluster" + (f", page {number}" if number > 1 else "")
        pages[name] = page(title, f'{intro}{nav}<div class="grid">{grid}</div>{nav}', has_patterns, has_map)
    return pages


def pattern_pages(folders: Sequence[FolderPatterns], views: Callable[[str], PhotoView],
                  has_map: bool) -> dict[str, str]:
    pages = {}
    for number, (name, shown, nav) in enumerate(paged("patterns", folders, FOLDERS_PER_PAGE), 1):
        sections = []
        for folder in shown:
            rows = []
            for objects, support, examples in folder.patterns:
                thumbs = "".join(figure(views(rel)) for rel in examples)
                rows.append(f"<p><b>{html.escape(' + '.join(objects))}</b>: {plural(support, 'photo')}</p>"
                            f'<div class="strip">{thumbs}</div>')
            summary = html.escape(href("../" + folder.summary_href))
            sections.append(f"<section><h2>{text(folder.folder or 'the library root')}</h2>"
                            f'<p class="facts">{plural(folder.photos, "photo")}; '
                            f'<a href="{summary}">summary.md</a></p>{"".join(rows) or "<p>No patterns.</p>"}'
                            "</section>")
        title = "Object patterns by folder" + (f", page {number}" if number > 1 else "")
        pages[name] = page(title, nav + "".join(sections) + nav, True, has_map)
    return pages
