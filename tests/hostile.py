"""A corpus of hostile and odd inputs for a photo library, mixed with good photos.

`make_corpus(root, outside)` fills `root` (the library) and returns a Corpus that says, for every planted path,
what photocluster must do with it:

  good     the reference photos: clustered exactly as in a library without the rest
  odd      valid but unusual photos (16-bit, CMYK, palette, animated, rotated, odd names): fingerprinted silently
  bad      undecodable: named once in a warning, remembered as failed, never a traceback
  ignored  not photos at all (symlinks, FIFOs, partial downloads, hidden files): neither read nor warned about

Some inputs need the run itself to misbehave at the right moment (a file deleted between scan and decode, a file
still being written); `race_hooks` gives those as callbacks for a test to fire after the scan.
"""
from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .conftest import save, scene


@dataclass
class Corpus:
    root: Path
    good: list[str] = field(default_factory=list)
    odd: list[str] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)  # kind -> one path of that kind (for the report)
    outside: Path | None = None

    def add(self, kind: str, verdict: str, rel: str) -> None:
        getattr(self, verdict).append(rel)
        self.kinds.setdefault(kind, rel)


def good_photos(root: Path, scenes: int = 4, copies: int = 3) -> list[str]:
    """`scenes` groups of `copies` near-identical photos: the clusters every run must find."""
    rels = []
    for g in range(scenes):
        img = scene(g)
        for c in range(copies):
            rel = f"good/scene{g}/v{c}.jpg"
            save(img.resize((200 + 40 * c, 150 + 30 * c)), root / rel, quality=70 + 10 * c)
            rels.append(rel)
    return rels


