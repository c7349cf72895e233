"""Thumbnails: a 256-pixel JPEG of each photo under <out>/gallery/thumbs/, made from the decode that fingerprinting
does anyway (images.Fit), with the photo's quality measures written into it, so the gallery never decodes an
original again.

    <out>/gallery/                     our folder (holds the `.photocluster-folder` mark)
    <out>/gallery/thumbs/<32 hex>.jpg  one photo's thumbnail; its name is a digest of the photo's key (rel, size,
                                       mtime_ns), like the fingerprints' and the scene store's: an edited photo
                                       gets a new thumbnail, and the old one is removed as stale

Each thumbnail carries its photo's Quality in its JPEG comment, as JSON: the photo's own size, the variance of the
Laplacian of its grey detail image (sharpness; higher is sharper) and the share of its pixels clipped to black or
white. Reading it back reads the JPEG header only.

A thumbnail is written atomically (a temporary file beside it, fsync, rename; the folder is fsynced once per batch)
and only into our marked folders, through directory descriptors that never follow a symlink (fsutil).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .fsutil import FILE, check_replaceable, open_dir, our_folder, read_regular, remove_made
from .images import Fit, Fitted
from .library import PhotoFile

log = logging.getLogger(__name__)

GALLERY, THUMBS = "gallery", "thumbs"
THUMB_BOX = Fit((256, 256))
JPEG_QUALITY = 82
QUALITY_FORMAT = 1  # in each thumbnail's comment: a thumbnail of another format is made again
# Grey levels counted as clipped: within 2 of black or of white (JPEG noise keeps a blown sky off 255 itself).
CLIPPED_LOW, CLIPPED_HIGH = 2, 253
THUMB_NAME = re.compile(r"[0-9a-f]{32}\.jpg")
_THUMB_TEMPORARY = re.compile(r"\.[0-9a-f]{32}\.jpg\.[0-9a-f]+\.tmp")
_HEADER_BYTES = 64 * 1024  # a thumbnail's JPEG header (with its comment) lies in its first bytes


@dataclass(frozen=True)
class Quality:
    """What the gallery's choice of a best photo needs to know of one photo."""

    width: int  # the photo's own pixels, upright
    height: int
    sharpness: float  # variance of the Laplacian of the grey detail image (images.DETAIL_BOX)
    clipped: float  # share of the detail image's pixels within 2 grey levels of black or white

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def as_list(self) -> list:
        return [self.width, self.height, round(self.sharpness, 2), round(self.clipped, 5)]

    @classmethod
    def from_list(cls, values: object) -> Quality:
        """ValueError unless `values` is what as_list gives."""
        if not isinstance(values, list) or len(values) != 4:
            raise ValueError("not a quality record")
        width, height, sharpness, clipped = values
        if not all(type(v) is int and v > 0 for v in (width, height)) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in (sharpness, clipped)):
            raise ValueError("not a quality record")
        return cls(width, height, float(sharpness), float(clipped))


def thumb_name(rel: str, size: int, mtime_ns: int) -> str:
    """The file name of the thumbnail of this version of the photo `rel`."""
    digest = hashlib.sha256(b"thumb\0%b\0%d\0%d" % (os.fsencode(rel), size, mtime_ns)).hexdigest()
    return digest[:32] + ".jpg"


def measure(fitted: Fitted) -> Quality:
    import cv2  # imported here: a run with nothing new to decode never needs OpenCV

    grey = fitted.detail
    sharpness = float(cv2.Laplacian(grey, cv2.CV_64F).var()) if grey.size else 0.0
    clipped = float(np.count_nonzero((grey <= CLIPPED_LOW) | (grey >= CLIPPED_HIGH)) / max(1, grey.size))
    return Quality(fitted.width, fitted.height, sharpness, clipped)


def encode(fitted: Fitted) -> bytes:
    """The thumbnail as JPEG bytes, with its photo's Quality in the comment."""
    comment = json.dumps({"format": QUALITY_FORMAT, "quality": measure(fitted).as_list()})
    out = io.BytesIO()
    Image.fromarray(fitted.pixels).save(out, "JPEG", quality=JPEG_QUALITY, comment=comment.encode("ascii"))
    return out.getvalue()


