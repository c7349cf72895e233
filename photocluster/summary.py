"""What a one-shot run says when it is done: counts, clusters, scene links, or a dry run's estimate."""
from __future__ import annotations

from .settings import LibrarySettings
from .wording import duration, plural


def print_summary(settings: LibrarySettings, report, dry_run: bool) -> None:
    if report.photos == 0:
        print(f"no photos found in {settings.library}")
        return
    fp = report.fingerprinted
    if dry_run:
        print(f"dry run, nothing is written: {plural(report.photos, 'photo')}, {report.removed} gone")
        if report.would_fingerprint:
            print_estimate(report)
            return
    else:
        rate = f" ({fp.images_per_second:.1f}/s)" if fp.computed else ""
        print(f"{plural(report.photos, 'photo')}: {fp.computed} fingerprinted{rate}, {len(fp.failed)} skipped now, "
              f"{report.failed_total} unreadable in all, {report.removed} gone")
    if report.layout is None:
        return
    for line in report.layout.summary_lines():
        print(line)
    where = "would be written to" if dry_run else "in"
    print(f"{plural(report.clusters, 'cluster')} at cosine cut {report.cut:.3f} ({report.model}) {where} "
          f"{settings.out_dir / 'clusters'}")
    if report.scenes is not None:
        scenes = report.scenes
        print(f"same scene below the cut: {plural(scenes.verified + scenes.bursts, 'pair')} joined "
              f"({scenes.verified} verified, {scenes.bursts} bursts) of {plural(scenes.candidates, 'candidate')}; "
              f"{scenes.verified_now} verified now")
    lower = "a lower --cut" if settings.cut is not None else "a lower --sim"
    hint = f" (--json lists them; {lower} groups more)" if report.unclustered else ""
    print(f"{plural(report.in_clusters, 'photo')} in clusters, {len(report.unclustered)} in none{hint}")
    if report.gallery is not None:
        print(f"gallery: {report.gallery.index} (each cluster's suggested best photo is starred)")


def print_estimate(report) -> None:
    """A dry run cannot know the clusters of photos not yet fingerprinted; say so, and how long that would take."""
    if report.estimated_seconds is None:
        when = "no speed measured on this machine yet"
    else:
        when = f"about {duration(report.estimated_seconds)} at the speed measured on this machine"
    print(f"{plural(report.would_fingerprint, 'photo')} would be fingerprinted ({when}); "
          "clusters are known after that")
