"""The real photographs that scripts/build_scene_set.py makes its set from: which Debian packages, which of their
files, and how the files that are not photographs are left out (see build_scene_set.py's docstring for the counts).

Each package has a picker that yields (name, image, scenes) from the unpacked packages: `scenes` says whether the
photo may become a group of shots (a full frame, large enough to crop); the others are only ever unrelated photos.
Drawings, paintings, renders and screenshots are left out by the packages' own folder and file names, by
transparency (for GCompris, whose cut-outs are drawings) or by flat colour (for Tux Paint's stamps), and by short
lists of names checked by eye where no rule separates them.
"""
from __future__ import annotations

import io
import re
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image

Picked = Iterator[tuple[str, Image.Image, bool]]
SCENE_MIN_SIDE = 300  # smaller photos are too small to crop shots from; they stay unrelated


@dataclass(frozen=True)
class Package:
    names: tuple[str, ...]  # Debian packages, downloaded together
    label: str  # a photo's source in the manifest is 'label:name'
    pick: Callable[[Path], Picked]


# --- GCompris -------------------------------------------------------------------------------------------------

GCOMPRIS_MIN_SIDE = 120  # below that: icons
# activity: the folders of its photographs ('' for all). Categorization's monuments are the landmarks that
# explore_monuments shows in other photos, and its alphabets and numbers are toys: left out.
GCOMPRIS_FOLDERS = {"erase": "", "explore_monuments": "", "explore_world_animals": "", "explore_farm_animals": "",
                    "explore_world_music": "", "clickgame": "",
                    "categorization": ("fishes", "renewable", "tools", "others")}


def gcompris(root: Path) -> Picked:
    """The photographs inside GCompris' compiled Qt resource bundles (.rcc). Images with transparency are
    cut-outs and drawings, not photographs: left out."""
    for activity, folders in GCOMPRIS_FOLDERS.items():
        for path, data in rcc_files((root / f"usr/share/gcompris-qt/rcc/{activity}.rcc").read_bytes()):
            if Path(path).suffix.lower() not in (".webp", ".jpg", ".jpeg", ".png"):
                continue
            if folders and Path(path).parent.name not in folders:
                continue
            img = Image.open(io.BytesIO(data))
            img.load()
            if min(img.size) >= GCOMPRIS_MIN_SIDE and not _transparent(img):
                yield f"{activity}-{Path(path).stem}", img, min(img.size) >= SCENE_MIN_SIDE


def rcc_files(data: bytes) -> Iterator[tuple[str, bytes]]:
    """(path, bytes) of each uncompressed file in a Qt resource bundle. No library reads .rcc files (Qt's rcc tool
    only writes them), so its documented layout is read here: a header with the offsets of a tree of fixed-size
    nodes, of the file data (each a 4-byte length, then the bytes) and of the names (UTF-16)."""
    if data[:4] != b"qres":
        raise ValueError("not a Qt resource bundle")
    version, tree, files, names = struct.unpack(">IIII", data[4:20])
    node_size = 14 if version < 2 else 22  # version 2 added a modification time

    def name(offset: int) -> str:
        length = struct.unpack(">H", data[names + offset:names + offset + 2])[0]
        return data[names + offset + 6:names + offset + 6 + 2 * length].decode("utf-16-be")

    def walk(node: int, path: str) -> Iterator[tuple[str, bytes]]:
        at = tree + node * node_size
        name_offset, flags = struct.unpack(">IH", data[at:at + 6])
        here = f"{path}/{name(name_offset)}" if node else ""
        if flags & 2:  # a directory: a child count and the first child's node
            count, first = struct.unpack(">II", data[at + 6:at + 14])
            for child in range(first, first + count):
                yield from walk(child, here)
        elif not flags & 5:  # zlib (1) or zstd (4) compressed: images never are, as they do not compress
            start = files + struct.unpack(">I", data[at + 10:at + 14])[0]
            length = struct.unpack(">I", data[start:start + 4])[0]
            yield here, data[start + 4:start + 4 + length]

    yield from walk(0, "")


def _transparent(img: Image.Image) -> bool:
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        return img.convert("RGBA").getchannel("A").getextrema()[0] < 255
    return img.mode not in ("RGB", "L", "CMYK", "YCbCr", "P")


# --- wallpapers, templates, puzzles and backgrounds ------------------------------------------------------------

LOMIRI_NOT_PHOTOS = ("Painting-Colors", "Fossa")  # a painting and a drawing; the other 17 are photographs
SCRATCH_NOT_PHOTOS = ("party-room", "room1", "room2", "room3", "spotlight-stage", "woods-and-bench", "school2")


