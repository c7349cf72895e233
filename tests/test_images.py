import numpy as np
import pytest
from PIL import Image

from photocluster.images import ImageError, load_image


def photo(tmp_path, name="p.jpg", size=(640, 480), mode="RGB", **save):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (size[1], size[0], 3), np.uint8)
    img = Image.fromarray(arr).convert(mode) if mode != "RGB" else Image.fromarray(arr)
    path = tmp_path / name
    img.save(path, **save)
    return path


@pytest.mark.parametrize("mode,name", [("RGB", "a.jpg"), ("L", "g.png"), ("P", "p.png"), ("RGBA", "t.png"),
                                       ("CMYK", "c.jpg"), ("I;16", "d.png"), ("LA", "la.png"), ("1", "b.bmp")])
def test_any_mode_becomes_rgb_at_model_size(tmp_path, mode, name):
    arr = load_image(photo(tmp_path, name, mode=mode), (224, 224))
    assert arr.shape == (224, 224, 3) and arr.dtype == np.uint8


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (400, 200), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 200, 200))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: viewers rotate 90 degrees clockwise
    img.save(tmp_path / "r.jpg", exif=exif, quality=95)
    arr = load_image(tmp_path / "r.jpg", (100, 100))
    top, bottom = arr[5, 50], arr[95, 50]
    assert top[2] > 200 and top[0] < 60  # after rotating clockwise, the blue half is on top
    assert bottom[0] > 200


def test_jpeg_draft_mode_decodes_a_big_photo_small(tmp_path, monkeypatch):
    path = photo(tmp_path, "big.jpg", size=(6000, 4000), quality=80)
    seen = {}
    real_resize = Image.Image.resize

    def spy(self, size, *a, **k):
        seen["decoded"] = self.size
        return real_resize(self, size, *a, **k)

    monkeypatch.setattr(Image.Image, "resize", spy)
    load_image(path, (224, 224))
    assert max(seen["decoded"]) <= 6000 // 8 + 1


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\xff\xd8\xff\xe0" + b"\x00" * 50])
def test_garbage_is_an_image_error(tmp_path, content):
    (tmp_path / "bad.jpg").write_bytes(content)
    with pytest.raises(ImageError):
        load_image(tmp_path / "bad.jpg", (224, 224))


def test_truncated_jpeg_is_an_image_error(tmp_path):
    data = photo(tmp_path, "t.jpg", size=(800, 600)).read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageError):
        load_image(tmp_path / "t.jpg", (224, 224))


def test_decompression_bomb_is_refused(tmp_path):
    Image.new("1", (20000, 20000)).save(tmp_path / "bomb.png")  # 400 Mpx, a few KB on disk
    with pytest.raises(ImageError, match="bomb"):
        load_image(tmp_path / "bomb.png", (224, 224))


def test_missing_file_is_an_image_error(tmp_path):
    with pytest.raises(ImageError, match="No such file"):
        load_image(tmp_path / "gone.jpg", (224, 224))


# --- issue 9: reads that stay in the library, any decoder error is the photo's, bounds before decoding ----------

import io  # noqa: E402
import os  # noqa: E402
import stat  # noqa: E402
import struct  # noqa: E402
import threading  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from PIL import PngImagePlugin  # noqa: E402

from photocluster import images  # noqa: E402
from photocluster.images import MemoryBudget  # noqa: E402
from photocluster.jpeg_scans import count_jpeg_scans  # noqa: E402
from photocluster.library import UnsafePhoto, open_photo  # noqa: E402

from . import hostile  # noqa: E402


def finishes(fn, seconds=10.0):
    """Run `fn` in a thread; return what it returned or raised, or fail if it is still blocked after `seconds`."""
    out = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds} s"
    return out


def swap(path, kind, outside):
    """Replace the file at `path` with something that is not a regular file inside the library."""
    os.unlink(path)
    if kind == "symlink":
        os.symlink(outside, path)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        os.mkdir(path)
    elif kind == "device":  # /dev/null's numbers: opening it would read nothing, but a tape would rewind
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    elif kind == "socket":
        import socket

        sock = socket.socket(socket.AF_UNIX)
        sock.bind(os.fspath(path))
        sock.close()


