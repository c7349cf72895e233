"""What one run of the pipeline did: the report the CLI prints (--json) and the daemon logs."""
from __future__ import annotations

from dataclasses import dataclass, field

from .fingerprint import FingerprintReport
from .gallery import GalleryReport
from .layout import Layout
from .object_embed import ObjectIndexReport
from .scenes import SceneReport


@dataclass
class RunReport:
    model: str = ""
    weights: str | None = None
    sim: float | None = None  # None when a cut was given instead
    out: str = ""
    photos: int = 0
    fingerprinted: FingerprintReport = field(default_factory=FingerprintReport)
    removed: int = 0
    moved: int = 0
    failed_total: int = 0
    by_runtime: dict[str, int] = field(default_factory=dict)  # the cache's fingerprints by what computed them
    cut: float = 0.0
    layout: Layout | None = None
    layout_changed: bool = False
    patterns_written: int = 0
    unclustered: list[str] = field(default_factory=list)  # fingerprinted photos in no cluster (of min_size)
    detected: int = 0  # photos fingerprinted before that went through the detector in this run
    would_fingerprint: int = 0  # a dry run: photos the real run would fingerprint first
    estimated_seconds: float | None = None  # ...and how long that would take, at the last run's measured speed
    scenes: SceneReport | None = None  # None: no scenes stage ran (--verify off and no burst cue, or skipped)
    objects: ObjectIndexReport | None = None  # None: no object index step ran (--index-objects off)
    gallery: GalleryReport | None = None  # None: no gallery written (--no-gallery, a dry run, or stopped)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def clusters(self) -> int:
        return len(self.layout.clusters) if self.layout else 0

    @property
    def in_clusters(self) -> int:
        return sum(len(members) for members in self.layout.clusters.values()) if self.layout else 0

    def as_dict(self) -> dict:
        return {
            "model": self.model,
            "weights": self.weights,
            "sim": self.sim,
            "out": self.out,
            "photos": self.photos,
            "fingerprinted": self.fingerprinted.computed,
            "runtime": self.fingerprinted.runtime,  # None when nothing was fingerprinted in this process
            "fingerprints_by_runtime": self.by_runtime,
            "detected_earlier_photos": self.detected,
            "failed_now": self.fingerprinted.failed,
            "failed_total": self.failed_total,
            "removed": self.removed,
            "moved": self.moved,
            "cut": self.cut,
            "clusters": {str(m): members for m, members in (self.layout.clusters.items() if self.layout else [])},
            "in_clusters": self.in_clusters,
            "unclustered": self.unclustered,
            "would_fingerprint": self.would_fingerprint,
            "estimated_seconds": self.estimated_seconds,
            "layout_changed": self.layout_changed,
            "scenes": self.scenes.as_dict() if self.scenes else None,
            "objects_indexed": vars(self.objects) if self.objects else None,
            "gallery": self.gallery.as_dict() if self.gallery else None,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }
