import os
import struct
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from photocluster.capture import NO_CAPTURE, Capture, capture_time, read_capture

from .test_images import finishes

EXIF_IFD, MAKE, MODEL, DATETIME = 0x8769, 0x010F, 0x0110, 0x0132
ORIGINAL, OFFSET, SUBSEC = 0x9003, 0x9011, 0x9291


def shot(folder, name="p.jpg", original=None, subsec=None, offset=None, make=None, model=None, modified=None,
         **save):
    """A real JPEG (or PNG, by its name) whose EXIF holds exactly the tags given."""
    exif = Image.Exif()
    for tag, value in ((MAKE, make), (MODEL, model), (DATETIME, modified)):
        if value is not None:
            exif[tag] = value
    for tag, value in ((ORIGINAL, original), (SUBSEC, subsec), (OFFSET, offset)):
        if value is not None:
            exif.get_ifd(EXIF_IFD)[tag] = value
    path = folder / name
    Image.new("RGB", (64, 48), (200, 120, 40)).save(path, exif=exif.tobytes(), **save)  # bytes: PNG too
    return path


def test_time_with_subseconds_offset_and_camera(tmp_path):
    shot(tmp_path, original="2024:05:17 10:11:12", subsec="123", offset="+02:00", make="Canon",
         model="Canon EOS R6")
    got = read_capture(tmp_path, "p.jpg")
    two_hours_east = timezone(timedelta(hours=2))
    assert got.time == datetime(2024, 5, 17, 10, 11, 12, 123000, tzinfo=two_hours_east)
    assert got.time == datetime(2024, 5, 17, 8, 11, 12, 123000, tzinfo=timezone.utc)  # the same instant
    assert (got.make, got.model, got.camera) == ("Canon", "Canon EOS R6", ("Canon", "Canon EOS R6"))


def test_without_an_offset_the_time_is_naive(tmp_path):
    shot(tmp_path, original="2019:12:31 23:59:59", subsec="05")
    assert read_capture(tmp_path, "p.jpg").time == datetime(2019, 12, 31, 23, 59, 59, 50000)  # '05' is 0.05 s
    assert read_capture(tmp_path, "p.jpg").time.tzinfo is None


@pytest.mark.parametrize("offset,minutes", [("-05:30", -330), ("+00:00", 0), ("+14:00", 840), ("-09:45", -585)])
def test_offsets_east_and_west(tmp_path, offset, minutes):
    shot(tmp_path, original="2024:01:02 03:04:05", offset=offset)
    assert read_capture(tmp_path, "p.jpg").time.utcoffset() == timedelta(minutes=minutes)


@pytest.mark.parametrize("subsec,micro", [("1234567", 123456), ("7", 700000), ("000", 0), ("12 ", 120000),
                                          ("ab", 0), ("-5", 0), ("", 0), ("\u0661\u0662", 0)])
def test_subseconds_are_the_digits_after_the_point(subsec, micro):
    assert capture_time("2024:01:02 03:04:05", subsec).microsecond == micro


@pytest.mark.parametrize("offset", ["+25:00", "+15:00", "+02:60", "2:00", "+0200", "Z", "UTC", "  :  ", "+02:00x"])
def test_a_bad_offset_keeps_the_time_naive(offset):
    assert capture_time("2024:01:02 03:04:05", None, offset) == datetime(2024, 1, 2, 3, 4, 5)


@pytest.mark.parametrize("original", ["0000:00:00 00:00:00", "    :  :     :  :  ", "2024:13:01 10:00:00",
                                      "2024:02:30 10:00:00", "2024:01:01 25:00:00", "2024:01:01 10:61:00",
                                      "2024-01-01 10:00:00x", "17/05/2024 10:11", "", "\x00\x00", "2024",
                                      "2024:01:01 10:00:00" + "9" * 5000])