def lomiri(root: Path) -> Picked:
    for path in sorted((root / "usr/share/backgrounds").glob("*_by_*.jpg")):
        if path.stem.split("_by_")[0] not in LOMIRI_NOT_PHOTOS:
            yield path.stem, Image.open(path), True


def files_in(folder: str, pattern: str = "*.jpg") -> Callable[[Path], Picked]:
    """A package whose folder holds photographs only."""
    def pick(root: Path) -> Picked:
        for path in sorted((root / folder).glob(pattern)):
            yield path.stem, Image.open(path), True
    return pick


def scratch(root: Path) -> Picked:
    """Scratch's photographed stage backgrounds (its JPEGs, less a few drawings); of names that differ only in a
    trailing number or letter (brick-wall1, brick-wall2) the first, as they may show one place twice."""
    seen = set()
    for path in sorted((root / "usr/share/scratch/Media/Backgrounds").glob("*/*.jpg")):
        if path.stem not in SCRATCH_NOT_PHOTOS and kin(path.stem) not in seen:
            seen.add(kin(path.stem))
            yield path.stem, Image.open(path), True


def kin(stem: str) -> str:
    """A name less its trailing number and one-letter suffix: brick-wall1 and basketball-court1-b are kin."""
    return re.sub(r"\d*([-_][a-z])?$", "", stem)


# --- Tux Paint's stamps: photographed objects cut out ----------------------------------------------------------

STAMP_MIN_SIDE = 100
STAMP_MAX_FLAT = 0.1  # share of neighbouring pixels of one exact colour: drawings 0.3-1, photographs below 0.1
STAMPS_NOT_PHOTOS = ("butterfly", "toilets", "chineseJunk", "dead_end_sign", "button", "bunny", "bluebird",
                     "chick-in-egg", "railroad_crossing", "6_saturn")  # drawings with shading that passes


def tuxpaint_stamps(root: Path) -> Picked:
    """The stamps that are photographs of an object, cut out: on a white ground, as a product shot. Symbols
    (letters, signs, coins), folders named 'cartoon' and mirrored copies are left out, then drawings by their
    flat colour. Stamps are cut-outs, so they only ever stay unrelated photos."""
    stamps = root / "usr/share/tuxpaint/stamps"
    for path in sorted(stamps.rglob("*.png")):
        parts = path.relative_to(stamps).parts
        if parts[0] == "symbols" or "cartoon" in parts or path.stem.endswith("_mirror") \
                or path.stem in STAMPS_NOT_PHOTOS:
            continue
        img = _rgba(path)
        if min(img.size) >= STAMP_MIN_SIDE and flat_share(img) < STAMP_MAX_FLAT:
            yield "-".join(parts[:-1] + (path.stem,)), _on_ground(img, "white"), False  # stems repeat


def flat_share(img: Image.Image) -> float:
    """The share of horizontally neighbouring opaque pixels with exactly the same colour: a drawing's flat fills
    make it high, a photograph's grain low."""
    rgba = np.asarray(img.convert("RGBA"), dtype=np.int16)
    opaque = rgba[..., 3] == 255
    pairs = opaque[:, 1:] & opaque[:, :-1]
    same = (rgba[:, 1:, :3] == rgba[:, :-1, :3]).all(axis=-1)
    return float(same[pairs].mean()) if pairs.any() else 1.0


def _rgba(path: Path) -> Image.Image:
    with warnings.catch_warnings():  # Pillow's advice to convert palette transparency to RGBA: done here
        warnings.simplefilter("ignore", UserWarning)
        return Image.open(path).convert("RGBA")


def _on_ground(img: Image.Image, colour: str) -> Image.Image:
    ground = Image.new("RGBA", img.size, colour)
    ground.alpha_composite(img)
    return ground.convert("RGB")


PACKAGES = (
    Package(("gcompris-qt-data",), "gcompris", gcompris),
    Package(("lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04"), "lomiri", lomiri),
    Package(("tuxpaint-data",), "tuxpaint", files_in("usr/share/tuxpaint/templates")),
    Package(("palapeli-data",), "palapeli", files_in("usr/share/palapeli/collection")),
    Package(("tuxtype-data",), "tuxtype", files_in("usr/share/tuxtype/images", "kcas*.jpg")),
    Package(("scratch",), "scratch", scratch),
    Package(("tuxpaint-stamps-default",), "tuxpaint-stamps", tuxpaint_stamps),
)
DOWNLOAD_SIZE = "about 280 MB"
