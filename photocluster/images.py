"""Decode: turn one photo file into a model-ready RGB array, within fixed bounds of memory and work.

Pillow does the work. JPEG draft mode lets libjpeg scale down by 1/2..1/8 while decoding, so a 24-megapixel photo
is never decoded at full size; other formats are decoded at full size and shrunk at once, before any other copy is
made; EXIF orientation is applied so a portrait shot is fingerprinted upright.

A photo is hostile input, so what it may cost is settled from its header before a pixel is decoded:
- only photo formats are tried (a .jpg that is really a DDS, an EPS or a FITS file is not a photo);
- its pixels are capped (MAX_PIXELS, or MAX_JPEG_PIXELS for draft-decoded JPEGs), below Pillow's own guard;
- a progressive JPEG may have at most MAX_JPEG_SCANS scans (a CPU bomb has thousands);
- the memory its decode needs is estimated and reserved from a budget that every decoding thread shares
  (DECODE_MEMORY_BUDGET), so four huge PNGs decode one after the other instead of all at once.
Any exception while decoding is that photo's failure: ImageError, one line.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from .jpeg_scans import count_jpeg_scans
from .library import UnsafePhoto, open_photo

log = logging.getLogger(__name__)

try:  # HEIC/HEIF is what phones shoot; pillow-heif teaches Pillow to open it.
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # pragma: no cover - pillow-heif is a hard dependency, but decoding the rest still works
    log.debug("pillow-heif is not installed: HEIC photos will be skipped")

EXIF_ORIENTATION = 0x0112

# The formats of library.PHOTO_EXTENSIONS (JPEG covers MPO). Whatever a file is named, no other Pillow plugin
# is tried on it.
PHOTO_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "HEIF")
JPEG_FORMATS = ("JPEG", "MPO")

# Pillow warns at 89.5 MP and refuses at 179 MP. A full-size decode costs 4 bytes a pixel in Pillow (8 with its
# working copy), so 64 MP (every camera up to 61 MP) is the cap there; a JPEG is decoded at 1/8 scale, so it may
# have 150 MP (medium-format backs), still below Pillow's refusal.
MAX_PIXELS = 64_000_000
MAX_JPEG_PIXELS = 150_000_000
# libjpeg writes 6 scans in a progressive grey JPEG, 10 in colour, 18 in CMYK; each scan is a pass over
# the whole image, so a bomb made of thousands of empty scans costs minutes of CPU for a few hundred KB.
MAX_JPEG_SCANS = 50
# What decodes in flight may hold together, in every thread of a process. It is also the most one photo may need.
DECODE_MEMORY_BUDGET = 768 * 2**20

# Pillow says why it refused some files in log lines and warnings of its own that name no file ("More samples per
# pixel than can be decoded: 7680", "Corrupt EXIF data"); the skip line logged for the photo names it instead.
logging.getLogger("PIL").setLevel(logging.CRITICAL)
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)  # our own, lower caps apply
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")


def _return_big_blocks_to_the_system() -> None:
    """Make glibc hand image memory back to the system as soon as it is freed.

    Pillow allocates pixels in 16 MB blocks. glibc raises its mmap threshold after the first such block is freed,
    so later ones come from per-thread heaps that keep the memory after free: four threads that decode huge images
    one after another would each keep one's worth (measured: 680 MiB peak instead of 460 MiB). A fixed threshold
    keeps every block mmap-ed, so freed pixels leave RSS at once. Elsewhere than glibc this is left as it is.
    """
    import ctypes

    m_mmap_threshold = -3
    try:
        ctypes.CDLL(None).mallopt(m_mmap_threshold, 4 * 2**20)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


_return_big_blocks_to_the_system()


class Fit(tuple):
    """A size (height, width) for load_image_sizes to shrink the photo within, in its own proportions (a
    thumbnail), rather than to: its entry in the result is a Fitted."""


DETAIL_BOX = 512  # the long side, at most, of a Fitted's grey detail image


@dataclass(frozen=True)
class Fitted:
    """A photo shrunk within a Fit (never enlarged), with what a thumbnail's quality measures need from the same
    decode: the photo's own size (upright) and a grey copy of up to DETAIL_BOX pixels on its long side."""

    pixels: np.ndarray  # uint8 (height, width, 3)
    width: int
    height: int
    detail: np.ndarray  # uint8 (height, width), grey