SWAP_KINDS = ["symlink", "fifo", "folder", "socket"] + (["device"] if os.geteuid() == 0 else [])
EXPECTED_REASON = {"symlink": "is a symlink", "fifo": "not a regular file", "folder": "not a regular file",
                   "device": "not a regular file", "socket": "not a regular file"}


@pytest.mark.parametrize("kind", SWAP_KINDS)
def test_a_photo_swapped_after_the_scan_is_refused_not_followed(tmp_path, kind):
    outside = photo(tmp_path, "outside.jpg")  # a fine photo, but not the library's
    lib = tmp_path / "lib"
    lib.mkdir()
    photo(lib, "p.jpg")
    swap(lib / "p.jpg", kind, outside)
    got = finishes(lambda: load_image(lib / "p.jpg", (224, 224)))
    assert isinstance(got.get("error"), ImageError), got
    assert str(got["error"]) == EXPECTED_REASON[kind]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(depth=st.integers(1, 4), data=st.data())
def test_no_component_of_a_photos_path_is_followed(tmp_path_factory, depth, data):
    """Any folder on the way to the photo, or the photo itself, swapped for a symlink (to a copy of the library
    outside it) or the photo for a FIFO: the open is refused at once with a one-line reason."""
    base = tmp_path_factory.mktemp("swap")
    lib, outside = base / "lib", base / "outside"
    folders = [f"d{i}" for i in range(depth - 1)]
    rel = "/".join(folders + ["p.jpg"])
    for root in (lib, outside):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        photo((root / rel).parent, "p.jpg")
    at = data.draw(st.integers(0, depth - 1), label="component swapped")
    kind = data.draw(st.sampled_from(["symlink", "fifo"] if at == depth - 1 else ["symlink"]), label="kind")
    target = lib.joinpath(*rel.split("/")[: at + 1])
    import shutil

    shutil.rmtree(target) if target.is_dir() else target.unlink()
    if kind == "fifo":
        os.mkfifo(target)
    else:
        os.symlink(outside.joinpath(*rel.split("/")[: at + 1]), target)
    got = finishes(lambda: open_photo(lib, rel))
    assert isinstance(got.get("error"), UnsafePhoto), got
    assert "\n" not in str(got["error"])


@pytest.mark.parametrize("rel", ["../outside.jpg", "a/../../outside.jpg", "/etc/passwd", "a//b.jpg", "./p.jpg"])
def test_a_path_that_leaves_the_library_is_refused(tmp_path, rel):
    photo(tmp_path, "outside.jpg")
    (tmp_path / "lib" / "a").mkdir(parents=True)
    with pytest.raises(UnsafePhoto, match="not a path inside the library"):
        open_photo(tmp_path / "lib", rel)


# Exceptions Pillow's plugins and pillow-heif raise from inside a decoder, beyond OSError.
DECODER_EXCEPTIONS = [NotImplementedError("Unimplemented pixel format"), RuntimeError("Unsupported feature"),
                      AssertionError(), RecursionError("maximum recursion depth exceeded"), ZeroDivisionError(),
                      struct.error("unpack requires a buffer"), OverflowError("Python int too large"),
                      MemoryError()]


@pytest.mark.parametrize("exc", DECODER_EXCEPTIONS, ids=lambda e: type(e).__name__)
def test_any_exception_from_a_decoder_is_an_image_error(tmp_path, monkeypatch, exc):
    path = photo(tmp_path, "p.png")

    def broken_load(self):
        raise exc

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", broken_load)
    with pytest.raises(ImageError, match=f"^malformed image \\({type(exc).__name__}") as raised:
        load_image(path, (224, 224))
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("maker,name", [(hostile.dds_unsupported, "t.jpg"), (hostile.blp_bad_encoding, "b.png"),
                                        (hostile.heic_garbage, "g.heic"), (hostile.tiff_many_samples, "s.tif")])
