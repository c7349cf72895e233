"""The search commands' command lines: `photocluster similar PHOTO` and `photocluster objects PHOTO` (similar.py
does the searching).

Output that a shell can use: absolute paths, best first. Plain text is one `SCORE<TAB>PATH` line per photo (with
`<TAB>LABEL SCORE BOX` after an object match), `-0` the paths alone, each ended by a NUL (for xargs -0), and
`--json` everything, structured. Paths are written as the file system's bytes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .cli_options import _Parser
from .labels import Detection
from .logs import setup_logging
from .settings import LibrarySettings


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"-k must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"-k must be at least 1, got {value}")
    return value


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("photo", type=Path, help="the example photo: in the library, or anywhere else")
    p.add_argument("--library", type=Path, default=None, metavar="DIR",
                   help="the library to search (default: the folder above PHOTO that holds photocluster/)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="the library's output folder, if not DIR/photocluster")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.add_argument("-v", "--verbose", action="store_true", help="say more")
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors")


def build_similar_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="photocluster similar",
                description="The photos of a library most similar to PHOTO, from the fingerprint cache, with their "
                "cosine similarity. Printed best first as 'SCORE<TAB>PATH' lines (absolute paths).")
    _common(p)
    p.add_argument("-k", type=_positive, default=10, help="how many photos (default: %(default)s)")
    p.add_argument("-0", "--null", action="store_true", help="print only the paths, each ended by a NUL character")
    p.add_argument("--object", default=None, metavar="N|NAME",
                   help="search by one of PHOTO's objects: its number in 'photocluster objects PHOTO', or a name "
                   "(dog) for its best-scoring one; needs the object index (a run with --index-objects)")
    p.add_argument("--any-label", action="store_true",
                   help="with --object: compare with every indexed object, not only those of the same kind")
    return p


def build_objects_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="photocluster objects",
                description="The objects detected in PHOTO, numbered for 'photocluster similar PHOTO --object N'.")
    _common(p)
    return p


def _settings(args: argparse.Namespace) -> LibrarySettings:
    from .similar import find_library

    settings = LibrarySettings(library=find_library(args.photo, args.library), out=args.out)
    settings.validate_paths()
    return settings


def cmd_similar(argv: list[str]) -> int:
    from .similar import similar_objects, similar_photos

    args = build_similar_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet or args.json)
    settings = _settings(args)
    chosen = None
    if args.object is None:
        query, hits = similar_photos(settings, args.photo, args.k)
    else:
        query, chosen, hits = similar_objects(settings, args.photo, args.object.strip(), args.k, args.any_label)
    if args.json:
        _print_json({"query": query.path, "library": os.path.abspath(settings.library),
                     "object": _object_dict(chosen) if chosen else None,
                     "results": [{"path": h.path, "score": round(h.score, 6),
                                  **({"object": _object_dict(h.object)} if h.object else {})} for h in hits]})
        return 0
    if chosen and not hits and not args.quiet:
        print(f"no other photo in the object index has a {chosen[1].label}"
              f"{'' if args.any_label else ' (--any-label compares with every kind)'}", file=sys.stderr)
    out = sys.stdout.buffer
    for hit in hits:
        if args.null:
            out.write(os.fsencode(hit.path) + b"\0")
            continue
        match = f"\t{_describe(hit.object)}" if hit.object else ""
        out.write(f"{hit.score:.4f}\t".encode() + os.fsencode(hit.path) + match.encode() + b"\n")
    out.flush()
    return 0


def cmd_objects(argv: list[str]) -> int:
    from .similar import photo_objects

    args = build_objects_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet or args.json)
    settings = _settings(args)
    query, objects, indexed = photo_objects(settings, args.photo)
    if args.json:
        _print_json({"photo": query.path, "objects": [{**_object_dict(o), "indexed": o[0] in indexed}
                                                      for o in objects]})
        return 0
    if not objects:
        print(f"no objects detected in {os.fsencode(query.path).decode('utf-8', 'backslashreplace')}")
        return 0
    for number, detection in objects:
        mark = "  (indexed)" if number in indexed else ""
        print(f"{_describe((number, detection))}{mark}")
    return 0


def _describe(obj: tuple[int, Detection]) -> str:
    number, d = obj
    box = ",".join(f"{v:.3f}" for v in d.box)
    return f"{number}  {d.label} {d.score:.2f}  box {box}"


def _object_dict(obj: tuple[int, Detection]) -> dict:
    number, d = obj
    return {"number": number, "label": d.label, "score": round(d.score, 4), "box": [round(v, 4) for v in d.box]}


def _print_json(data: dict) -> None:
    json.dump(data, sys.stdout, indent=1, ensure_ascii=True)
    print()
