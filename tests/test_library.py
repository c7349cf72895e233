import os

from photocluster.library import PhotoFile, is_photo_name, scan_library


def test_finds_photos_by_extension_case_insensitive(fs):
    for name in ["a.jpg", "b.JPEG", "c.png", "d.bmp", "e.gif", "f.TIF", "g.tiff", "h.webp", "i.HEIC", "j.heif"]:
        fs.create_file(f"/lib/{name}", contents="x")
    fs.create_file("/lib/notes.txt")
    fs.create_file("/lib/movie.mp4")
    assert sorted(scan_library("/lib")) == ["a.jpg", "b.JPEG", "c.png", "d.bmp", "e.gif", "f.TIF", "g.tiff",
                                            "h.webp", "i.HEIC", "j.heif"]


def test_records_relative_path_size_and_mtime(fs):
    fs.create_file("/lib/2024/Lisbon/tram.jpg", contents="12345")
    os.utime("/lib/2024/Lisbon/tram.jpg", ns=(1_000_000_123, 2_000_000_456))
    assert scan_library("/lib") == {"2024/Lisbon/tram.jpg": PhotoFile("2024/Lisbon/tram.jpg", 5, 2_000_000_456)}


def test_skips_output_hidden_and_nas_folders(fs):
    for path in ["/lib/keep.jpg", "/lib/photocluster/clusters/x.jpg", "/lib/.hidden/y.jpg", "/lib/@eaDir/t.jpg",
                 "/lib/sub/.thumbs/z.jpg", "/lib/sub/ok.png"]:
        fs.create_file(path)
    assert sorted(scan_library("/lib", skip=("/lib/photocluster",))) == ["keep.jpg", "sub/ok.png"]


def test_does_not_follow_symlinked_folders_or_files(fs):
    fs.create_file("/lib/a/real.jpg")
    fs.create_file("/elsewhere/outside.jpg")
    os.symlink("/lib", "/lib/a/loop")
    os.symlink("/elsewhere", "/lib/out")
    os.symlink("/elsewhere/outside.jpg", "/lib/link.jpg")
    os.symlink("/nowhere.jpg", "/lib/dangling.jpg")
    assert list(scan_library("/lib")) == ["a/real.jpg"]


def test_partial_and_hidden_files_are_not_photos():
    assert not is_photo_name("IMG_1.jpg.part")
    assert not is_photo_name("IMG_1.jpg.crdownload")
    assert not is_photo_name("IMG_1.jpg~")
    assert not is_photo_name(".IMG_1.jpg")
    assert is_photo_name("IMG_1.JPG")


def test_photo_names_go_by_the_last_extension_only():
    assert is_photo_name("a..jpg") and is_photo_name("holiday.2024.Jpeg") and is_photo_name("ÉTÉ.HEIF")
    assert not is_photo_name("jpg") and not is_photo_name("a.jpg.") and not is_photo_name("a.jpg.txt")
    assert not is_photo_name("a.") and not is_photo_name("a.jpgx") and not is_photo_name("")


def test_unreadable_folder_is_a_warning_not_a_failure(tmp_path, caplog):
    (tmp_path / "ok.jpg").write_bytes(b"x")
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "p.jpg").write_bytes(b"x")
    locked.chmod(0)
    try:
        found = scan_library(tmp_path)
    finally:
        locked.chmod(0o755)
    assert "ok.jpg" in found
    if os.geteuid() != 0:  # root reads everything, so only an ordinary user sees the warning
        assert "locked" in caplog.text


def test_odd_names_survive(tmp_path):
    odd = ["with space.jpg", "new\nline.jpg", "-leading-dash.jpg", "ünïcode.jpg", "x" * 250 + ".jpg"]
    for name in odd:
        (tmp_path / name).write_bytes(b"x")
    raw = os.path.join(os.fsencode(tmp_path), b"bad\xff\xfebytes.jpg")
    with open(raw, "wb") as fh:
        fh.write(b"x")
    found = scan_library(tmp_path)
    assert set(odd) < set(found)
    assert os.fsdecode(b"bad\xff\xfebytes.jpg") in found
