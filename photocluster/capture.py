"""Capture: when a photo was taken and with which camera, from its EXIF, for the time cue of scene grouping.

Shots a few seconds apart from one camera are usually one scene. The time is EXIF DateTimeOriginal, refined by
SubSecTimeOriginal and placed by OffsetTimeOriginal: a timezone-aware datetime when the photo states its UTC
offset, else a naive one (the camera's own clock). Nothing else stands in for it: not DateTime (the last edit),
not the file's mtime (a copy's or a sync's time), so a photo without a capture time has none.

The photo is opened as for decoding (library.open_photo: never through a symlink, never a FIFO), only its header
is read, and EXIF in the wild is endlessly malformed: a value that cannot be read is None, never an exception.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from PIL import Image

from .images import PHOTO_FORMATS  # importing images also teaches Pillow HEIF, what phones shoot bursts in
from .library import open_photo

EXIF_IFD = 0x8769
MAKE = 0x010F
MODEL = 0x0110
DATETIME_ORIGINAL = 0x9003
OFFSET_TIME_ORIGINAL = 0x9011
SUBSEC_TIME_ORIGINAL = 0x9291
# A make or model is a short name; anything longer is garbage, not a camera to match photos by.
MAX_NAME_LENGTH = 64

_DATETIME = re.compile(r"([0-9]{4}):([0-9]{2}):([0-9]{2})[ T]([0-9]{2}):([0-9]{2}):([0-9]{2})")
_OFFSET = re.compile(r"([+-])([0-9]{2}):([0-9]{2})")


@dataclass(frozen=True, slots=True)
class Capture:
    """What a photo's EXIF says of its taking; each field is None where the photo does not say it readably."""

    time: datetime | None
    make: str | None
    model: str | None

    @property
    def camera(self) -> tuple[str, str] | None:
        """(make, model), '' for the one that is missing; None when the photo names no camera at all."""
        if self.make is None and self.model is None:
            return None
        return (self.make or "", self.model or "")


NO_CAPTURE = Capture(None, None, None)


def read_capture(root: str | Path, rel: str) -> Capture:
    """The capture time and camera of the photo `rel` in the library at `root`; NO_CAPTURE when it cannot be read."""
    try:
        with open_photo(root, rel) as fh, Image.open(fh, formats=PHOTO_FORMATS) as img:
            # Image.getexif, not the format's own: PngImageFile.getexif decodes every pixel to look for an eXIf
            # chunk after the image data, which would cost a full decode to find a time.
            exif = Image.Image.getexif(img)
            make, model, exif_ifd = exif.get(MAKE), exif.get(MODEL), exif.get_ifd(EXIF_IFD)
    except Exception:  # noqa: BLE001 - unreadable, unsafe or not a photo: it tells no time
        return NO_CAPTURE
    return Capture(capture_time(exif_ifd.get(DATETIME_ORIGINAL), exif_ifd.get(SUBSEC_TIME_ORIGINAL),
                                exif_ifd.get(OFFSET_TIME_ORIGINAL)),
                   _name(make), _name(model))


def capture_time(original: object, subsec: object = None, offset: object = None) -> datetime | None:
    """The datetime that EXIF's DateTimeOriginal, SubSecTimeOriginal and OffsetTimeOriginal values describe.

    A bad DateTimeOriginal gives None; a bad sub-second or offset is left out and the time kept.
    """
    text = _text(original)
    found = _DATETIME.fullmatch(text) if text else None
    if not found:
        return None
    try:
        taken = datetime(*(int(part) for part in found.groups()))
    except ValueError:  # 0000:00:00 00:00:00, a 13th month, a 61st second
        return None
    return taken.replace(microsecond=_microseconds(subsec), tzinfo=_timezone(offset))


def _microseconds(subsec: object) -> int:
    """SubSecTime is the digits after the second's decimal point: '05' is 0.05 s, '123' 0.123 s."""
    digits = _text(subsec)
    if not digits or not digits.isascii() or not digits.isdigit():
        return 0
    return int(digits[:6].ljust(6, "0"))


def _timezone(offset: object) -> timezone | None:
    """OffsetTime is '+HH:MM' or '-HH:MM' from UTC; anything else (or an offset no place has) is no zone."""
    found = _OFFSET.fullmatch(_text(offset) or "")
    if not found:
        return None
    sign, hours, minutes = found.groups()
    if int(hours) > 14 or int(minutes) > 59:  # UTC+14 (Kiribati) is the furthest any clock is set
        return None
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    return timezone(-delta if sign == "-" else delta)


def _name(value: object) -> str | None:
    text = _text(value)
    if not text or len(text) > MAX_NAME_LENGTH or not (text.isascii() and text.isprintable()):
        return None
    return text


def _text(value: object) -> str | None:
    """An EXIF ASCII value as text: padding NULs and spaces taken off; None for anything that is not text."""
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(value, str):
        return None
    return value.strip("\x00 ") or None
