"""Thumbnails: made from the fingerprint step's one decode, their quality measures kept in them, written only into
our folders, removed when their photo is gone."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photocluster import fingerprint, images
from photocluster.fingerprint import fingerprint_photos, thumbnail_photos
from photocluster.images import Fit, Fitted, load_image_sizes
from photocluster.library import PhotoFile
from photocluster.thumbs import (THUMB_BOX, Quality, encode, measure, read_quality, remove_stale, thumb_name,
                                 thumb_writer, thumbs_folder)

from .conftest import StandInModel, save, scene


class ListSink:
    def __init__(self):
        self.vectors, self.failures = {}, {}

    def put(self, photo, vector, predictions, detections=None, producer=None):
        self.vectors[photo.rel] = vector

    def put_failure(self, photo, reason):
        self.failures[photo.rel] = reason


def photo_file(root: Path, rel: str) -> PhotoFile:
    st = (root / rel).stat()
    return PhotoFile(rel, st.st_size, st.st_mtime_ns)


def fitted(grey: np.ndarray, width: int = 4000, height: int = 3000) -> Fitted:
    return Fitted(np.repeat(grey[:, :, None], 3, axis=2), width, height, grey)


def test_one_decode_gives_the_model_sizes_and_a_thumbnail_in_the_photo_s_proportions(tmp_path):
    path = save(scene(1, size=(800, 400)), tmp_path / "wide.jpg", quality=95)
    model, thumb = load_image_sizes(path, [(32, 32), Fit((256, 256))])
    assert model.shape == (32, 32, 3)
    assert isinstance(thumb, Fitted)
    assert thumb.pixels.shape == (128, 256, 3)  # 800 x 400 shrunk within 256 x 256: 256 x 128
    assert (thumb.width, thumb.height) == (800, 400)  # the photo's own size
    assert max(thumb.detail.shape) <= images.DETAIL_BOX and thumb.detail.ndim == 2


def test_a_sideways_photo_gives_an_upright_thumbnail_and_size(tmp_path):
    exif = Image.Exif()
    exif[images.EXIF_ORIENTATION] = 6  # stored landscape, shown rotated a quarter turn: portrait
    path = save(scene(2, size=(600, 300)), tmp_path / "turned.jpg", exif=exif)
    (thumb,) = load_image_sizes(path, [Fit((256, 256))])
    assert (thumb.width, thumb.height) == (300, 600)
    assert thumb.pixels.shape == (256, 128, 3)


def test_a_small_photo_is_never_enlarged(tmp_path):
    path = save(scene(3, size=(100, 50)), tmp_path / "small.png")
    (thumb,) = load_image_sizes(path, [Fit((256, 256))])
    assert thumb.pixels.shape == (50, 100, 3)


def test_sharpness_is_higher_for_a_sharp_photo_than_for_its_blurred_copy():
    checker = (np.indices((256, 256)).sum(axis=0) // 8 % 2 * 200 + 20).astype(np.uint8)
    blurred = np.asarray(Image.fromarray(checker).resize((32, 32), Image.Resampling.BOX)
                         .resize((256, 256), Image.Resampling.BICUBIC))
    assert measure(fitted(checker)).sharpness > 4 * measure(fitted(blurred)).sharpness


def test_clipping_counts_the_pixels_at_black_and_at_white():
    grey = np.full((100, 100), 128, np.uint8)
    grey[:20] = 255  # a blown sky
    grey[20:25] = 253  # ...to its edge, still clipped: a quarter in all
    grey[25:30] = 0  # crushed shadows
    grey[30:35] = 2  # ...still clipped: a tenth in all
    grey[35:40] = 252  # bright, not clipped
    grey[40:45] = 3  # dark, not clipped
    assert measure(fitted(grey)).clipped == pytest.approx(0.35)


def test_the_quality_travels_inside_the_thumbnail(tmp_path):
    grey = (np.indices((64, 96)).sum(axis=0) % 7 * 30).astype(np.uint8)
    expected = measure(fitted(grey, 1200, 800))
    (tmp_path / "a.jpg").write_bytes(encode(fitted(grey, 1200, 800)))
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        got = read_quality("a.jpg", fd)
        assert (got.width, got.height) == (1200, 800)
        assert got.sharpness == pytest.approx(expected.sharpness, abs=0.01)
        assert got.clipped == pytest.approx(expected.clipped, abs=1e-5)
        assert Image.open(tmp_path / "a.jpg").size == (96, 64)
        (tmp_path / "torn.jpg").write_bytes((tmp_path / "a.jpg").read_bytes()[:10])
        (tmp_path / "empty.jpg").write_bytes(b"")
        os.symlink(tmp_path / "a.jpg", tmp_path / "link.jpg")
        assert read_quality("torn.jpg", fd) is None and read_quality("empty.jpg", fd) is None
        assert read_quality("link.jpg", fd) is None  # never followed
        assert read_quality("missing.jpg", fd) is None
    finally:
        os.close(fd)


def test_a_thumbnail_is_named_by_the_photo_s_path_size_and_mtime():
    names = {thumb_name("a/b.jpg", 10, 5), thumb_name("a/b.jpg", 11, 5), thumb_name("a/b.jpg", 10, 6),
             thumb_name("a/c.jpg", 10, 5)}
    assert len(names) == 4 and thumb_name("a/b.jpg", 10, 5) == thumb_name("a/b.jpg", 10, 5)


def test_quality_records_are_checked():
    assert Quality.from_list([10, 20, 3.5, 0.1]) == Quality(10, 20, 3.5, 0.1)
    for bad in ([10, 20, 3.5], [0, 20, 1.0, 0.0], ["10", 20, 1.0, 0.0], [10, 20, -1.0, 0.0], None, [10, 20, True, 0]):
        with pytest.raises(ValueError):
            Quality.from_list(bad)


@pytest.fixture
def library(tmp_path):
    (tmp_path / "out").mkdir()  # the pipeline makes <out> before anything goes in it
    root = tmp_path / "lib"
    for i in range(5):
        save(scene(i, size=(640, 480)), root / f"p{i}.jpg")
    return root


def count_decodes(monkeypatch) -> list[str]:
    decoded = []
    real = images.load_image_sizes

    def counting(source, sizes, *args, **kwargs):
        decoded.append(getattr(source, "name", source))
        return real(source, sizes, *args, **kwargs)

    monkeypatch.setattr(images, "load_image_sizes", counting)
    return decoded


def test_fingerprinting_makes_each_thumbnail_from_its_one_decode(library, tmp_path, monkeypatch):
    decoded = count_decodes(monkeypatch)
    photos = [photo_file(library, f"p{i}.jpg") for i in range(5)]
    sink = ListSink()
    with thumb_writer(tmp_path / "out") as thumbs:
        fingerprint_photos(photos, library, StandInModel(), sink, thumbs=thumbs)
    assert len(decoded) == 5 and len(sink.vectors) == 5 and thumbs.made == 5
    folder = tmp_path / "out" / "gallery" / "thumbs"
    for photo in photos:
        thumb = Image.open(folder / thumb_name(photo.rel, photo.size, photo.mtime_ns))
        assert thumb.size == (256, 192)
    assert (folder / ".photocluster-folder").is_file() and (folder.parent / ".photocluster-folder").is_file()


def test_the_catch_up_pass_decodes_each_photo_once_and_fingerprints_nothing(library, tmp_path, monkeypatch):
    decoded = count_decodes(monkeypatch)
    photos = [photo_file(library, f"p{i}.jpg") for i in range(5)]
    (library / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    photos.append(photo_file(library, "broken.jpg"))
    with thumb_writer(tmp_path / "out") as thumbs:
        assert thumbnail_photos(photos, library, thumbs) == 5
    assert len(decoded) == 6 and thumbs.made == 5
    names = sorted(os.listdir(tmp_path / "out/gallery/thumbs"))
    assert names == sorted([".photocluster-folder"] + [thumb_name(p.rel, p.size, p.mtime_ns) for p in photos[:5]])


def test_a_thumbnail_that_cannot_be_written_never_fails_the_photo(library, tmp_path, caplog):
    photo = photo_file(library, "p0.jpg")
    out = tmp_path / "out"
    with thumbs_folder(out):
        pass
    os.symlink(tmp_path / "elsewhere", out / "gallery/thumbs" / thumb_name(photo.rel, photo.size, photo.mtime_ns))
    sink = ListSink()
    with thumb_writer(out) as thumbs:
        report = fingerprint_photos([photo], library, StandInModel(), sink, thumbs=thumbs)
    assert report.computed == 1 and not report.failed and thumbs.made == 0
    assert not (tmp_path / "elsewhere").exists()  # the planted link was not followed
    assert "could not write thumbnails" in caplog.text


def test_a_gallery_folder_of_someone_else_gets_no_thumbnails(tmp_path, caplog):
    (tmp_path / "out/gallery").mkdir(parents=True)
    (tmp_path / "out/gallery/holiday.txt").write_text("mine")
    with thumb_writer(tmp_path / "out") as thumbs:
        assert thumbs is None
    assert os.listdir(tmp_path / "out/gallery") == ["holiday.txt"]
    assert "no thumbnails" in caplog.text


def test_stale_thumbnails_go_and_nothing_else(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    keep, stale = "a" * 32 + ".jpg", "b" * 32 + ".jpg"
    with thumbs_folder(out) as fd:
        folder = out / "gallery/thumbs"
        for name in (keep, stale, "notes.txt", "." + stale + ".1234abcd.tmp"):
            (folder / name).write_bytes(b"x")
        os.symlink("/etc/passwd", folder / ("c" * 32 + ".jpg"))
        assert remove_stale(fd, {keep}, str(folder)) == 2  # the stale one, and the link's name (left: not ours)
    assert sorted(os.listdir(out / "gallery/thumbs")) == sorted([".photocluster-folder", keep, "notes.txt",
                                                                  "c" * 32 + ".jpg"])


def test_the_thumbnail_box_is_about_256_pixels():
    assert tuple(THUMB_BOX) == (256, 256) and isinstance(THUMB_BOX, Fit)
    assert fingerprint.ThumbMaker  # the protocol the pipeline's writers follow