def test_issue_9s_files_are_image_errors_and_pillow_prints_nothing(tmp_path, capfd, caplog, maker, name):
    (tmp_path / name).write_bytes(maker())
    with pytest.raises(ImageError, match="^not a photo Pillow can read"):
        load_image(tmp_path / name, (224, 224))
    assert "More samples per pixel" not in caplog.text + "".join(capfd.readouterr())


def _saved(fmt: str, mode: str = "RGB", size=(48, 40)) -> bytes:
    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), np.uint8))
    img = img.quantize(16) if mode == "P" else img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


PHOTO_SAMPLES = {fmt: _saved(fmt) for fmt in ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "HEIF")}
OTHER_FORMATS = {fmt: _saved(fmt, mode) for fmt, mode in [("DDS", "RGB"), ("BLP", "P"), ("PCX", "RGB"),
                                                          ("TGA", "RGB"), ("SGI", "RGB"), ("QOI", "RGB"),
                                                          ("ICO", "RGB"), ("PPM", "RGB"), ("IM", "RGB"),
                                                          ("SPIDER", "F"), ("MSP", "1"), ("XBM", "1")]}


@pytest.mark.parametrize("fmt", sorted(OTHER_FORMATS))
def test_formats_that_are_not_photos_are_not_read_whatever_the_name(tmp_path, fmt):
    (tmp_path / "x.jpg").write_bytes(OTHER_FORMATS[fmt])
    with pytest.raises(ImageError, match="^not a photo Pillow can read"):
        load_image(tmp_path / "x.jpg", (224, 224))


@pytest.mark.parametrize("fmt", sorted(PHOTO_SAMPLES))
def test_every_photo_format_decodes_whatever_the_name(tmp_path, fmt):
    (tmp_path / "x.png").write_bytes(PHOTO_SAMPLES[fmt])
    assert load_image(tmp_path / "x.png", (32, 32)).shape == (32, 32, 3)


@settings(max_examples=150, deadline=None)
@given(fmt=st.sampled_from(sorted(PHOTO_SAMPLES) + sorted(OTHER_FORMATS)), data=st.data())
def test_a_corrupted_file_of_any_format_decodes_or_is_one_image_error(fmt, data):
    """Truncated at any point, or bytes overwritten anywhere: an array or ImageError, never another exception."""
    sample = {**PHOTO_SAMPLES, **OTHER_FORMATS}[fmt]
    cut = data.draw(st.integers(0, len(sample)), label="truncated at")
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(sample) - 1), st.integers(0, 255)), max_size=8))
    broken = bytearray(sample[:cut])
    for at, value in flips:
        if at < len(broken):
            broken[at] = value
    try:
        arr = load_image(io.BytesIO(bytes(broken)), (32, 32))
    except ImageError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert arr.shape == (32, 32, 3) and arr.dtype == np.uint8


# --- bounds ------------------------------------------------------------------------------------------------------

