"""Decode: turn one photo file into a model-ready RGB array.

Pillow does the work. JPEG draft mode lets libjpeg scale down by 1/2..1/8 while decoding, so a 24-megapixel photo
is never decoded at full size; EXIF orientation is applied so a portrait shot is fingerprinted upright; the
decompression-bomb guard stays on (a bomb raises and the photo is skipped).
"""
from __future__ import annotations

import logging
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

try:  # HEIC/HEIF is what phones shoot; pillow-heif teaches Pillow to open it.
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # pragma: no cover - pillow-heif is a hard dependency, but decoding the rest still works
    log.debug("pillow-heif is not installed: HEIC photos will be skipped")

EXIF_DATETIME_ORIGINAL = 0x9003
EXIF_IFD = 0x8769


class ImageError(Exception):
    """A photo that cannot be decoded. The message is one line, fit for a warning."""


def load_image(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """Decode `path` into a uint8 array of shape (height, width, 3), resized to `size` = (height, width)."""
    height, width = size
    try:
        with warnings.catch_warnings():
            # Pillow warns before it raises on a bomb; a warning of its own is noise in our log.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # A malformed EXIF block makes Pillow warn ("Corrupt EXIF data") on stderr, naming no file; the
            # pixels are fine, so the photo is used and the warning would only be noise.
            warnings.simplefilter("ignore", UserWarning)
            with Image.open(path) as img:
                img.draft("RGB", (width, height))  # JPEG only: decode at the smallest scale >= the target
                img = ImageOps.exif_transpose(img)
                img = _to_rgb(img)
                img = img.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=2.0)
                return np.asarray(img, dtype=np.uint8)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"refused as a decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise ImageError("not an image Pillow can read (unknown format or corrupt header)") from None
    except OSError as exc:  # truncated data, permissions, vanished files
        raise ImageError(_reason(exc)) from None
    except (ValueError, SyntaxError, TypeError, IndexError, KeyError, EOFError, MemoryError) as exc:
        # Pillow's plugins raise these on malformed headers and EXIF blocks.
        raise ImageError(f"malformed image ({type(exc).__name__}: {exc})") from None


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
    return " ".join(text.split()) or type(exc).__name__


def exif_time(path: str | Path) -> datetime | None:
    """The photo's EXIF DateTimeOriginal, or None when it has none (or it is unreadable)."""
    try:
        with Image.open(path) as img:
            raw = img.getexif().get_ifd(EXIF_IFD).get(EXIF_DATETIME_ORIGINAL)
        return datetime.strptime(str(raw).strip("\x00 "), "%Y:%m:%d %H:%M:%S") if raw else None
    except Exception:  # noqa: BLE001 - EXIF in the wild is endlessly malformed; no time is an answer
        return None