def _jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int = 40000, height: int = 40000) -> bytes:
    """A PNG whose header claims 1.6 gigapixels over a few bytes of data (the decompression-bomb shape)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _odd_image(seed: int, size=(96, 72)) -> Image.Image:
    """A photo unlike the good scenes (high-frequency noise), so odd inputs do not join their clusters."""
    rng = np.random.default_rng(1000 + seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), np.uint8))


def make_corpus(root: Path, outside: Path, big_folder_entries: int = 10_000) -> Corpus:
    root, outside = Path(root), Path(outside)
    corpus = Corpus(root, outside=outside)
    corpus.good = good_photos(root)
    h = root / "hostile"
    h.mkdir(parents=True)
    good_jpeg = _jpeg_bytes(scene(50), quality=80)

    def plant(kind: str, verdict: str, name: str, data: bytes | None = None) -> Path:
        path = h / name
        if data is not None:
            path.write_bytes(data)
        corpus.add(kind, verdict, os.fsdecode(path.relative_to(root)))
        return path

    # --- undecodable: each must be named once in a warning -------------------------------------------------
    plant("truncated JPEG", "bad", "truncated.jpg", good_jpeg[: len(good_jpeg) // 3])
    plant("zero-byte file", "bad", "empty.jpg", b"")
    plant("text file named .jpg", "bad", "notes.jpg", b"shopping list: milk, eggs\n" * 20)
    plant("PNG decompression bomb", "bad", "bomb.png", bomb_png())
    plant("JPEG with only a start-of-image marker", "bad", "soi-only.jpeg", b"\xff\xd8")
    plant("PNG with a corrupt IDAT", "bad", "corrupt-idat.png", bomb_png(64, 64)[:-30] + b"\x00" * 30)
    plant("HTML saved as .png", "bad", "page.png", b"<!doctype html><html><body>404</body></html>")
    plant("random bytes named .tiff", "bad", "noise.tiff", np.random.default_rng(3).bytes(4096))
    plant("truncated GIF", "bad", "cut.gif", b"GIF89a\x10\x00\x10\x00")
    plant("HEIC that is not one", "bad", "phone.heic", b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64)
    plant("executable named .jpg", "bad", "run-me.jpg", b"#!/bin/sh\ntouch /tmp/photocluster-pwned\n")
    plant_decode_hostiles(plant)

    # --- valid but odd: each must be fingerprinted without a word --------------------------------------------
    tall = _odd_image(1, (1, 30000))
    tall.save(plant("image 1x30000", "odd", "tall-1x30000.png"))
    deep = Image.fromarray((np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16))
    deep.save(plant("16-bit greyscale PNG", "odd", "deep-16bit.png"))
    _odd_image(2).convert("CMYK").save(plant("CMYK JPEG", "odd", "print-cmyk.jpg"), "JPEG")
    pal = _odd_image(3).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    pal.save(plant("palette PNG with transparency", "odd", "palette-transparent.png"), transparency=0)
    frames = [_odd_image(4 + i, (48, 48)) for i in range(3)]
    frames[0].save(plant("animated GIF", "odd", "animated.gif"), save_all=True, append_images=frames[1:], loop=0)
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        _odd_image(10, (64, 48)).save(plant("EXIF orientations 1-8", "odd", f"orient-{orientation}.jpg"),
                                      "JPEG", exif=exif.tobytes())
    # An APP1 Exif segment of garbage right after SOI: the pixels are fine, the metadata is not.
    app1 = b"Exif\x00\x00II*\x00\xff\xff\xff\x7f" + b"\xde\xad" * 40
    odd_jpeg = _jpeg_bytes(_odd_image(11))
    plant("corrupt EXIF", "odd", "corrupt-exif.jpg",
          odd_jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + odd_jpeg[2:])
    locked = plant("unreadable file (chmod 000)", "odd" if os.geteuid() == 0 else "bad", "locked.jpg",
                   _jpeg_bytes(_odd_image(12)))
    os.chmod(locked, 0)  # root reads it anyway: then it is simply a photo
    plant("name with spaces", "odd", "a name with  spaces .jpg", _jpeg_bytes(_odd_image(13)))
    plant("name with a newline", "odd", "line\nbreak.jpg", _jpeg_bytes(_odd_image(14)))
    plant("name with a leading dash", "odd", "-rf --help.jpg", _jpeg_bytes(_odd_image(15)))
    bad_utf8 = os.fsdecode(b"caf\xe9-latin1-\xff.jpg")  # surrogate-escaped, as os.listdir gives it
    plant("non-UTF-8 name", "odd", bad_utf8, _jpeg_bytes(_odd_image(16)))
    plant("255-byte name", "odd", "long-" + "x" * 246 + ".jpg", _jpeg_bytes(_odd_image(17)))
    plant("shell metacharacters in name", "odd", "$(touch pwned);`id`|&.jpg", _jpeg_bytes(_odd_image(18)))
    plant("upper-case extension", "odd", "SHOUT.JPG", _jpeg_bytes(_odd_image(19)))
    plant("mtime in 1970", "odd", "epoch.jpg", _jpeg_bytes(_odd_image(20)))
    os.utime(h / "epoch.jpg", (0, 0))

    # --- not photos: neither read nor warned about -------------------------------------------------------------
    outside.mkdir(parents=True, exist_ok=True)
    secret = outside / "secret.jpg"
    save(scene(60), secret)
    save(scene(61), outside / "album" / "private.jpg")
    os.symlink(h / "gone.jpg", plant("dangling symlink", "ignored", "dangling.jpg"))
    os.symlink("loop-b.jpg", plant("symlink loop (files)", "ignored", "loop-a.jpg"))
    os.symlink("loop-a.jpg", plant("symlink loop (files)", "ignored", "loop-b.jpg"))
    os.symlink(".", plant("symlink loop (folder to itself)", "ignored", "self-loop"))
    os.symlink(secret, plant("symlink to a photo outside the library", "ignored", "outside.jpg"))
    os.symlink(outside / "album", plant("symlink to a folder outside the library", "ignored", "outside-album"))
    os.mkfifo(plant("FIFO named .jpg", "ignored", "pipe.jpg"))  # opening it would block forever
    (h / "folder.jpg").mkdir()
    corpus.add("folder named .jpg", "ignored", "hostile/folder.jpg")
    plant("partial download", "ignored", "download.jpg.part", good_jpeg[:100])
    plant("hidden file", "ignored", ".hidden.jpg", good_jpeg)

    # --- a folder with many entries: a few photos among thousands of sidecar files -----------------------------
    crowd = h / "crowd"
    crowd.mkdir()
    for i in range(big_folder_entries - 2):
        (crowd / f"IMG_{i:05d}.xmp").touch()
    for i in range(2):
        (crowd / f"crowd-{i}.jpg").write_bytes(_jpeg_bytes(_odd_image(30 + i)))
        corpus.odd.append(f"hostile/crowd/crowd-{i}.jpg")
    corpus.kinds[f"folder with {big_folder_entries} entries"] = "hostile/crowd"
    return corpus


def race_hooks(corpus: Corpus) -> dict[str, callable]:
    """Plant the two race-condition inputs; return callbacks that fire the race once the scan has listed them.

    'vanishing.jpg' is deleted between scan and decode (bad: warned once); 'growing.jpg' is half written at scan
    time and completed afterwards (bad or odd depending on when it is read: the test accepts either, once).
    """
    h = corpus.root / "hostile"
    full = _jpeg_bytes(_odd_image(40))
    (h / "vanishing.jpg").write_bytes(_jpeg_bytes(_odd_image(41)))
    (h / "growing.jpg").write_bytes(full[: len(full) // 2])
    corpus.kinds["file deleted between scan and decode"] = "hostile/vanishing.jpg"
    corpus.kinds["file still being written"] = "hostile/growing.jpg"
    corpus.bad.append("hostile/vanishing.jpg")

    def delete() -> None:
        (h / "vanishing.jpg").unlink()

    def finish_writing() -> None:
        with open(h / "growing.jpg", "ab") as fh:
            fh.write(full[len(full) // 2:])

    return {"delete": delete, "finish_writing": finish_writing}


# --- decode: files that make a decoder raise, refuse, loop or balloon (helper "decode", issue 9) -----------------
# Each returns bytes to plant under a photo's name. What photocluster must do with every one: skip it with one
# line naming the file, remember the failure, go on.

def dds_unsupported() -> bytes:
    """A DDS header with a FourCC Pillow does not implement: its DDS plugin raises NotImplementedError."""
    pixel_format = struct.pack("<II4s5I", 32, 0x4, b"ZZZZ", 0, 0, 0, 0, 0)
    header = struct.pack("<7I", 124, 0x1007, 64, 64, 0, 0, 0) + b"\x00" * 44 + pixel_format + b"\x00" * 20
    return b"DDS " + header + b"\x00" * 256


def blp_bad_encoding() -> bytes:
    """A BLP2 file whose encoding byte is unknown: BLPFormatError (a NotImplementedError) when loaded."""
    return b"BLP2" + struct.pack("<ibbbb", 1, 9, 0, 0, 0) + struct.pack("<II", 64, 64) + b"\x00" * 2048


def heic_garbage() -> bytes:
    """A real HEIC header (ftyp heic) over garbage: pillow-heif raises as it parses or decodes it."""
    ftyp = struct.pack(">I", 24) + b"ftypheic" + b"\x00\x00\x00\x00" + b"mif1heic"
    return ftyp + struct.pack(">I", 64) + b"meta" + np.random.default_rng(7).bytes(4096)


def tiff_many_samples(samples: int = 7680) -> bytes:
    """A TIFF that claims `samples` samples per pixel (Pillow logs 'More samples per pixel than can be decoded')."""
    entries = [(256, 3, 1, 8), (257, 3, 1, 8), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 2),
               (273, 4, 1, 200), (277, 3, 1, samples), (278, 3, 1, 8), (279, 4, 1, 64)]
    def entry(tag: int, kind: int, count: int, value: int) -> bytes:
        packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)  # SHORT or LONG
        return struct.pack("<HHI", tag, kind, count) + packed

    ifd = struct.pack("<H", len(entries)) + b"".join(entry(*e) for e in entries) + b"\x00\x00\x00\x00"
    data = b"II*\x00" + struct.pack("<I", 8) + ifd
    return data + b"\x00" * (264 - len(data))


def jpeg_segments(data: bytes) -> list[tuple[int, bytes]]:
    """Split a JPEG into (marker, bytes) segments, a scan's entropy-coded data kept with its SOS segment."""
    import re

    segments, i = [], 2
    while i < len(data) - 1:
        marker = data[i + 1]
        if marker == 0xD9:
            break
        end = i + 2 + int.from_bytes(data[i + 2:i + 4], "big")
        if marker == 0xDA:
            end = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]").search(data, end).start()
        segments.append((marker, data[i:end]))
        i = end
    return segments


