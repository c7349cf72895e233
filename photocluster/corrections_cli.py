"""`photocluster corrections PATH [--json] [--forget [PHOTO ...]]`: list or forget the corrections a user made in
the cluster folders (corrections.py)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .cli_options import _Parser
from .corrections import CORRECTIONS_NAME, CorrectionsError, Corrections, load_corrections, read_corrections, \
    save_corrections
from .fsutil import ForeignEntry
from .logs import setup_logging
from .pipeline import output_lock
from .settings import LibrarySettings, SettingsError
from .wording import plural


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="photocluster corrections",
                description="List the corrections made in the cluster folders (a link deleted: not in that "
                "cluster; a link moved to another cluster folder: belongs with those photos), or forget them.")
    p.add_argument("path", type=Path, help="the photo library")
    p.add_argument("--out", type=Path, default=None, metavar="DIR", help="output folder (default: PATH/photocluster)")
    p.add_argument("--forget", nargs="*", default=None, metavar="PHOTO",
                   help="forget the corrections that name these photos (paths in the library, or links in the "
                   "cluster folders); with no PHOTO, forget them all. The next run applies it")
    p.add_argument("--json", action="store_true", help="print the corrections as JSON on stdout")
    p.add_argument("-v", "--verbose", action="store_true", help="say more")
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet or args.json)
    settings = LibrarySettings(library=args.path, out=args.out)
    out_dir = settings.out_dir
    if args.forget is not None:
        corrections = _forget(settings, args.forget)
    else:
        try:
            corrections = read_corrections(out_dir)
        except (CorrectionsError, ForeignEntry) as exc:
            reason = exc.strerror if isinstance(exc, ForeignEntry) else exc
            raise SettingsError(f"{out_dir / CORRECTIONS_NAME} cannot be used: {reason}; the next run moves it "
                                "aside and starts afresh") from None
    if args.json:
        json.dump(corrections.as_dict(), sys.stdout, indent=1, ensure_ascii=True)
        print()
    elif not args.quiet:
        print(f"{plural(len(corrections.photos), 'photo')} corrected in {out_dir / CORRECTIONS_NAME}")
        for line in corrections.lines():
            print(f"  {line}")
    return 0


def _forget(settings: LibrarySettings, photos: list[str]) -> Corrections:
    """Forget the corrections naming `photos` (all with none), under the output lock; the corrections left."""
    if not settings.out_dir.is_dir():
        raise SettingsError(f"no output folder at {settings.out_dir}; run 'photocluster {settings.library}' first")
    with output_lock(settings.out_dir):
        corrections, writable = load_corrections(settings.out_dir)
        if not writable:
            raise SettingsError(f"{settings.out_dir / CORRECTIONS_NAME} is not photocluster's file; left alone")
        rels = [_photo_rel(settings.library, photo) for photo in photos]
        unknown = [rel for rel in rels if not corrections.forget(rel)]
        if unknown:
            raise SettingsError(f"no correction names {', '.join(unknown)}; "
                                f"'photocluster corrections {settings.library}' lists them")
        if not photos:
            corrections = Corrections()
        save_corrections(settings.out_dir, corrections)
    return corrections


def _photo_rel(library: Path, photo: str) -> str:
    """The library path of `photo`: a path to the photo or to a link to it, else taken as a library path."""
    root = os.path.realpath(library)
    if os.path.lexists(photo):
        real = os.path.realpath(photo)
        if real.startswith(root.rstrip("/") + "/"):
            return os.path.relpath(real, root)
    return os.path.normpath(photo)
