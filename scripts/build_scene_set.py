#!/usr/bin/env python3
"""Build the same-scene measurement set of issue 12: groups of 2-4 "shots" of one scene, made from real photos,
among unrelated real photos, every one with EXIF capture times and cameras.

    .venv/bin/python scripts/build_scene_set.py DEST [--groups 150] [--distractors N] [--seed 12]

The real photographs come from Debian packages; scene_sources.py says which files and how drawings, paintings,
renders and screenshots are left out. Photos after near-duplicates are dropped ("scenes": may become groups):
    package (download)               photos  scenes
    gcompris-qt-data (44.2 MB)          233     125  animals, monuments, tools, fish, wind and solar power,
                                                     music, in the Qt resource bundles of the activities erase,
                                                     explore_* (4), clickgame and categorization (112, most of
                                                     them 250 px: too small for shots)
    lomiri-wallpapers-16.04 and         17      17  Ubuntu's wallpaper contests
      -20.04 (15.8 + 11.4 MB)
    tuxpaint-data (7.9 MB)              19      19  Tux Paint's templates
    palapeli-data (2.1 MB)               5       5  the jigsaw game's puzzles
    tuxtype-data (9.9 MB)               12      12  landscapes, the typing game's backgrounds
    scratch (25.7 MB)                   50      50  places, Scratch 1.4's photographed stage backgrounds
    tuxpaint-stamps-default (160.9 MB) 196       0  animals, food, plants, objects: Tux Paint's stamps that are
                                                     photographs, cut out, put on white as product shots
and from the devset of get_test_photos.py (already downloaded for the tests, so no download here): the 12
photos of mate-backgrounds' nature folder and one photo per subject of kphotoalbum's demo album (15), all scenes.
Together 559 distinct photographs, 255 of which may become groups: with 150 groups and 6 donors, 403 unrelated
photos. The first run downloads about 280 MB and keeps the chosen originals in a cache (PHOTOCLUSTER_SCENE_SOURCES,
else ~/.cache/photocluster-scene-sources), replacing an older choice's cache; later runs download nothing.
Stellarium's 80 photos of the Messier objects were tried and left out: star fields on black, which every global
fingerprint sees as one subject (at --sim 0.75 they formed clusters of up to 13), so counting them as unrelated
would have misstated precision.

A few photos (PASTE_DONORS) only lend patches: the "objects" pasted into shots, so no photo in the set shares
content with a shot except through its own group. Donors and --groups groups are drawn from the photos that may
become scenes; all the others (at most --distractors, by default all) stay single, unrelated.

Each group's shots are made as a second shot really differs: a crop of the scene overlapping the first shot's
by 50-80 % (of the smaller), framed and scaled differently, seen through a slight perspective change (a QUAD
mapping with each corner moved), with an exposure and white-balance shift, and in about half of them an object
pasted in. They get EXIF DateTimeOriginal, SubSecTimeOriginal, OffsetTimeOriginal (for some cameras) and
Make/Model, a few seconds apart. Every COPY_EVERY-th group also gets a plain copy of its first shot (resized and
re-encoded, same EXIF). Some unrelated photos get a group's camera and a time seconds from its shots (decoys
for the time cue), some no EXIF at all.

DEST/manifest.csv, one row a photo:
    file           path in DEST
    group          the group ('' for unrelated photos)
    kind           'same_scene' (a shot), 'copy' (a plain copy of copy_of) or '' (unrelated)
    copy_of        for a copy, the file it copies
    source         'package:name' of the real photo it was made from
    capture_time   the DateTimeOriginal written, ISO 8601 with the offset when one was written; '' for none
    camera         'Make/Model' written; '' for none
    decoy_for      for an unrelated photo given a group's camera and a close time, that group

DEST is built in a temporary folder beside it and renamed at the end. Exit status: 0 built; 3 no package source
could be reached; 2 DEST exists; 1 anything else.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import get_test_photos as devset  # noqa: E402 - the devset's download helpers and library, reused
import scene_sources  # noqa: E402

SOURCE_LONG_SIDE = 1600  # sources are kept at most this large: enough for 640 px features, light to transform
SOURCES_LIST = "sources-3.csv"  # the cache's list of chosen photos: a new name when the choice changes
PASTE_DONORS = 6
COPY_EVERY = 5
CAMERAS = [("Canon", "Canon EOS R6", "+02:00"), ("NIKON CORPORATION", "NIKON D750", None),
           ("Apple", "iPhone 13", "-05:00"), ("SONY", "ILCE-7M3", "+01:00"), ("FUJIFILM", "X-T3", None),
           ("Google", "Pixel 7", "+09:00")]
START = datetime(2023, 3, 1, 9, 0, 0)
UNREACHABLE, EXISTS = devset.UNREACHABLE, 2


def default_sources() -> Path:
    explicit = os.environ.get("PHOTOCLUSTER_SCENE_SOURCES")
    if explicit:
        return Path(explicit).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "photocluster-scene-sources"


# --- the real photos -----------------------------------------------------------------------------------------

def get_sources(cache: Path) -> Path:
    """The cache of chosen source photos, one folder per package, downloaded and unpacked the first time. A cache
    of an older choice (another SOURCES_LIST) is replaced whole."""
    if (cache / SOURCES_LIST).is_file():
        return cache
    older = [p.name for p in cache.glob("sources*.csv")]
    if cache.exists() and not older:
        raise SystemExit(f"build_scene_set: {cache} exists but holds no {SOURCES_LIST}; move it away or name "
                         "another folder (PHOTOCLUSTER_SCENE_SOURCES)")
    cache.parent.mkdir(parents=True, exist_ok=True)
    devset.remove_stale_stages(cache)
    with tempfile.TemporaryDirectory(dir=cache.parent, prefix=devset._stage_prefix(cache)) as stage:
        stage = Path(stage)
        packages = tuple(name for package in scene_sources.PACKAGES for name in package.names)
        devset.download_and_unpack(stage / "debs", stage / "unpacked", packages, scene_sources.DOWNLOAD_SIZE)
        chosen = stage / "chosen"
        rows = pick_photos(stage / "unpacked", chosen)
        with open(chosen / SOURCES_LIST, "w", newline="", encoding="utf-8") as out:
            csv.writer(out).writerows([["file", "scenes"]] + rows)
        if older:
            print(f"build_scene_set: replacing the older sources in {cache}", file=sys.stderr)
            cache.rename(stage / "older")  # the stage takes it away
        devset.publish(chosen, cache, SOURCES_LIST)
    return cache


def pick_photos(root: Path, chosen: Path) -> list[tuple[str, int]]:
    """Save the packages' photographs under `chosen`, shrunk to SOURCE_LONG_SIDE; their paths there, each with
    1 where it may become a group of shots."""
    rows = []
    for package in scene_sources.PACKAGES:
        for name, img, scenes in package.pick(root):
            target = chosen / package.label / f"{name}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            shrunk(img.convert("RGB"), SOURCE_LONG_SIDE).save(target, quality=92)
            rows.append((f"{package.label}/{name}.jpg", int(scenes)))
    return rows


def source_photos(sources: Path, devset_library: Path) -> list[tuple[str, Path, bool]]:
    """Every distinct source photo as ('label:name', path, whether it may become a group), in a fixed order,
    near-duplicates dropped."""
    with open(sources / SOURCES_LIST, newline="", encoding="utf-8") as rows:
        found = [(f"{row['file'].split('/')[0]}:{Path(row['file']).stem}", sources / row["file"],
                  row["scenes"] == "1") for row in csv.DictReader(rows)]
    with open(devset_library / "manifest.csv", newline="", encoding="utf-8") as rows:
        subjects_seen = set()
        for row in csv.DictReader(rows):
            top = row["file"].split("/")[0]
            if top == "nature":
                found.append((f"mate-backgrounds:{Path(row['file']).stem}", devset_library / row["file"], True))
            elif top == "album" and (row["group"] or row["file"]) not in subjects_seen:
                subjects_seen.add(row["group"] or row["file"])  # one shot per subject: the rest is one scene
                found.append((f"kphotoalbum:{Path(row['file']).stem}", devset_library / row["file"], True))
    return drop_near_duplicates(found)


def drop_near_duplicates(photos: list[tuple[str, Path, bool]]) -> list[tuple[str, Path, bool]]:
    """Keep the first of photos whose difference hashes (dHash, 64 bits) are within 6 bits: the packages ship a
    few photos twice (a thumbnail and the full one). Hand-written: eight lines, not worth a dependency."""
    kept, hashes = [], []
    for source, path, scenes in photos:
        with Image.open(path) as img:
            grey = np.asarray(img.convert("L").resize((9, 8), Image.Resampling.BOX), dtype=np.int16)
        bits = (grey[:, 1:] > grey[:, :-1]).ravel()
        if all(np.count_nonzero(bits != other) > 6 for other in hashes):
            kept.append((source, path, scenes))
            hashes.append(bits)
    return kept


# --- shots ---------------------------------------------------------------------------------------------------

@dataclass
class Photo:
    file: str
    image: Image.Image | None
    source: str
    group: str = ""
    kind: str = ""
    copy_of: str = ""
    time: datetime | None = None
    camera: tuple[str, str, str | None] | None = None
    decoy_for: str = ""
    jpeg: bytes | None = None  # for a copy: the bytes as they are


def shrunk(img: Image.Image, long_side: int) -> Image.Image:
    scale = long_side / max(img.size)
    if scale >= 1:
        return img
    return img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)


def crop_boxes(rng: np.random.Generator, size: tuple[int, int], count: int) -> list[tuple[float, ...]]:
    """`count` crops of a scene of `size` (x0, y0, x1, y1), each overlapping the first by 50-80 % of the smaller
    one's area, at different scales and aspect ratios (drawn until they do: a few tries on average)."""
    boxes = [_crop_box(rng, size)]
    while len(boxes) < count:
        box = _crop_box(rng, size)
        if 0.5 <= overlap(boxes[0], box) <= 0.8:
            boxes.append(box)
    return boxes


