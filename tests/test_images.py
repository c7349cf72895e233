import numpy as np
import pytest
from PIL import Image

from photocluster.images import ImageError, exif_time, load_image


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


def test_exif_time(tmp_path):
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = "2024:05:17 10:11:12"
    Image.new("RGB", (10, 10)).save(tmp_path / "e.jpg", exif=exif)
    assert exif_time(tmp_path, "e.jpg").isoformat() == "2024-05-17T10:11:12"
    assert exif_time(tmp_path, photo(tmp_path).name) is None
