"""Count the scans of a progressive JPEG before decoding it: a JPEG made of thousands of empty scans is a CPU bomb
(images.MAX_JPEG_SCANS caps them). Pillow and libjpeg give no way to ask before decoding, hence this walk.
"""
from __future__ import annotations

import os
import re
from typing import BinaryIO

_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # in entropy-coded data, FF 00 is a data byte, FF D0-D7 a restart
_CHUNK = 1 << 16


def count_jpeg_scans(fh: BinaryIO, limit: int) -> int:
    """The number of start-of-scan markers in the JPEG `fh`, counting no further than `limit` + 1.

    Pillow and libjpeg give no way to ask before decoding, so the markers are walked here: a segment's length
    is skipped, and after each scan header the entropy-coded data is searched for the next marker. Reads in
    chunks, so a file of any size costs _CHUNK bytes of memory.
    """
    fh.seek(0)
    if fh.read(2) != b"\xff\xd8":
        return 0
    scans = 0
    while scans <= limit:
        marker = _next_marker(fh)
        if marker is None or marker == 0xD9:  # end of file or end of image
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            continue
        length = fh.read(2)
        if len(length) < 2:
            break
        fh.seek(int.from_bytes(length, "big") - 2, os.SEEK_CUR)
        if marker == 0xDA:
            scans += 1
            _skip_entropy_coded_data(fh)
    return scans


def _next_marker(fh: BinaryIO) -> int | None:
    byte = fh.read(1)
    if byte != b"\xff":
        return None
    while byte == b"\xff":  # fill bytes may pad before a marker
        byte = fh.read(1)
    return byte[0] if byte else None


def _skip_entropy_coded_data(fh: BinaryIO) -> None:
    """Leave `fh` at the next marker after a scan's data (or at the end of the file)."""
    while True:
        start = fh.tell()
        chunk = fh.read(_CHUNK)
        if not chunk:
            return
        found = _MARKER.search(chunk)
        if found:
            fh.seek(start + found.start())
            return
        if len(chunk) > 1 and chunk.endswith(b"\xff"):  # the marker may straddle two chunks
            fh.seek(-1, os.SEEK_CUR)