def _crop_box(rng: np.random.Generator, size: tuple[int, int]) -> tuple[float, ...]:
    w, h = size
    area = rng.uniform(0.3, 0.65) * w * h
    aspect = (w / h) * rng.uniform(0.8, 1.25)
    bw, bh = min(w, (area * aspect) ** 0.5), min(h, (area / aspect) ** 0.5)
    x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
    return (x0, y0, x0 + bw, y0 + bh)


def overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """The intersection of two boxes as a share of the smaller one's area."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / smaller


def make_shot(rng: np.random.Generator, scene: Image.Image, box: tuple[float, ...],
              donor: Image.Image | None) -> Image.Image:
    """The part `box` of `scene` as another shot: a slight perspective change, its own size, exposure and white
    balance, and `donor`'s patch pasted in as an object when one is given."""
    x0, y0, x1, y1 = box
    jitter = 0.04 * min(x1 - x0, y1 - y0)
    corners = [(x0, y0), (x0, y1), (x1, y1), (x1, y0)]  # QUAD's order: upper left, lower left, lower right, upper right
    quad = [coordinate + rng.uniform(-jitter, jitter) for corner in corners for coordinate in corner]
    long_side = int(rng.integers(640, 1400))
    scale = long_side / max(x1 - x0, y1 - y0)
    size = (round((x1 - x0) * scale), round((y1 - y0) * scale))
    shot = scene.transform(size, Image.Transform.QUAD, quad, Image.Resampling.BICUBIC)
    if donor is not None:
        shot = paste_object(rng, shot, donor)
    gains = rng.uniform(0.72, 1.3) * rng.uniform(0.9, 1.1, size=3)  # exposure, then white balance
    pixels = np.asarray(shot, dtype=np.float32) * gains
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def paste_object(rng: np.random.Generator, shot: Image.Image, donor: Image.Image) -> Image.Image:
    """Paste an elliptical patch of `donor`, 10-20 % of the shot's width, at a random place, edges softened."""
    pw = int(shot.width * rng.uniform(0.1, 0.2))
    ph = int(pw * rng.uniform(0.7, 1.4))
    dx, dy = int(rng.integers(0, donor.width - pw)), int(rng.integers(0, donor.height - ph))
    patch = donor.crop((dx, dy, dx + pw, dy + ph))
    yy, xx = np.mgrid[0:ph, 0:pw]
    inside = ((xx - pw / 2) / (pw / 2)) ** 2 + ((yy - ph / 2) / (ph / 2)) ** 2
    mask = Image.fromarray((np.clip((1 - inside) * 4, 0, 1) * 255).astype(np.uint8))
    out = shot.copy()
    out.paste(patch, (int(rng.integers(0, shot.width - pw)), int(rng.integers(0, shot.height - ph))), mask)
    return out