class ImageError(Exception):
    """A photo that cannot be decoded. The message is one line, fit for a warning."""


class DecodeDeferred(Exception):
    """Not decoded now, through no fault of the photo: try it again in a later run."""


class MemoryBudget:
    """Bytes that the decodes running at once may hold together; a decode waits until its share is free.

    A decode that was given up on (hung) keeps its share until it really ends, since its memory is still in use;
    a photo that could then never fit is deferred (DecodeDeferred) instead of waiting forever.
    """

    def __init__(self, total: int):
        self.total = total
        self.used = 0
        self._held: dict[int, int] = {}  # thread id -> bytes it holds
        self._given_up: set[int] = set()
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        me = threading.get_ident()
        with self._cond:
            while self.used + nbytes > self.total:
                if self._stuck() + nbytes > self.total:
                    raise DecodeDeferred("decode memory is held by a decode that hung; left for a later run")
                self._cond.wait()
            self.used += nbytes
            self._held[me] = nbytes
        try:
            yield
        finally:
            with self._cond:
                self.used -= self._held.pop(me)
                self._given_up.discard(me)
                self._cond.notify_all()

    def give_up(self, thread_id: int) -> None:
        """The decode on `thread_id` will not be waited for any more; nobody waits for its share either."""
        with self._cond:
            if thread_id in self._held:
                self._given_up.add(thread_id)
                self._cond.notify_all()

    def _stuck(self) -> int:
        return sum(self._held[t] for t in self._given_up)


DECODE_BUDGET = MemoryBudget(DECODE_MEMORY_BUDGET)