def progressive_scan_bomb(extra_scans: int, size: tuple[int, int] = (1024, 1024)) -> bytes:
    """A valid progressive greyscale JPEG (libjpeg writes 6 scans) followed by `extra_scans` repeats of its last
    refinement scan with the Huffman table before it: every scan is a pass over the whole image."""
    data = _jpeg_bytes(Image.new("L", size, 128), progressive=True, quality=90)
    segments = jpeg_segments(data)
    last_scan = max(i for i, (marker, _) in enumerate(segments) if marker == 0xDA)
    repeat = segments[last_scan - 1][1] + segments[last_scan][1]
    assert segments[last_scan - 1][0] == 0xC4  # the DHT the scan was coded with
    return data[:-2] + repeat * extra_scans + b"\xff\xd9"


def plant_decode_hostiles(plant) -> None:
    """The files of issue 9's classes 3-5 that a decoder chokes on, planted with make_corpus's `plant`."""
    plant("DDS with an unimplemented pixel format, named .jpg", "bad", "texture.jpg", dds_unsupported())
    plant("BLP with an unknown encoding, named .png", "bad", "game.png", blp_bad_encoding())
    plant("HEIC header over garbage", "bad", "garbage.heic", heic_garbage())
    plant("TIFF with 7680 samples per pixel", "bad", "samples.tif", tiff_many_samples())
    plant("progressive JPEG with 2000 scans (CPU bomb)", "bad", "scan-bomb.jpg", progressive_scan_bomb(2000))
    plant("PNG of 65 MP (over the full-decode limit)", "bad", "huge-65mp.png", bomb_png(8100, 8100))
