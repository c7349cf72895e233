"""What the daemon tells about its work: the STATUS= line `systemctl status` shows, and a log line per update."""
from __future__ import annotations

import logging
from collections.abc import Iterable

from .pipeline import RunReport
from .watched import Library
from .wording import plural

log = logging.getLogger("photocluster.daemon")  # the daemon's own logger: these are its lines


def status_line(libraries: Iterable[Library], doing: str) -> str:
    """'12,345 photos, 87 clusters, idle': the libraries' last reports and what the daemon is `doing`."""
    libraries = list(libraries)
    reports = [lib.last_report for lib in libraries if lib.last_report is not None]
    photos = sum(r.photos for r in reports)
    clusters = sum(r.clusters for r in reports)
    missing = [lib.root for lib in libraries if lib.root_id is None]
    failed = [lib.root for lib in libraries if lib.failed is not None]
    line = f"{plural(photos, 'photo')}, {plural(clusters, 'cluster')}, {doing}"
    line += f"; missing: {', '.join(missing)}" if missing else ""
    return line + (f"; failed (weights missing): {', '.join(failed)}" if failed else "")


def log_update(library: Library, report: RunReport, seconds: float, stopped: bool) -> None:
    """One line per update: INFO when something changed, else DEBUG; `stopped` when a stop cut the update short."""
    if stopped:
        log.info("%s: stopped mid-update; %s fingerprinted are saved", library.root,
                 plural(report.fingerprinted.computed, "photo"))
        return
    stages = ", ".join(f"{name} {secs:.2f} s" for name, secs in report.seconds.items())
    log.debug("%s: stages: %s", library.root, stages)
    fp = report.fingerprinted
    changed = fp.computed or fp.failed or report.moved or report.removed or report.layout_changed
    log.log(logging.INFO if changed else logging.DEBUG,
            "%s: %s: %d fingerprinted, %d unreadable, %d moved, %d removed; %s (%.1f s)",
            library.root, plural(report.photos, "photo"), fp.computed, len(fp.failed), report.moved,
            report.removed, plural(report.clusters, "cluster"), seconds)


def failure_message(exc: BaseException) -> str:
    """An update's error in a few words: an OSError's reason and file, else the message or the exception's name."""
    where = f" {exc.filename}" if isinstance(exc, OSError) and exc.filename else ""
    message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
    return message + where