def spy_on_decoding(monkeypatch) -> list[str]:
    """The formats of the files whose pixels get decoded from now on."""
    from PIL import ImageFile

    decoded, seen, real = [], set(), ImageFile.ImageFile.load

    def load(self):
        if id(self) not in seen:  # load() is called again on a loaded image; count each file once
            seen.add(id(self))
            decoded.append(self.format)
        return real(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return decoded


def test_pixel_limits_refuse_before_decoding(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 1_000_000)
    monkeypatch.setattr(images, "MAX_JPEG_PIXELS", 4_000_000)
    photo(tmp_path, "a.png", size=(1001, 1000))  # 1.001 MP: over the full-decode limit
    photo(tmp_path, "b.jpg", size=(2000, 1500))  # 3 MP: under the JPEG limit
    photo(tmp_path, "c.jpg", size=(2001, 2000))  # 4.002 MP: over it
    decoded = spy_on_decoding(monkeypatch)
    with pytest.raises(ImageError, match=r"^too large: 1001 x 1000 pixels \(1 MP\) is over the 1 MP limit for PNG"):
        load_image(tmp_path / "a.png", (224, 224))
    assert load_image(tmp_path / "b.jpg", (224, 224)).shape == (224, 224, 3)
    with pytest.raises(ImageError, match=r"^too large: 2001 x 2000 pixels \(4 MP\) is over the 4 MP limit for JPEG"):
        load_image(tmp_path / "c.jpg", (224, 224))
    assert decoded == ["JPEG"]  # only b.jpg was decoded


def test_the_default_pixel_limits_are_below_pillows():
    assert images.MAX_PIXELS < Image.MAX_IMAGE_PIXELS and images.MAX_JPEG_PIXELS < 2 * Image.MAX_IMAGE_PIXELS


@settings(max_examples=30, deadline=None)
@given(extra=st.integers(0, 120), junk=st.binary(max_size=300), mode=st.sampled_from(["L", "RGB"]))
def test_count_jpeg_scans_counts_start_of_scan_markers_only(extra, junk, mode):
    """libjpeg's progression writes 6 scans for greyscale and 10 for colour; `extra` refinement scans are added,
    and an APP segment full of FF DA bytes (as an EXIF thumbnail has) is not counted."""
    data = hostile._jpeg_bytes(Image.new(mode, (64, 48), 90), progressive=True)
    segments = hostile.jpeg_segments(data)
    last = max(i for i, (m, _) in enumerate(segments) if m == 0xDA)
    app = b"Exif\x00\x00" + junk + b"\xff\xda" * 20
    body = b"".join(s for _, s in segments) + (segments[last - 1][1] + segments[last][1]) * extra
    jpeg = b"\xff\xd8" + b"\xff\xe1" + struct.pack(">H", len(app) + 2) + app + body + b"\xff\xd9"
    expected = {"L": 6, "RGB": 10}[mode] + extra
    assert count_jpeg_scans(io.BytesIO(jpeg), 1000) == expected
    assert count_jpeg_scans(io.BytesIO(jpeg), 8) == min(expected, 9)  # stops once past the limit


def test_a_progressive_jpeg_scan_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.jpg"
    bomb.write_bytes(hostile.progressive_scan_bomb(2000))
    decoded = spy_on_decoding(monkeypatch)
    with pytest.raises(ImageError, match="^progressive JPEG with over 50 scans .*CPU bomb"):
        load_image(bomb, (224, 224))
    assert not decoded
    fine = tmp_path / "fine.jpg"
    fine.write_bytes(hostile.progressive_scan_bomb(images.MAX_JPEG_SCANS - 6))  # exactly at the limit
    assert load_image(fine, (224, 224)).shape == (224, 224, 3)


def test_a_photo_needing_more_than_the_budget_is_refused(tmp_path):
    photo(tmp_path, "p.png", size=(1000, 1000))  # RGB: 4 bytes a pixel in Pillow, so at least 4 MB
    with pytest.raises(ImageError, match=r"^would need about \d+ MiB to decode, over the 2 MiB limit"):
        load_image(tmp_path / "p.png", (224, 224), budget=MemoryBudget(2 * 2**20))


def test_decodes_wait_for_their_share_of_the_budget():
    budget = MemoryBudget(100)
    inside, most = [0], [0]
    lock = threading.Lock()
    release = threading.Event()

    def decode(nbytes):
        with budget.reserve(nbytes):
            with lock:
                inside[0] += nbytes
                most[0] = max(most[0], inside[0])
            release.wait(0.05)
            with lock:
                inside[0] -= nbytes

    threads = [threading.Thread(target=decode, args=(n,)) for n in (60, 60, 30, 30, 90, 10, 100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert most[0] <= 100 and budget.used == 0


def test_a_share_held_by_a_hung_decode_defers_what_cannot_fit_instead_of_waiting_forever():
    budget = MemoryBudget(100)
    hung, done = threading.Event(), threading.Event()

    def hang():
        with budget.reserve(70):
            hung.set()
            done.wait(10)

    thread = threading.Thread(target=hang, daemon=True)
    thread.start()
    hung.wait(5)
    budget.give_up(thread.ident)
    with budget.reserve(30):  # fits beside it
        pass
    got = finishes(lambda: budget.reserve(31).__enter__())
    assert isinstance(got.get("error"), images.DecodeDeferred)
    done.set()
    thread.join(5)
    with budget.reserve(100):  # the hung decode ended: its share is back
        pass
