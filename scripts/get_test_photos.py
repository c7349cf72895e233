#!/usr/bin/env python3
"""Get the test photos: a small library of real photographs with known groups, made from Debian packages.

    .venv/bin/python scripts/get_test_photos.py [DEST]
    .venv/bin/python scripts/get_test_photos.py --extras [DEST]

prints the library's path. DEST defaults to $PHOTOCLUSTER_DEVSET, else $XDG_CACHE_HOME/photocluster-devset
(~/.cache/photocluster-devset). The first run downloads three Debian packages with `apt-get download` (about
150 MB: plasma-workspace-wallpapers, kphotoalbum, mate-backgrounds) and unpacks them with `dpkg-deb -x`;
later runs find the library already there and download nothing.

--extras gets instead the few single photos the devset lacks (EXTRAS: a kitchen, from Scratch 1.4's stage
backgrounds, about 26 MB once) into their own folder, by default the devset's name plus '-extras'.

The library has one folder per source and manifest.csv, the ground truth, with the columns
    file   the photo's path in the library
    group  the photos that belong together ('' for none)
    kind   'variant' (the same photo at another size or crop) or 'same_scene' (other shots of one subject)
    tags   KPhotoAlbum's people, places and events, 'category=value' joined by ';'

The library is built in a temporary folder beside DEST and renamed to DEST only once it is whole, so an
interrupted run never leaves a library that looks complete.

Exit status: 0 the library is ready; 3 no package source could be reached (no apt-get, no package lists, or a
failed download; the reason is on stderr, and tests skip with it); 1 anything else.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from PIL import Image

PACKAGES = ("plasma-workspace-wallpapers", "kphotoalbum", "mate-backgrounds")
# Photos the devset lacks, for tests of a particular subject, kept in a folder of their own (`--extras`) so that the
# devset stays as the tests built on it expect: name -> (Debian package, the file in it).
EXTRAS = {"kitchen.jpg": ("scratch", "usr/share/scratch/Media/Backgrounds/Indoors/kitchen.jpg")}
EXTRAS_SIZE = "about 26 MB"
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
UNREACHABLE = 3
STALE_STAGE_SECONDS = 24 * 3600

# KPhotoAlbum's index gives a photo's clockwise rotation; Pillow's transposes name the counter-clockwise turn.
CLOCKWISE = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_90}


class Unreachable(Exception):
    """No package source could be reached; the tests that need these photos skip with this reason."""


def default_destination() -> Path:
    explicit = os.environ.get("PHOTOCLUSTER_DEVSET")
    if explicit:
        return Path(explicit).expanduser()
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "photocluster-devset"


def get_test_photos(dest: Path) -> Path:
    """The library at `dest`, built first when it is not there yet."""
    if (dest / "manifest.csv").is_file():
        return dest
    if dest.exists():
        raise SystemExit(f"get_test_photos: {dest} exists but holds no manifest.csv; move it away or name "
                         "another folder (PHOTOCLUSTER_DEVSET)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_stages(dest)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=_stage_prefix(dest)) as stage:
        stage = Path(stage)
        unpacked = stage / "unpacked"
        download_and_unpack(stage / "debs", unpacked)
        library = stage / "library"
        rows = build_library(unpacked, library)
        write_manifest(library / "manifest.csv", rows)
        publish(library, dest, "manifest.csv")
    return dest


def get_extra_photos(dest: Path) -> Path:
    """The folder of EXTRAS at `dest`, downloaded first when one is missing (then cached like the devset)."""
    if all((dest / name).is_file() for name in EXTRAS):
        return dest
    if dest.exists():
        raise SystemExit(f"get_test_photos: {dest} exists but lacks some of {', '.join(EXTRAS)}; move it away")
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_stages(dest)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=_stage_prefix(dest)) as stage:
        unpacked, library = Path(stage) / "unpacked", Path(stage) / "extras"
        packages = tuple(sorted({package for package, _ in EXTRAS.values()}))
        download_and_unpack(Path(stage) / "debs", unpacked, packages, EXTRAS_SIZE)
        library.mkdir()
        for name, (_, member) in EXTRAS.items():
            shutil.copyfile(unpacked / member, library / name)
        publish(library, dest, next(iter(EXTRAS)))
    return dest


def publish(built: Path, dest: Path, done_file: str) -> None:
    """Rename a folder built in a stage to `dest`, whole or not at all. Where another run finished first (its
    `done_file` is there), its folder is as good as this one, which the stage takes away."""
    try:
        built.rename(dest)
    except OSError:
        if not (dest / done_file).is_file():
            raise


def remove_stale_stages(dest: Path) -> None:
    """A run that was killed leaves its stage (~300 MB) behind; one a day old is not still being built."""
    for stage in dest.parent.glob(_stage_prefix(dest) + "*"):
        if time.time() - stage.stat().st_mtime > STALE_STAGE_SECONDS:
            shutil.rmtree(stage, ignore_errors=True)


def _stage_prefix(dest: Path) -> str:
    return f".{dest.name}.partial-"


# --- download ------------------------------------------------------------------------------------------------

def download_and_unpack(debs: Path, root: Path, packages: tuple[str, ...] = PACKAGES,
                        size: str = "about 150 MB") -> None:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise Unreachable("apt-get and dpkg-deb are needed to download the test photos (a Debian-like system)")
    if not _have_package_lists():
        _apt("update", "-qq")
    debs.mkdir()
    print(f"downloading {', '.join(packages)} ({size}, once)", file=sys.stderr)
    _apt("download", "-qq", *packages, cwd=debs)
    root.mkdir()
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)


def _have_package_lists() -> bool:
    lists = Path("/var/lib/apt/lists")
    return lists.is_dir() and any(p.name not in {"lock", "partial", "auxfiles"} for p in lists.iterdir())


def _apt(*args: str, cwd: Path | None = None) -> None:
    done = subprocess.run(["apt-get", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if line.startswith("E:")] or done.stderr.splitlines()
        detail = errors[0] if errors else f"exit status {done.returncode}"
        raise Unreachable(f"`apt-get {args[0]}` failed: {detail}")


# --- the library ---------------------------------------------------------------------------------------------

def build_library(root: Path, library: Path) -> list[dict[str, str]]:
    rows = plasma_wallpapers(root, library) + kphotoalbum_demo(root, library) + mate_nature(root, library)
    return drop_groups_of_one(rows)


def plasma_wallpapers(root: Path, library: Path) -> list[dict[str, str]]:
    """KDE Plasma ships each wallpaper at many sizes and aspect ratios: resized, cropped, re-encoded copies."""
    rows = []
    for images in sorted((root / "usr/share/wallpapers").glob("*/contents/images")):
        name = images.parent.parent.name
        for photo in _photos_in(images):
            rows.append(_copy(photo, library, f"wallpapers/{name}/{photo.name}", f"plasma:{name}", "variant"))
    return rows


def kphotoalbum_demo(root: Path, library: Path) -> list[dict[str, str]]:
    """KPhotoAlbum's demo album: several shots of the same subjects, tagged with people, places and events."""
    demo = root / "usr/share/kphotoalbum/demo"
    rows = []
    for entry in ElementTree.parse(demo / "index.xml").getroot().iter("image"):
        name = entry.get("file")
        if not name.lower().endswith((".jpg", ".jpeg")):
            continue
        # shots of one subject share a label, or else a file name that differs only in a trailing _N
        subject = entry.get("label") or re.sub(r"_\d+$", "", Path(name).stem)
        tags = ";".join(f"{option.get('name')}={value.get('value')}"
                        for option in entry.iter("option") for value in option.iter("value"))
        rel = f"album/{name}"
        angle = int(entry.get("angle", "0")) % 360
        if angle:  # stored unrotated: save the photo as it is meant to be seen
            target = library / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(demo / name) as photo:
                photo.transpose(CLOCKWISE[angle]).save(target, quality=95)
            rows.append(_row(rel, f"kpa:{subject}", "same_scene", tags))
        else:
            rows.append(_copy(demo / name, library, rel, f"kpa:{subject}", "same_scene", tags))
    return rows


