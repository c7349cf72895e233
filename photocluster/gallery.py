"""The gallery stage: <out>/gallery/, static HTML pages of the clusters, the photos in none and the object
patterns, with a thumbnail of every photo linking to the original.

    <out>/gallery/index.html                  the clusters, each a strip of thumbnails with why it was grouped
    <out>/gallery/index-2.html ...            the next CLUSTERS_PER_PAGE clusters each
    <out>/gallery/cluster-<M>.html            one cluster, every photo (cluster-<M>-2.html ... when it is large)
    <out>/gallery/unclustered.html ...        the photos in no cluster
    <out>/gallery/patterns.html ...           the per-folder pattern summaries, with example thumbnails
    <out>/gallery/style.css, thumbs/          the pages' style; the thumbnails (thumbs.py)
    <out>/gallery/.state.json                 what the last run wrote: each page's digest, each thumbnail's quality
                                              measures, each cluster's cosine figures (by its members' versions)

Thumbnails come from the fingerprint step's decodes; a photo fingerprinted before the gallery existed gets its
thumbnail here, from one decode, in a catch-up pass (fingerprint.thumbnail_photos), its fingerprint kept. A page is
rewritten only when its content changed, so a run that changed one cluster writes that cluster's page and the index
page that lists it. Nothing is written outside <out>/gallery/, and there only in our marked folders (thumbs.py).
Nothing in the library is ever moved or deleted: the suggested best photo is only named.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .cache import FingerprintCache
from .fingerprint import thumbnail_photos
from .fsutil import FILE, ForeignEntry, atomic_writer, is_regular_at, open_dir, our_folder, read_regular, remove_made
from .gallery_facts import ClusterEvidence, ClusterFacts, cosine_stats, folder_patterns, membership_key, photo_objects
from .gallery_html import (CSS, STYLE, PhotoView, cluster_pages, cluster_stem, index_pages, page_name, pattern_pages,
                           unclustered_pages)
from .gallery_map import MapPoint, write_map
from .layout import Layout
from .library import PhotoFile
from .settings import LibrarySettings
from .thumbs import GALLERY, THUMBS, Quality, ThumbWriter, present, read_quality, remove_stale, thumb_name
from .wording import plural

log = logging.getLogger(__name__)

STATE_NAME = ".state.json"
STATE_VERSION = 1
# When the map is drawn again (_Gallery._map_due): every run below this many photos; above, once this share of
# the photos changed since the last map, or the last map is this many seconds old.
MAP_EVERY_RUN_BELOW = 2_000
MAP_CHANGED_SHARE = 0.02
MAP_MAX_AGE = 600.0
_OUR_PAGE = re.compile(r"(index|unclustered|patterns)(-[0-9]+)?\.html|cluster-[0-9]+(-[0-9]+)?\.html|style\.css")


@dataclass
class GalleryReport:
    index: str = ""  # the path of index.html
    pages_written: list[str] = field(default_factory=list)
    pages_unchanged: int = 0
    pages_removed: int = 0
    thumbs_made: int = 0  # by the catch-up pass
    thumbs_removed: int = 0
    best: dict[int, dict] = field(default_factory=dict)  # cluster number -> {"photo": rel, "reason": why}

    def as_dict(self) -> dict:
        return {"index": self.index, "pages_written": len(self.pages_written), "pages_unchanged": self.pages_unchanged,
                "pages_removed": self.pages_removed, "thumbs_made": self.thumbs_made,
                "thumbs_removed": self.thumbs_removed, "best": {str(m): b for m, b in self.best.items()}}


def write_gallery(settings: LibrarySettings, cache: FingerprintCache, layout: Layout | None, rels: list[str],
                  photos: dict[str, PhotoFile], progress: bool | None = None,
                  should_stop: Callable[[], bool] = lambda: False) -> GalleryReport | None:
    """Bring <out>/gallery/ up to date with the fingerprinted photos `rels` and their clusters. None when the
    gallery folder is not photocluster's (one warning) or the run was stopped before the pages."""
    out_dir = Path(settings.out_dir)
    shown = os.path.join(out_dir, GALLERY)
    try:
        with _gallery_folders(out_dir) as (gallery_fd, thumbs_fd):
            return _Gallery(settings, cache, gallery_fd, thumbs_fd).update(layout, rels, photos, progress, should_stop)
    except ForeignEntry as exc:
        log.warning("gallery: not written in %s: %s", shown, exc.strerror)
        return None