def test_garbage_times_are_none_but_the_camera_stays(tmp_path, original):
    shot(tmp_path, original=original, subsec="5", offset="+01:00", make="NIKON CORPORATION", model="NIKON D750")
    got = read_capture(tmp_path, "p.jpg")
    assert got.time is None
    assert got.camera == ("NIKON CORPORATION", "NIKON D750")


@pytest.mark.parametrize("value", [20240517, 3.5, (1, 2), b"\xff\xfe2024", None, ["2024:05:17 10:11:12"]])
def test_values_of_the_wrong_type_are_none(value):
    assert capture_time(value) is None


def test_padded_values_are_trimmed(tmp_path):
    shot(tmp_path, original="2024:05:17 10:11:12\x00", make="Canon\x00\x00  ", model="  EOS 5D ")
    got = read_capture(tmp_path, "p.jpg")
    assert (got.time, got.make, got.model) == (datetime(2024, 5, 17, 10, 11, 12), "Canon", "EOS 5D")


def test_no_capture_time_is_none_never_the_edit_time_or_the_mtime(tmp_path):
    path = shot(tmp_path, modified="2024:05:17 10:11:12", make="Apple")  # IFD0 DateTime: when it was last edited
    os.utime(path, (1_700_000_000, 1_700_000_000))
    got = read_capture(tmp_path, "p.jpg")
    assert got == Capture(None, "Apple", None)
    assert got.camera == ("Apple", "")


def test_a_photo_without_exif_has_nothing(tmp_path):
    Image.new("RGB", (32, 32)).save(tmp_path / "plain.jpg")
    assert read_capture(tmp_path, "plain.jpg") == NO_CAPTURE
    assert NO_CAPTURE.camera is None


@pytest.mark.parametrize("make", ["", "   ", "Can\non", "x" * 65, b"\xff\xd8"])
def test_unprintable_empty_or_huge_names_are_none(tmp_path, make):
    shot(tmp_path, original="2024:05:17 10:11:12", make=make, model="M1")
    got = read_capture(tmp_path, "p.jpg")
    assert (got.make, got.model) == (None, "M1")
    assert got.time == datetime(2024, 5, 17, 10, 11, 12)


def test_the_time_of_a_png_is_read_without_decoding_its_pixels(tmp_path, monkeypatch):
    shot(tmp_path, "p.png", original="2024:05:17 10:11:12", offset="-03:00")

    def refuse(self):
        raise AssertionError("a capture time must not cost a decode")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", refuse)
    assert read_capture(tmp_path, "p.png").time == datetime(2024, 5, 17, 10, 11, 12,
                                                            tzinfo=timezone(timedelta(hours=-3)))


def test_a_png_without_exif_before_its_pixels_is_not_decoded_for_it(tmp_path, monkeypatch):
    Image.new("RGB", (64, 64)).save(tmp_path / "p.png")
    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", lambda self: pytest.fail("decoded"))
    assert read_capture(tmp_path, "p.png") == NO_CAPTURE


def _jpeg_with_app1(tmp_path, payload: bytes):
    body = (tmp_path / "plain.jpg").read_bytes() if (tmp_path / "plain.jpg").exists() else None
    if body is None:
        Image.new("RGB", (32, 32)).save(tmp_path / "plain.jpg")
        body = (tmp_path / "plain.jpg").read_bytes()
    segment = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    (tmp_path / "bad.jpg").write_bytes(body[:2] + segment + body[2:])


@pytest.mark.parametrize("payload", [
    b"Exif\x00\x00garbage that is no TIFF header",
    b"Exif\x00\x00II*\x00\xff\xff\xff\x7f",                              # IFD0 far past the end
    b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x01\x87\x69\x00\x04\x00\x00\x00\x01\x7f\xff\xff\xff",  # Exif IFD ditto
    b"Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff" + b"\x00" * 12,       # 65535 entries announced, none there
    b"Exif\x00\x00",
])
def test_malformed_exif_is_no_capture_not_an_exception(tmp_path, payload):
    _jpeg_with_app1(tmp_path, payload)
    assert read_capture(tmp_path, "bad.jpg") == NO_CAPTURE