def load_image(source: str | Path | BinaryIO, size: tuple[int, int], budget: MemoryBudget = DECODE_BUDGET,
               on_decode: Callable[[], None] = lambda: None, keep_aspect: bool = False,
               also: tuple[tuple[int, int], ...] = ()) -> np.ndarray | list[np.ndarray]:
    """Decode `source` into a uint8 array of shape (height, width, 3), resized to `size` = (height, width);
    with `keep_aspect`, shrunk to fit within `size` instead, in its own proportions (never enlarged); with
    `also`, a list: the photo at `size`, then at each of `also`, all from one decode.

    `source` is an open binary file or a path (whose last component must be a regular file, not a symlink).
    `on_decode` is called once the photo has passed its checks and its memory is reserved, as decoding starts.
    Raises ImageError (the photo's fault) or DecodeDeferred (not now).
    """
    try:
        with _opened(source) as fh:
            return _decode(fh, size, budget, on_decode, keep_aspect, also)
    except (ImageError, DecodeDeferred):
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(f"refused as a decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise ImageError("not a photo Pillow can read (unknown format or corrupt header)") from None
    except UnsafePhoto as exc:
        raise ImageError(str(exc)) from None
    except OSError as exc:  # truncated data, permissions, vanished files
        raise ImageError(_reason(exc)) from None
    except Exception as exc:  # noqa: BLE001 - any decoder's bug on any file is that file's failure, not the run's
        raise ImageError(f"malformed image ({type(exc).__name__}: {_one_line(str(exc))})") from None


@contextlib.contextmanager
def _opened(source: str | Path | BinaryIO) -> Iterator[BinaryIO]:
    if not isinstance(source, (str, Path)):
        yield source
        return
    folder, name = os.path.split(os.fspath(source))
    with open_photo(folder or ".", name) as fh:
        yield fh


def load_image_sizes(source: str | Path | BinaryIO, sizes: list[tuple[int, int]],
                     budget: MemoryBudget = DECODE_BUDGET, on_decode: Callable[[], None] = lambda: None
                     ) -> list[np.ndarray]:
    """One decode of `source`, resized to each of `sizes` (height, width): one photo for two models. The decode
    is made for the largest size (load_image's errors). A size that is a Fit gives a Fitted (a thumbnail)."""
    if len(sizes) == 1:
        return [load_image(source, sizes[0], budget=budget, on_decode=on_decode)]
    return load_image(source, sizes[0], budget=budget, on_decode=on_decode, also=tuple(sizes[1:]))


def _decode(fh: BinaryIO, size: tuple[int, int], budget: MemoryBudget, on_decode: Callable[[], None],
            keep_aspect: bool = False, also: tuple[tuple[int, int], ...] = ()) -> np.ndarray | list[np.ndarray]:
    height, width = max((size, *also), key=lambda s: s[0] * s[1])  # decode for the largest
    _refuse_huge_heif_file(fh, budget)
    with Image.open(fh, formats=PHOTO_FORMATS) as opened:
        need = _check_bounds(opened, fh, (width, height), budget)
        own_size = opened.size
        with budget.reserve(need):
            on_decode()
            try:
                opened.draft("RGB", (width, height))  # JPEG only: decode at the smallest scale >= the target
                opened.load()
                orientation = _orientation(opened)  # after load: a PNG's getexif() loads it, to find eXIf
                sideways = orientation in (5, 6, 7, 8)
                img = _shrink(opened, (height, width) if sideways else (width, height))
            finally:
                # Free the full-size pixels before the share is given back (Pillow's __exit__ does not, and an
                # image in a reference cycle would otherwise hold them until the garbage collector runs).
                opened.close()
            if orientation in _TRANSPOSE:
                img = img.transpose(_TRANSPOSE[orientation])
            img = _to_rgb(img)
            if keep_aspect:
                img.thumbnail((width, height), Image.Resampling.BILINEAR, reducing_gap=2.0)
                return np.asarray(img, dtype=np.uint8)
            upright = own_size[::-1] if sideways else own_size
            resized = [_fitted(img, s, upright) if isinstance(s, Fit) else
                       np.asarray(img.resize((s[1], s[0]), Image.Resampling.BILINEAR, reducing_gap=2.0), dtype=np.uint8)
                       for s in (size, *also)]
            return resized if also else resized[0]


def _fitted(img: Image.Image, box: Fit, own_size: tuple[int, int]) -> Fitted:
    """`img` shrunk within `box` (a thumbnail, LANCZOS: it is looked at), and its grey detail image."""
    def within(longest: tuple[int, int]) -> tuple[int, int]:
        scale = min(1.0, longest[1] / img.width, longest[0] / img.height)
        return max(1, round(img.width * scale)), max(1, round(img.height * scale))

    thumb = img.resize(within(box), Image.Resampling.LANCZOS, reducing_gap=2.0)
    grey = img.convert("L")
    detail = grey.resize(within((DETAIL_BOX, DETAIL_BOX)), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return Fitted(np.asarray(thumb, dtype=np.uint8), own_size[0], own_size[1], np.asarray(detail, dtype=np.uint8))


def _check_bounds(img: Image.Image, fh: BinaryIO, target: tuple[int, int], budget: MemoryBudget) -> int:
    """Refuse what would cost too much to decode; return the bytes its decode needs."""
    w, h = img.size
    limit = MAX_JPEG_PIXELS if img.format in JPEG_FORMATS else MAX_PIXELS
    if w * h > limit:
        raise ImageError(f"too large: {w} x {h} pixels ({w * h / 1e6:.0f} MP) is over the {limit / 1e6:.0f} MP "
                         f"limit for {img.format}")
    if img.format in JPEG_FORMATS and img.info.get("progressive"):
        scans = count_jpeg_scans(fh, MAX_JPEG_SCANS)
        if scans > MAX_JPEG_SCANS:
            raise ImageError(f"progressive JPEG with over {MAX_JPEG_SCANS} scans (cameras write about 10): refused "
                             "as a decoder CPU bomb")
    need = decode_bytes(img, target)
    if need > budget.total:
        raise ImageError(f"would need about {need >> 20} MiB to decode, over the {budget.total >> 20} MiB limit")
    return need


def _refuse_huge_heif_file(fh: BinaryIO, budget: MemoryBudget) -> None:
    """pillow-heif reads the whole file into memory as it opens it: a HEIF bigger than the budget is refused first."""
    head = fh.read(12)
    file_size = fh.seek(0, os.SEEK_END)
    fh.seek(0)
    if head[4:8] == b"ftyp" and file_size > budget.total // 2:
        raise ImageError(f"HEIF file over {budget.total // 2 >> 20} MiB: too large to read")


# Bytes a pixel takes in Pillow's own image memory (1, L and P take one byte, 16-bit modes two, the rest four).
_NARROW_MODES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
# Modes Image.reduce works on; the others are converted first (a full-size copy), as _reducible says.
_REDUCIBLE = {"L", "LA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "I", "F"}
# Decoders that hold full-size buffers of their own beside Pillow's, in bytes a pixel (measured, with a margin):
# libwebp's canvases and demuxer (12), libheif's planes and RGB output (3.3 for 8 bits), libtiff's raw strips.
_DECODER_BYTES_PER_PIXEL = {"WEBP": 14, "HEIF": 8, "TIFF": 8}
_OVERHEAD = 8 * 2**20  # the decoder's own tables and row buffers, and the small copies after the shrink


def decode_bytes(img: Image.Image, target: tuple[int, int]) -> int:
    """An upper bound on the memory `_decode` needs for `img` (opened, not loaded), from its header alone."""
    w, h = img.size
    if img.format in JPEG_FORMATS:
        scale = _jpeg_draft_scale(img.size, target)
        drafted = math.ceil(w / scale) * math.ceil(h / scale)
        need = drafted * 4 * 3  # decoded, a CMYK -> RGB copy and a reduced copy
        if img.info.get("progressive"):
            need += _jpeg_coefficient_bytes(img)  # libjpeg keeps every DCT coefficient until the last scan
        return need + _OVERHEAD
    pillow = _NARROW_MODES.get(img.mode, 4)
    working = 4 if img.mode not in _REDUCIBLE or img.mode in ("LA", "RGBA") else 0  # converted, or premultiplied
    return w * h * (pillow + working + _DECODER_BYTES_PER_PIXEL.get(img.format, 0)) + _OVERHEAD


def _jpeg_draft_scale(size: tuple[int, int], target: tuple[int, int]) -> int:
    """The scale JpegImageFile.draft picks: the largest of 8, 4, 2, 1 that still gives at least `target`."""
    scale = min(size[0] // max(1, target[0]), size[1] // max(1, target[1]))
    return next(s for s in (8, 4, 2, 1) if scale >= s or s == 1)


def _jpeg_coefficient_bytes(img: Image.Image) -> int:
    """A progressive JPEG's coefficient buffer: 64 two-byte coefficients per 8x8 block of every component."""
    w, h = img.size
    layers = getattr(img, "layer", None) or [(0, 1, 1, 0)] * max(1, getattr(img, "layers", 3))
    h_max = max(layer[1] for layer in layers) or 1
    v_max = max(layer[2] for layer in layers) or 1
    blocks = sum(math.ceil(w * layer[1] / h_max / 8 + 1) * math.ceil(h * layer[2] / v_max / 8 + 1)
                 for layer in layers)
    return blocks * 64 * 2


_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1-8), read before shrinking: the shrunk copy no longer carries the original's tags."""
    try:
        return int(img.getexif().get(EXIF_ORIENTATION) or 1)
    except Exception:  # noqa: BLE001 - malformed EXIF is common; the pixels are still fine, shown unrotated
        return 1


def _shrink(img: Image.Image, target: tuple[int, int]) -> Image.Image:
    """A new image, reduced by a whole factor towards twice `target` = (width, height) before any other full-size
    copy is made (what resize(reducing_gap=2) would do, earlier)."""
    factor = min(img.width // (2 * max(1, target[0])), img.height // (2 * max(1, target[1])))
    if factor < 2:
        return img.copy()  # small already: a copy outlives the original, which is closed
    return _reducible(img).reduce(factor)


def _reducible(img: Image.Image) -> Image.Image:
    if img.mode in _REDUCIBLE:
        return img
    if img.mode.startswith("I;16"):
        return img.convert("I")
    if img.mode == "1":
        return img.convert("L")
    if img.mode == "PA" or (img.mode == "P" and "transparency" in img.info):
        return img.convert("RGBA")
    return img.convert("RGB")


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any mode (palette, RGBA, CMYK, 16-bit, greyscale) to 8-bit RGB."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale to 8 bits from the real range rather than clipping to white.
        arr = np.asarray(img, dtype=np.float32)
        top = float(arr.max()) or 1.0
        return Image.fromarray((arr * (255.0 / top)).astype(np.uint8)).convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Composite transparency onto white, as a viewer shows it, instead of onto black.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _reason(exc: OSError) -> str:
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return _one_line(text) or type(exc).__name__


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