def mate_nature(root: Path, library: Path) -> list[dict[str, str]]:
    """MATE's nature backgrounds: unrelated photographs, the distractors."""
    return [_copy(photo, library, f"nature/{photo.name}") for photo in
            _photos_in(root / "usr/share/backgrounds/mate/nature")]


def drop_groups_of_one(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """A photo alone in its group belongs with nothing."""
    sizes: dict[str, int] = {}
    for row in rows:
        sizes[row["group"]] = sizes.get(row["group"], 0) + 1
    return [row if not row["group"] or sizes[row["group"]] > 1 else {**row, "group": "", "kind": ""}
            for row in rows]


def copy_without_duplicates(library: Path, dest: Path) -> list[dict[str, str]]:
    """Copy the test photos at `library` into `dest`, keeping one file (the first by name) of each set of
    byte-identical files, and return their manifest rows. The wallpapers ship one picture under a dozen names,
    whose pairs would swamp any pairwise score with pairs that every cut finds (cosine exactly 1)."""
    rows, seen = [], set()
    with open(library / "manifest.csv", newline="", encoding="utf-8") as manifest:
        for row in sorted(csv.DictReader(manifest), key=lambda r: r["file"]):
            digest = hashlib.sha256((library / row["file"]).read_bytes()).hexdigest()
            if digest not in seen:
                seen.add(digest)
                rows.append(_copy(library / row["file"], dest, row["file"], row["group"], row["kind"], row["tags"]))
    return rows


def write_manifest(path: Path, rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=["file", "group", "kind", "tags"])
        writer.writeheader()
        writer.writerows(rows)


def _photos_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)


def _copy(photo: Path, library: Path, rel: str, group: str = "", kind: str = "", tags: str = "") -> dict[str, str]:
    target = library / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(photo, target)
    return _row(rel, group, kind, tags)


def _row(rel: str, group: str, kind: str, tags: str) -> dict[str, str]:
    return {"file": rel, "group": group, "kind": kind, "tags": tags}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", nargs="?", type=Path, default=None,
                        help="the library folder (default: $PHOTOCLUSTER_DEVSET or ~/.cache/photocluster-devset)")
    parser.add_argument("--extras", action="store_true",
                        help="get the photos the devset lacks (EXTRAS) instead, into DEST (default: the devset's "
                        "folder with '-extras' added to its name)")
    args = parser.parse_args(argv)
    try:
        if args.extras:
            devset = default_destination()
            print(get_extra_photos(args.dest or devset.with_name(devset.name + "-extras")))
        else:
            print(get_test_photos(args.dest or default_destination()))
    except Unreachable as reason:
        print(f"get_test_photos: {reason}", file=sys.stderr)
        return UNREACHABLE
    return 0


if __name__ == "__main__":
    sys.exit(main())