def read_quality(name: str, dir_fd: int) -> Quality | None:
    """The Quality in our thumbnail `name`; None when it is missing, torn, of another format or not ours."""
    try:
        raw = read_regular(name, dir_fd, limit=_HEADER_BYTES)
        if not raw:
            return None
        with Image.open(io.BytesIO(raw), formats=("JPEG",)) as img:
            data = json.loads(img.info.get("comment", b"").decode("ascii"))
        if data.get("format") != QUALITY_FORMAT:
            return None
        return Quality.from_list(data.get("quality"))
    except (OSError, ValueError, AttributeError, SyntaxError):  # ForeignEntry is an OSError; PIL raises both others
        return None


@contextlib.contextmanager
def thumbs_folder(out_dir: str | os.PathLike, create: bool = True) -> Iterator[int]:
    """The descriptor of <out>/gallery/thumbs/, ours (ForeignEntry otherwise)."""
    with open_dir(out_dir, follow=True) as out_fd, our_folder(out_fd, GALLERY, create) as gallery_fd, \
            our_folder(gallery_fd, THUMBS, create) as fd:
        yield fd


class ThumbWriter:
    """Writes thumbnails into <out>/gallery/thumbs/ from the decodes of the fingerprint step (fingerprint.ThumbMaker).

    `finish` runs in the decode threads; a thumbnail that cannot be written is one warning, never the photo's
    failure (its fingerprint still counts). `made` counts the thumbnails written.
    """

    box = THUMB_BOX

    def __init__(self, fd: int, shown: str):
        self.fd, self.shown = fd, shown
        self.made = 0
        self._lock = threading.Lock()
        self._warned = False

    def finish(self, photo: PhotoFile, pixels: list) -> list:
        fitted = pixels[-1]
        try:
            self.write(thumb_name(photo.rel, photo.size, photo.mtime_ns), encode(fitted))
        except Exception as exc:  # noqa: BLE001 - a thumbnail is never worth a photo's fingerprint
            with self._lock:
                if not self._warned:
                    self._warned = True
                    log.warning("gallery: could not write thumbnails in %s: %s", self.shown,
                                getattr(exc, "strerror", None) or exc)
        return pixels[:-1]

    def write(self, name: str, data: bytes) -> None:
        """Write our thumbnail `name` atomically: never through a link, never over anything but a regular file."""
        tmp = f".{name}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=self.fd)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            check_replaceable(name, self.fd, os.path.join(self.shown, name))
            os.replace(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=self.fd)
            raise
        with self._lock:
            self.made += 1


@contextlib.contextmanager
def thumb_writer(out_dir: str | os.PathLike | None) -> Iterator[ThumbWriter | None]:
    """A ThumbWriter for <out_dir>/gallery/thumbs/, or None (no gallery, or its folder is not ours: one warning).
    The folder is fsynced once at the end, for the renames."""
    if out_dir is None:
        yield None
        return
    shown = os.path.join(out_dir, GALLERY, THUMBS)
    with contextlib.ExitStack() as stack:
        try:
            fd = stack.enter_context(thumbs_folder(out_dir))
        except OSError as exc:
            log.warning("gallery: no thumbnails in %s: %s", shown, exc.strerror or exc)
            fd = None
        yield None if fd is None else ThumbWriter(fd, shown)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.fsync(fd)


def remove_stale(fd: int, keep: Iterable[str], shown: str) -> int:
    """Remove our thumbnails (regular files by our names) not named in `keep`, and temporaries of killed writes.
    Returns how many thumbnails were removed."""
    keep = set(keep)
    with os.scandir(fd) as it:
        names = [e.name for e in it]
    stale = [n for n in names if THUMB_NAME.fullmatch(n) and n not in keep]
    remove_made(fd, {n: FILE for n in stale + [n for n in names if _THUMB_TEMPORARY.fullmatch(n)]}, shown)
    return len(stale)


def present(fd: int) -> set[str]:
    """The names of the thumbnails in the folder (a name of ours; the kind is checked when one is read)."""
    with os.scandir(fd) as it:
        return {e.name for e in it if THUMB_NAME.fullmatch(e.name)}


def thumbs_dir(out_dir: str | os.PathLike) -> Path:
    return Path(out_dir) / GALLERY / THUMBS