# --- the set -------------------------------------------------------------------------------------------------

def plan(photos: list[tuple[str, Path, bool]], groups: int, distractors: int | None, seed: int) -> list[Photo]:
    """Donors and groups from the photos that may become scenes, drawn at random; all the rest unrelated."""
    rng = np.random.default_rng(seed)
    order = [photos[i] for i in rng.permutation(len(photos))]
    scenes = [photo for photo in order if photo[2]]
    if len(scenes) < PASTE_DONORS + groups:
        raise SystemExit(f"build_scene_set: only {len(scenes) - PASTE_DONORS} source photos for {groups} groups")
    donors = [_open(path) for _, path, _ in scenes[:PASTE_DONORS]]
    grouped = scenes[PASTE_DONORS:PASTE_DONORS + groups]
    taken = set(scenes[:PASTE_DONORS + groups])
    single = [photo for photo in order if photo not in taken]
    single = single if distractors is None else single[:distractors]
    made: list[Photo] = []
    clock = START
    for index, (source, path, _) in enumerate(grouped):
        clock += timedelta(hours=float(rng.uniform(1, 30)))  # groups far apart in time
        made += make_group(rng, f"g{index + 1:03d}", source, _open(path), donors, clock)
    shots = [p for p in made if p.kind == "same_scene"]
    for index, (source, path, _) in enumerate(single):
        made.append(make_unrelated(rng, f"unrelated/u{index + 1:03d}.jpg", source, _open(path), shots))
    return made