@contextlib.contextmanager
def _gallery_folders(out_dir: Path) -> Iterator[tuple[int, int]]:
    with open_dir(out_dir, follow=True) as out_fd, our_folder(out_fd, GALLERY, create=True) as gallery_fd, \
            our_folder(gallery_fd, THUMBS, create=True) as thumbs_fd:
        yield gallery_fd, thumbs_fd


class _Gallery:
    def __init__(self, settings: LibrarySettings, cache: FingerprintCache, gallery_fd: int, thumbs_fd: int):
        self.settings, self.cache = settings, cache
        self.fd, self.thumbs_fd = gallery_fd, thumbs_fd
        self.dir = os.path.abspath(os.path.join(settings.out_dir, GALLERY))
        self.library = os.path.abspath(settings.library)
        self.report = GalleryReport(index=os.path.join(self.dir, "index.html"))
        self.state = self._load_state()

    def update(self, layout: Layout | None, rels: list[str], photos: dict[str, PhotoFile], progress: bool | None,
               should_stop: Callable[[], bool]) -> GalleryReport | None:
        self._sweep_temporaries()
        qualities = self._thumbnails(rels, photos, progress, should_stop)
        if should_stop():
            return None
        clusters = layout.clusters if layout is not None else {}
        clustered = [rel for members in clusters.values() for rel in members if rel in self.cache.entries]
        evidence = ClusterEvidence(self.settings, self.cache, clustered)
        items = photo_objects(self.settings, self.cache, rels)
        facts = self._facts(clusters, evidence, items, qualities)
        views = self._views(qualities, evidence)
        owner = {rel: m for m, members in clusters.items() for rel in members}
        in_none = [rel for rel in rels if rel not in owner]
        if should_stop():  # before the map (up to a minute at 15,000 photos) and the pages: the next update does them
            return None
        self._write_map([MapPoint(rel, owner.get(rel), views(rel).thumb_href, views(rel).photo_href)
                         for rel in rels], clusters)
        self._write_pages(self._pages(facts, in_none, items, views, len(rels)))
        self.report.best = {f.number: {"photo": f.best.rel, "reason": f.best.reason} for f in facts if f.best}
        self._save_state()
        log.info("gallery: %s written, %d unchanged, %s made (%s)", plural(len(self.report.pages_written), "page"),
                 self.report.pages_unchanged, plural(self.report.thumbs_made, "thumbnail"), self.report.index)
        return self.report

    # --- thumbnails -------------------------------------------------------------------------------------------
    def _thumbnails(self, rels: list[str], photos: dict[str, PhotoFile], progress: bool | None,
                    should_stop: Callable[[], bool]) -> dict[str, Quality]:
        """Each photo's quality measures, from its thumbnail; the missing thumbnails made first (one decode each),
        and the thumbnails of photos gone or changed removed."""
        names = {rel: thumb_name(rel, self.cache.entries[rel].size, self.cache.entries[rel].mtime_ns) for rel in rels}
        known = self.state["thumbs"]
        on_disk = present(self.thumbs_fd)
        qualities: dict[str, Quality] = {}
        missing = []
        for rel, name in names.items():
            quality = _from_state(known.get(name)) if name in on_disk else None
            quality = quality or (read_quality(name, self.thumbs_fd) if name in on_disk else None)
            if quality is not None:
                qualities[rel] = quality
            elif rel in photos and (photos[rel].size, photos[rel].mtime_ns) == (self.cache.entries[rel].size,
                                                                               self.cache.entries[rel].mtime_ns):
                missing.append(photos[rel])
        if missing:
            log.info("gallery: making thumbnails of %s fingerprinted before", plural(len(missing), "photo"))
            writer = ThumbWriter(self.thumbs_fd, os.path.join(self.dir, THUMBS))
            thumbnail_photos(missing, Path(self.library), writer, batch_size=self.settings.batch_size,
                             progress=progress, should_stop=should_stop)
            os.fsync(self.thumbs_fd)
            self.report.thumbs_made = writer.made
            for photo in missing:
                quality = read_quality(names[photo.rel], self.thumbs_fd)
                if quality is not None:
                    qualities[photo.rel] = quality
        if not should_stop():
            self.report.thumbs_removed = remove_stale(self.thumbs_fd, names.values(), os.path.join(self.dir, THUMBS))
        self.state["thumbs"] = {names[rel]: q.as_list() for rel, q in sorted(qualities.items())}
        return qualities

    # --- what the pages show ----------------------------------------------------------------------------------
    def _facts(self, clusters: dict[int, list[str]], evidence: ClusterEvidence, items: dict[str, list[str]],
               qualities: dict[str, Quality]) -> list[ClusterFacts]:
        known, cosines = self.state["cosine"], {}
        owner = {rel: m for m, members in clusters.items() for rel in members}
        verified = evidence.verified_per_cluster(owner)
        facts = []
        for number, members in sorted(clusters.items()):
            members = [rel for rel in members if rel in self.cache.entries and self.cache.entries[rel].row >= 0]
            key = membership_key(self.cache, members)
            cosine = known.get(key)
            if not (isinstance(cosine, list) and len(cosine) == 2):
                stats = cosine_stats(self.cache.vectors(members))
                cosine = list(stats) if stats else None
            cosines[key] = cosine
            facts.append(evidence.facts(number, members, tuple(cosine) if cosine else None, items, qualities,
                                        verified.get(number, 0)))
        self.state["cosine"] = cosines
        return facts

    def _views(self, qualities: dict[str, Quality], evidence: ClusterEvidence) -> Callable[[str], PhotoView]:
        cache: dict[str, PhotoView] = {}

        def view(rel: str) -> PhotoView:
            if rel not in cache:
                entry = self.cache.entries[rel]
                thumb = f"{THUMBS}/{thumb_name(rel, entry.size, entry.mtime_ns)}" if rel in qualities else None
                capture = evidence.captures.get(rel)
                cache[rel] = PhotoView(rel, thumb, os.path.relpath(os.path.join(self.library, rel), self.dir),
                                       qualities.get(rel), capture.time if capture else None)
            return cache[rel]
        return view

    def _pages(self, facts: list[ClusterFacts], in_none: list[str], items: dict[str, list[str]],
               views: Callable[[str], PhotoView], photos: int) -> dict[str, str]:
        folders = folder_patterns(Path(self.settings.out_dir), items) if self.settings.patterns.enabled else []
        has_patterns, has_map = bool(folders), is_regular_at("map.html", self.fd)
        in_clusters = sum(len(f.members) for f in facts)
        header = (f"<p>{plural(photos, 'photo')} fingerprinted with {self.settings.model}: "
                  f"{plural(len(facts), 'cluster')} hold {in_clusters}, {len(in_none)} are in none "
                  "(the starred photo of each is the suggested best; nothing is moved or deleted).</p>")
        pages = {STYLE: CSS}
        pages.update(index_pages(facts, views, header, has_patterns, has_map))
        for f in facts:
            folder = f"../clusters/cluster_with_{len(f.members)}/cluster_{f.number}/"
            pages.update(cluster_pages(f, views, folder, has_patterns, has_map))
        pages.update(unclustered_pages(in_none, views, has_patterns, has_map))
        if has_patterns:
            pages.update(pattern_pages(folders, views, has_map))
        return pages

    # --- the map (issue 14, item 4) ---------------------------------------------------------------------------
    def _write_map(self, points: list[MapPoint], clusters: dict[int, list[str]]) -> None:
        """map.html and map.png (gallery_map.py), before the pages, so that they link to a map that exists."""
        points = [p for p in points if self.cache.entries[p.rel].row >= 0]  # only fingerprinted photos have a place
        if not self._map_due([p.rel for p in points]):
            return
        hrefs = {m: page_name(cluster_stem(m), 1) for m in clusters}
        write_map(Path(self.dir), points, self.cache.vectors([p.rel for p in points]), cluster_hrefs=hrefs)
        self.state["map"] = {"at": time.time(), "photos": sorted(p.rel for p in points)}

    def _map_due(self, rels: list[str]) -> bool:
        """Whether the map is drawn again in this run. Laying out a large library takes long (openTSNE: ~50 s at
        15,000 photos), too long for each photo a daemon takes in; so from MAP_EVERY_RUN_BELOW photos on, the map
        is drawn again only once the photos differ from the last map's by more than MAP_CHANGED_SHARE (added plus
        removed), or the last map is older than MAP_MAX_AGE seconds. Below that, whenever its input changed."""
        last = self.state.get("map")
        if len(rels) < MAP_EVERY_RUN_BELOW or not isinstance(last, dict) or not is_regular_at("map.html", self.fd):
            return True
        try:
            age, before = time.time() - float(last["at"]), set(last["photos"])
        except (KeyError, TypeError, ValueError):
            return True
        return len(before.symmetric_difference(rels)) > MAP_CHANGED_SHARE * len(before) or not 0 <= age < MAP_MAX_AGE

    # --- files ------------------------------------------------------------------------------------------------
    def _write_pages(self, pages: dict[str, str]) -> None:
        """Write the pages whose content changed (or whose file is gone), remove the pages of the last run that
        this one no longer has."""
        old, new = self.state["pages"], {}
        for name, content in pages.items():
            data = content.encode("utf-8", "surrogateescape")
            digest = hashlib.sha256(data).hexdigest()
            new[name] = digest
            if old.get(name) == digest and is_regular_at(name, self.fd):
                self.report.pages_unchanged += 1
                continue
            with atomic_writer(name, "wb", dir_fd=self.fd) as fh:
                fh.write(data)
            self.report.pages_written.append(name)
        gone = {name: FILE for name in old if name not in new and _OUR_PAGE.fullmatch(name)}
        remove_made(self.fd, gone, self.dir)
        self.report.pages_removed = len(gone)
        self.state["pages"] = new

    def _load_state(self) -> dict:
        empty = {"version": STATE_VERSION, "thumbs": {}, "pages": {}, "cosine": {}}
        try:
            state = json.loads(read_regular(STATE_NAME, self.fd) or b"{}")
        except (OSError, ValueError) as exc:
            log.warning("gallery: rewriting every page: unreadable %s (%s)", STATE_NAME,
                        getattr(exc, "strerror", None) or exc)
            return empty
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION or not all(
                isinstance(state.get(key), dict) for key in ("thumbs", "pages", "cosine")):
            return empty
        return state

    def _save_state(self) -> None:
        with atomic_writer(STATE_NAME, "w", dir_fd=self.fd) as fh:
            json.dump(self.state, fh, sort_keys=True)

    def _sweep_temporaries(self) -> None:
        """Remove what a killed run left: temporaries of our pages and state (only regular files by our names)."""
        with os.scandir(self.fd) as it:
            left = {e.name: FILE for e in it if _OUR_TEMPORARY.fullmatch(e.name)}
        remove_made(self.fd, left, self.dir)


_OUR_TEMPORARY = re.compile(r"\.(\.state\.json|(index|unclustered|patterns)(-[0-9]+)?\.html|cluster-[0-9]+(-[0-9]+)?"
                            r"\.html|style\.css)\.[0-9a-f]+\.tmp")


def _from_state(values: object) -> Quality | None:
    try:
        return Quality.from_list(values)
    except ValueError:
        return None