def _tiff_ifd0(*entries):
    """A little-endian TIFF header and IFD0 holding `entries` of (tag, type, count, 4-byte value)."""
    body = b"II*\x00" + struct.pack("<IH", 8, len(entries))
    for tag, kind, count, value in entries:
        body += struct.pack("<HHI", tag, kind, count) + value
    return body + struct.pack("<I", 0)


@pytest.mark.parametrize("pointer", [(4, 1, struct.pack("<I", 0x7FFFFFFF)),   # past the end
                                     (2, 4, b"abc\x00"),                      # text, not an offset
                                     (4, 2, struct.pack("<I", 8)),             # two offsets
                                     (4, 1, struct.pack("<I", 8))])            # back to IFD0 itself
def test_a_broken_exif_ifd_pointer_leaves_the_camera_readable(tmp_path, pointer):
    _jpeg_with_app1(tmp_path, b"Exif\x00\x00" + _tiff_ifd0((MAKE, 2, 4, b"Cam\x00"), (EXIF_IFD, *pointer)))
    assert read_capture(tmp_path, "bad.jpg") == Capture(None, "Cam", None)


@pytest.mark.parametrize("content", [b"", b"not a photo", b"\xff\xd8\xff\xe1\x00"])
def test_a_file_that_is_no_photo_is_no_capture(tmp_path, content):
    (tmp_path / "x.jpg").write_bytes(content)
    assert read_capture(tmp_path, "x.jpg") == NO_CAPTURE


def test_a_missing_photo_or_a_path_out_of_the_library_is_no_capture(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    shot(tmp_path, "outside.jpg", original="2024:05:17 10:11:12")
    assert read_capture(lib, "gone.jpg") == NO_CAPTURE
    assert read_capture(lib, "../outside.jpg") == NO_CAPTURE


def test_a_symlink_is_not_followed_and_a_fifo_does_not_block(tmp_path):
    shot(tmp_path, "outside.jpg", original="2024:05:17 10:11:12", make="Canon")
    lib = tmp_path / "lib"
    (lib / "d").mkdir(parents=True)
    os.symlink(tmp_path / "outside.jpg", lib / "link.jpg")
    os.symlink(tmp_path, lib / "linked-folder")
    os.mkfifo(lib / "d" / "pipe.jpg")
    assert read_capture(lib, "link.jpg") == NO_CAPTURE
    assert read_capture(lib, "linked-folder/outside.jpg") == NO_CAPTURE
    assert finishes(lambda: read_capture(lib, "d/pipe.jpg")) == {"value": NO_CAPTURE}


instants = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 12, 31))
offsets = st.integers(-14 * 60, 14 * 60)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(when=instants, micro=st.integers(0, 999_999), offset=st.one_of(st.none(), offsets))
def test_any_written_capture_time_reads_back(tmp_path, when, micro, offset):
    """Every valid DateTimeOriginal, six-digit SubSecTimeOriginal and OffsetTimeOriginal written with Pillow is
    the datetime read back."""
    zone = None if offset is None else timezone(timedelta(minutes=offset))
    text_offset = None
    if offset is not None:
        text_offset = f"{'-' if offset < 0 else '+'}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}"
    shot(tmp_path, original=when.strftime("%Y:%m:%d %H:%M:%S"), subsec=f"{micro:06d}", offset=text_offset)
    assert read_capture(tmp_path, "p.jpg").time == when.replace(microsecond=micro, tzinfo=zone)


@settings(max_examples=200, deadline=None)
@given(original=st.one_of(st.text(max_size=40), st.binary(max_size=40), st.integers(), st.none()),
       subsec=st.one_of(st.text(max_size=12), st.binary(max_size=12), st.none()),
       offset=st.one_of(st.text(max_size=10), st.none()))
def test_no_value_makes_capture_time_raise(original, subsec, offset):
    got = capture_time(original, subsec, offset)
    assert got is None or isinstance(got, datetime)