def make_group(rng, group: str, source: str, scene: Image.Image, donors: list[Image.Image],
               start: datetime) -> list[Photo]:
    count = int(rng.integers(2, 5))
    camera = CAMERAS[int(rng.integers(len(CAMERAS)))]
    shots, when = [], start
    for n, box in enumerate(crop_boxes(rng, scene.size, count)):
        donor = donors[int(rng.integers(len(donors)))] if rng.random() < 0.5 else None
        when += timedelta(seconds=float(rng.uniform(1, 8)))
        shots.append(Photo(f"scenes/{group}/shot{n + 1}.jpg", make_shot(rng, scene, box, donor), source, group,
                           "same_scene", time=_stamp(when), camera=camera))
    if int(group[1:]) % COPY_EVERY == 0:
        first = shots[0]
        copy = shrunk(first.image, int(max(first.image.size) * rng.uniform(0.5, 0.8)))
        shots.append(Photo(f"scenes/{group}/copy.jpg", copy, source, group, "copy", first.file, first.time,
                           camera))
    return shots


def make_unrelated(rng, file: str, source: str, img: Image.Image, shots: list[Photo]) -> Photo:
    photo = Photo(file, shrunk(img, int(rng.integers(900, 1600))), source)
    draw = rng.random()
    if draw < 0.25 and shots:  # a decoy: a group's camera, seconds from its shots
        near = shots[int(rng.integers(len(shots)))]
        photo.camera, photo.decoy_for = near.camera, near.group
        photo.time = _stamp(near.time + timedelta(seconds=float(rng.choice([-1, 1]) * rng.uniform(2, 10))))
    elif draw < 0.9:
        photo.camera = CAMERAS[int(rng.integers(len(CAMERAS)))]
        photo.time = _stamp(START + timedelta(days=float(rng.uniform(0, 400))))
    return photo  # the rest: no EXIF at all, as many photos in a library


def _stamp(when: datetime) -> datetime:
    return when.replace(microsecond=when.microsecond // 1000 * 1000)  # EXIF sub-seconds: milliseconds here


def _open(path: Path) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGB")


def exif_of(photo: Photo) -> bytes:
    exif = Image.Exif()
    if photo.camera:
        exif[0x010F], exif[0x0110] = photo.camera[0], photo.camera[1]
    if photo.time:
        ifd = exif.get_ifd(0x8769)
        ifd[0x9003] = photo.time.strftime("%Y:%m:%d %H:%M:%S")
        ifd[0x9291] = f"{photo.time.microsecond // 1000:03d}"
        if photo.camera and photo.camera[2]:
            ifd[0x9011] = photo.camera[2]
    return exif.tobytes()


def capture_text(photo: Photo) -> str:
    if not photo.time:
        return ""
    offset = photo.camera[2] if photo.camera else None
    if offset:
        sign, hours, minutes = offset[0], int(offset[1:3]), int(offset[4:6])
        delta = timedelta(hours=hours, minutes=minutes)
        return photo.time.replace(tzinfo=timezone(-delta if sign == "-" else delta)).isoformat()
    return photo.time.isoformat()


def write_set(made: list[Photo], folder: Path) -> None:
    rows = []
    for photo in made:
        target = folder / photo.file
        target.parent.mkdir(parents=True, exist_ok=True)
        quality = 75 if photo.kind == "copy" else 90
        photo.image.save(target, quality=quality, exif=exif_of(photo))
        rows.append({"file": photo.file, "group": photo.group, "kind": photo.kind, "copy_of": photo.copy_of,
                     "source": photo.source, "capture_time": capture_text(photo),
                     "camera": "/".join(photo.camera[:2]) if photo.camera else "", "decoy_for": photo.decoy_for})
    with open(folder / "manifest.csv", "w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def build(dest: Path, groups: int, distractors: int | None, seed: int) -> None:
    photos = source_photos(get_sources(default_sources()), devset.get_test_photos(devset.default_destination()))
    made = plan(photos, groups, distractors, seed)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}.partial-") as stage:
        write_set(made, Path(stage) / "set")
        (Path(stage) / "set").rename(dest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", type=Path, help="the folder to build (must not exist)")
    parser.add_argument("--groups", type=int, default=150, help="source photos made into groups (default 150)")
    parser.add_argument("--distractors", type=int, default=None, help="unrelated photos (default: all left)")
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args(argv)
    if args.dest.exists():
        print(f"build_scene_set: {args.dest} exists; name a new folder", file=sys.stderr)
        return EXISTS
    try:
        build(args.dest, args.groups, args.distractors, args.seed)
    except devset.Unreachable as reason:
        print(f"build_scene_set: {reason}", file=sys.stderr)
        return UNREACHABLE
    print(args.dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
