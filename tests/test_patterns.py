"""Object patterns: mining against brute force, the file formats, the incremental update, and real photos."""
from __future__ import annotations

import itertools
import logging
import os
import re
import subprocess
import sys
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings as hsettings, strategies as st
from PIL import Image, ImageOps

from photocluster.labels import class_labels, top_labels
from photocluster.patterns import (
    FOLDER_MARK, LIBRARY_DIR, OUR_FILES, PATTERNS, PHOTOS, ROOT_DIR, SUMMARY, TRANSACTIONS, PatternSettings, escape_name,
    format_patterns, mine_maximal, mirror_parts, parse_min_support, photo_objects, read_patterns, read_photo_names,
    unescape_name, update_patterns,
)

FINE = class_labels("fine")
INDEX = {name: index for index, name in enumerate(FINE)}


def labels(*pairs: tuple[str, float]) -> tuple[tuple[int, float], ...]:
    """Model labels from (fine class name, probability) pairs."""
    return tuple((INDEX[name], probability) for name, probability in pairs)


# --- mining ---------------------------------------------------------------------------------

def brute_force_maximal(transactions: list[frozenset[str]], min_count: int) -> dict[frozenset[str], int]:
    items = sorted(set().union(*transactions)) if transactions else []
    frequent = {}
    for size in range(1, len(items) + 1):
        for itemset in map(frozenset, itertools.combinations(items, size)):
            count = sum(1 for transaction in transactions if itemset <= transaction)
            if count >= min_count:
                frequent[itemset] = count
    return {itemset: count for itemset, count in frequent.items() if not any(itemset < other for other in frequent)}


transactions_strategy = st.lists(st.frozensets(st.sampled_from("abcdefg"), max_size=7), max_size=24)


@given(transactions=transactions_strategy, min_count=st.integers(1, 26))
@hsettings(max_examples=300, deadline=None)
def test_mined_maximal_itemsets_equal_brute_force(transactions, min_count):
    mined = mine_maximal(transactions, min_count)
    assert {frozenset(items): count for items, count in mined} == brute_force_maximal(transactions, min_count)
    assert len(mined) == len({frozenset(items) for items, _ in mined})
    supports = [count for _, count in mined]
    assert supports == sorted(supports, reverse=True)


def test_single_item_maximal_itemsets_are_reported():
    # PAMI's MaxFPGrowth drops transactions of one item and so would lose {dog}
    transactions = [{"dog"}, {"dog"}, {"dog"}, {"car", "tram"}, {"car", "tram"}]
    assert mine_maximal(transactions, 2) == [(("dog",), 3), (("car", "tram"), 2)]
    assert mine_maximal(transactions, 4) == []
    assert mine_maximal([], 1) == [] and mine_maximal([set(), set()], 1) == []


def test_items_in_a_pattern_go_most_frequent_first():
    transactions = [{"a", "b"}, {"a", "b"}, {"b"}]
    assert mine_maximal(transactions, 2) == [(("b", "a"), 2)]


# --- settings and transactions --------------------------------------------------------------

def test_settings_validate_with_messages_naming_the_setting():
    for bad in (0, -0.1, 1.5, float("nan"), "0.2", True):
        with pytest.raises(ValueError, match="threshold"):
            PatternSettings(min_probability=bad)
    for bad in (0, -1, 2.5, float("inf"), "3", True):
        with pytest.raises(ValueError, match="min_support"):
            PatternSettings(min_support=bad)
    with pytest.raises(ValueError, match="labels"):
        PatternSettings(level="medium")
    assert PatternSettings() == PatternSettings(0.2, 0.05, "coarse")


def test_min_support_count_or_fraction():
    assert PatternSettings(min_support=5).min_count(3) == 5
    assert PatternSettings(min_support=1).min_count(100) == 1
    assert PatternSettings(min_support=3.0).min_count(100) == 3
    assert PatternSettings(min_support=0.1).min_count(30) == 3  # not 4, though 0.1 * 30 > 3 in floating point
    assert PatternSettings(min_support=0.1).min_count(42) == 5
    assert PatternSettings(min_support=0.1).min_count(5) == 2  # a fraction never asks for fewer than 2 photos
    assert PatternSettings(min_support=0.5).min_count(0) == 2


def test_parse_min_support():
    assert parse_min_support("5") == 5 and isinstance(parse_min_support("5"), int)
    assert parse_min_support("0.1") == 0.1
    assert parse_min_support("10%") == pytest.approx(0.1)
    for bad in ("1.5", "abc", "0", "-2", "150%"):
        with pytest.raises(ValueError, match="min_support"):
            parse_min_support(bad)


def test_photo_objects_threshold_roll_up_and_collapse():
    names = class_labels("coarse")
    photo = labels(("tabby", 0.3), ("tiger cat", 0.45), ("Egyptian cat", 0.2), ("sports car", 0.19))
    # threshold inclusive; three cat classes collapse into one item that keeps the highest probability
    assert photo_objects(photo, names, 0.2) == {"cat": 0.45}
    assert list(photo_objects(photo, FINE, 0.2)) == ["tiger cat", "tabby", "Egyptian cat"]
    assert photo_objects(photo, names, 0.5) == {} and photo_objects(None, names, 0.2) == {}


# --- file formats ---------------------------------------------------------------------------

all_labels = sorted(set(class_labels("fine")) | set(class_labels("coarse")))
patterns_strategy = st.lists(st.tuples(st.lists(st.sampled_from(all_labels), min_size=1, max_size=5, unique=True)
                                       .map(tuple), st.integers(1, 10**6)), max_size=30)


@given(patterns=patterns_strategy)
@hsettings(max_examples=100, deadline=None)
def test_patterns_file_round_trips(tmp_path_factory, patterns):
    path = tmp_path_factory.mktemp("p") / PATTERNS
    path.write_text(format_patterns(patterns), encoding="utf-8")
    assert read_patterns(path) == patterns


def test_reader_takes_pamis_own_layout(tmp_path):
    path = tmp_path / "pami.txt"
    path.write_text("refrigerator\tmicrowave\t:11 \ndog\t:3 \n", encoding="utf-8")  # MaxFPGrowth.savePatterns
    assert read_patterns(path) == [(("refrigerator", "microwave"), 11), (("dog",), 3)]
    path.write_text("no support here\n", encoding="utf-8")
    with pytest.raises(ValueError, match="items:support"):
        read_patterns(path)


file_names = st.binary(min_size=1, max_size=30).filter(lambda b: b"/" not in b and b"\0" not in b).map(os.fsdecode)


@given(name=st.one_of(file_names, st.text(min_size=1)))
def test_escaped_names_are_one_line_of_utf8_and_round_trip(name):
    escaped = escape_name(name)
    escaped.encode("utf-8")  # no surrogates left
    assert "\n" not in escaped and "\r" not in escaped and "\t" not in escaped
    assert unescape_name(escaped) == name


def test_mirror_folders_cannot_collide_with_reserved_ones():
    assert mirror_parts("") == (ROOT_DIR,)
    assert mirror_parts("2024/Lisbon") == ("2024", "Lisbon")
    assert mirror_parts("_root") == ("__root",) and mirror_parts("_library/x") == ("__library", "x")
    assert mirror_parts("__a/_b/c_") == ("___a", "__b", "c_")
    assert mirror_parts("trip/summary.md/patterns.txt") == ("trip", "_summary.md", "_patterns.txt")


# --- update_patterns on disk ----------------------------------------------------------------

def make_library(root: Path, photos: dict[str, object]) -> None:
    for rel in photos:
        path = root / os.fsencode(rel).decode("utf-8", "surrogateescape")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not really a jpeg " + os.fsencode(rel))


LISBON = {
    "2024/Lisbon/tram1.jpg": labels(("streetcar", 0.7), ("street sign", 0.25), ("cab", 0.1)),
    "2024/Lisbon/tram2.jpg": labels(("streetcar", 0.5), ("street sign", 0.45)),
    "2024/Lisbon/tram3.jpg": labels(("streetcar", 0.6), ("street sign", 0.3), ("tabby", 0.21)),
    "2024/Lisbon/beach1.jpg": labels(("seashore", 0.6), ("sandbar", 0.3)),
    "2024/Lisbon/beach2.jpg": labels(("seashore", 0.5), ("sandbar", 0.4)),
    "2024/Lisbon/blurry.jpg": labels(("window screen", 0.05)),
}
PETS = {
    "pets/a.jpg": labels(("tabby", 0.6), ("tiger cat", 0.3)),
    "pets/b.jpg": labels(("Egyptian cat", 0.5), ("Chihuahua", 0.3)),
    "pets/c.jpg": labels(("pug", 0.8)),
    "pets/d.jpg": labels(("beagle", 0.4), ("Siamese cat", 0.35)),
}
ROOT_PHOTOS = {"scan.jpg": labels(("envelope", 0.9))}


def folder_files(out: Path, *parts: str) -> dict[str, tuple[int, int]]:
    """name -> (inode, mtime_ns) of our files in one summary folder: an atomic rewrite changes the inode."""
    folder = out / "patterns" / Path(*parts)
    return {name: (os.stat(folder / name).st_ino, os.stat(folder / name).st_mtime_ns) for name in OUR_FILES}


def links_in(summary: Path) -> list[str]:
    return re.findall(r"\]\(([^)]+)\)", summary.read_text(encoding="utf-8"))


def test_writes_the_four_files_for_each_folder_and_the_library(tmp_path):
    library, photos = tmp_path / "lib", {**LISBON, **PETS, **ROOT_PHOTOS}
    make_library(library, photos)
    out = library / "photocluster"
    report = update_patterns(out, photos, PatternSettings(min_support=2), library)
    assert sorted(report.folders_written) == ["", "2024/Lisbon", "pets"] and report.library_written
    assert report.written == 4 and report.photos == 11

    lisbon = out / "patterns" / "2024" / "Lisbon"
    assert sorted(os.listdir(lisbon)) == sorted(OUR_FILES + (FOLDER_MARK,))
    names = read_photo_names(lisbon / PHOTOS)
    lines = (lisbon / TRANSACTIONS).read_text(encoding="utf-8").split("\n")[:-1]
    assert names == sorted(rel.rsplit("/", 1)[1] for rel in LISBON)
    assert dict(zip(names, lines)) == {"beach1.jpg": "seashore,sandbar", "beach2.jpg": "seashore,sandbar",
                                       "blurry.jpg": "", "tram1.jpg": "tram,street sign",
                                       "tram2.jpg": "tram,street sign", "tram3.jpg": "tram,street sign,cat"}
    assert read_patterns(lisbon / PATTERNS) == [(("tram", "street sign"), 3), (("seashore", "sandbar"), 2)]
    summary = (lisbon / SUMMARY).read_text(encoding="utf-8")
    assert "**tram + street sign**: 3 photos" in summary and "**seashore + sandbar**: 2 photos" in summary
    assert "- **tram**: 3 photos (50%)" in summary

    # cats and dogs roll up, a photo's two cat classes count once; {cat} and {dog} (3 photos each) are not maximal
    pets = out / "patterns" / "pets"
    assert read_patterns(pets / PATTERNS) == [(("dog", "cat"), 2)]
    assert (pets / TRANSACTIONS).read_text(encoding="utf-8") == "cat\ncat,dog\ndog\ndog,cat\n"

    root = out / "patterns" / ROOT_DIR
    assert read_photo_names(root / PHOTOS) == ["scan.jpg"]
    whole = out / "patterns" / LIBRARY_DIR
    assert read_photo_names(whole / PHOTOS) == sorted(photos)
    assert read_patterns(whole / PATTERNS) == [(("tram", "street sign"), 3), (("cat", "dog"), 2),
                                               (("seashore", "sandbar"), 2)]
    index = (whole / SUMMARY).read_text(encoding="utf-8")
    assert "](../2024/Lisbon/summary.md), 6 photos: tram + street sign in 3 photos" in index
    assert "](../_root/summary.md), 1 photo" in index


def test_the_library_is_never_written(tmp_path):
    library, photos = tmp_path / "lib", {**LISBON, **PETS, **ROOT_PHOTOS}
    make_library(library, photos)
    before = {path: path.read_bytes() for path in library.rglob("*") if path.is_file()}
    for out in (library / "photocluster", tmp_path / "elsewhere"):
        update_patterns(out, photos, PatternSettings(), library)
        update_patterns(out, dict(PETS), PatternSettings(), library)
    after = {path: path.read_bytes() for path in library.rglob("*")
             if path.is_file() and "photocluster" not in path.relative_to(library).parts}
    assert after == before
    assert {path.name for path in (library / "photocluster").iterdir()} == {"patterns"}


def test_photo_links_resolve_from_the_summary(tmp_path):
    odd = {
        "2024/Lisbon/tram (1) #a%20.jpg": labels(("streetcar", 0.7)),
        "2024/Lisbon/new\nline [x].jpg": labels(("streetcar", 0.7)),
        os.fsdecode(b"caf\xe9/\xff\xfe.jpg"): labels(("espresso", 0.9)),
        os.fsdecode(b"caf\xe9/ok.jpg"): labels(("espresso", 0.9)),
        "root.jpg": labels(("espresso", 0.9)),
        "root2.jpg": labels(("espresso", 0.9)),
    }
    library = tmp_path / "my lib"
    make_library(library, odd)
    for out in (library / "photocluster", tmp_path / "out" / "deeper"):
        update_patterns(out, odd, PatternSettings(), library)
        summaries = [path for path in (out / "patterns").rglob(SUMMARY)]
        assert len(summaries) == 4
        checked = 0
        for summary in summaries:
            for link in links_in(summary):
                target = os.path.join(os.fsencode(summary.parent), urllib.parse.unquote_to_bytes(link))
                assert os.path.exists(target), (summary, link)
                checked += 1
        assert checked >= 12


def test_odd_folder_names_are_mirrored_safely(tmp_path):
    photos = {
        "_root/a.jpg": labels(("tabby", 0.9)),  # a real folder with a reserved-looking name
        "_library/b.jpg": labels(("tabby", 0.9)),
        "new\nline/c.jpg": labels(("tabby", 0.9)),
        os.fsdecode(b"\xff\xfe dir/d.jpg"): labels(("tabby", 0.9)),
        "e.jpg": labels(("tabby", 0.9)),
        "trip/y.jpg": labels(("tabby", 0.9)),
        "trip/summary.md/x.jpg": labels(("tabby", 0.9)),  # a folder named like one of our files
    }
    out = tmp_path / "out"
    assert update_patterns(out, photos, PatternSettings(), tmp_path / "lib").written == 8
    top = set(os.listdir(os.fsencode(out / "patterns")))
    assert top == {b"__root", b"__library", b"new\nline", b"\xff\xfe dir", b"trip", b"_root", b"_library",
                   b".state.json"}
    assert read_photo_names(out / "patterns" / "trip" / PHOTOS) == ["y.jpg"]
    assert read_photo_names(out / "patterns" / "trip" / "_summary.md" / PHOTOS) == ["x.jpg"]
    assert read_photo_names(out / "patterns" / "__root" / PHOTOS) == ["a.jpg"]
    assert read_photo_names(out / "patterns" / ROOT_DIR / PHOTOS) == ["e.jpg"]
    assert read_photo_names(out / "patterns" / LIBRARY_DIR / PHOTOS) == sorted(photos)
    index = (out / "patterns" / LIBRARY_DIR / SUMMARY).read_text(encoding="utf-8").split("## Folders\n\n")[1]
    assert all(line.startswith("- [") for line in index.splitlines())  # a newline in a name stays escaped
    assert "- [new\\\\nline](../new%0Aline/summary.md), 1 photo" in index


def test_changing_one_folder_rewrites_only_that_folder(tmp_path):
    library, photos = tmp_path / "lib", {**LISBON, **PETS, **ROOT_PHOTOS}
    out, settings = tmp_path / "out", PatternSettings(min_support=2)
    update_patterns(out, photos, settings, library)
    before = {parts: folder_files(out, *parts) for parts in [("2024", "Lisbon"), ("pets",), (ROOT_DIR,),
                                                             (LIBRARY_DIR,)]}

    again = update_patterns(out, photos, settings, library)
    assert again.written == 0 and again.folders_unchanged == 3
    assert {parts: folder_files(out, *parts) for parts in before} == before

    photos["pets/e.jpg"] = labels(("tabby", 0.9))
    changed = update_patterns(out, photos, settings, library)
    assert changed.folders_written == ["pets"] and changed.library_written and changed.folders_unchanged == 2
    assert folder_files(out, "2024", "Lisbon") == before[("2024", "Lisbon")]
    assert folder_files(out, ROOT_DIR) == before[(ROOT_DIR,)]
    for parts in [("pets",), (LIBRARY_DIR,)]:
        assert all(new[0] != old[0] for new, old in zip(folder_files(out, *parts).values(), before[parts].values()))
    assert read_photo_names(out / "patterns" / "pets" / PHOTOS) == ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"]

    # a summary file that went missing is written again; new settings rewrite everything
    (out / "patterns" / "2024" / "Lisbon" / SUMMARY).unlink()
    assert update_patterns(out, photos, settings, library).folders_written == ["2024/Lisbon"]
    assert update_patterns(out, photos, PatternSettings(min_support=3), library).written == 4


def test_a_folder_with_no_photos_left_loses_its_summary(tmp_path, caplog):
    library, photos = tmp_path / "lib", {**LISBON, **PETS, **ROOT_PHOTOS, "2024/Porto/x.jpg": labels(("cab", 0.5))}
    out = tmp_path / "out"
    update_patterns(out, photos, PatternSettings(), library)
    (out / "patterns" / "pets" / "my notes.txt").write_text("mine")  # not ours: stays, and so does its folder
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / SUMMARY).write_text("keep me")
    os.symlink(outside, out / "patterns" / "linked")  # a symlinked folder is never followed

    remaining = {rel: value for rel, value in photos.items() if rel.startswith("2024/Porto/")}
    report = update_patterns(out, remaining, PatternSettings(), library)
    assert report.folders_removed == ["2024/Lisbon", "_root", "pets"]
    assert sorted(os.listdir(out / "patterns")) == [".state.json", "2024", "_library", "linked", "pets"]
    assert sorted(os.listdir(out / "patterns" / "2024")) == [FOLDER_MARK, "Porto"]
    assert sorted(os.listdir(out / "patterns" / "pets")) == [FOLDER_MARK, "my notes.txt"]  # still ours
    assert (outside / SUMMARY).read_text() == "keep me"

    assert update_patterns(out, {}, PatternSettings(), library).folders_removed == ["2024/Porto", "_library"]
    assert sorted(os.listdir(out / "patterns")) == [".state.json", "linked", "pets"]


def test_a_symlinked_mirror_folder_is_not_written_through(tmp_path, caplog):
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    (out / "patterns").mkdir(parents=True)
    os.symlink(outside, out / "patterns" / "pets")
    with caplog.at_level(logging.WARNING, logger="photocluster.patterns"):
        report = update_patterns(out, dict(PETS), PatternSettings(), tmp_path / "lib")
    assert report.folders_written == [] and report.library_written
    assert os.listdir(outside) == []
    assert "not a plain folder" in caplog.text


def test_bad_input_is_a_warning_not_a_traceback(tmp_path, caplog):
    photos = {"good.jpg": labels(("tabby", 0.9)), "junk.jpg": "not labels", "range.jpg": ((5000, 0.5),),
              "../escape.jpg": labels(("tabby", 0.9)), "none.jpg": None}
    with caplog.at_level(logging.WARNING, logger="photocluster.patterns"):
        report = update_patterns(tmp_path / "out", photos, PatternSettings(), tmp_path / "lib")
    assert report.photos == 4
    assert (tmp_path / "out" / "patterns" / ROOT_DIR / TRANSACTIONS).read_text() == "cat\n\n\n\n"
    assert caplog.text.count("ignored the predictions") == 2 and "skipped '../escape.jpg'" in caplog.text
    assert not (tmp_path / "escape.jpg").exists()


def test_a_damaged_state_file_means_a_full_rewrite(tmp_path, caplog):
    out = tmp_path / "out"
    update_patterns(out, dict(PETS), PatternSettings(), tmp_path / "lib")
    (out / "patterns" / ".state.json").write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="photocluster.patterns"):
        assert update_patterns(out, dict(PETS), PatternSettings(), tmp_path / "lib").written == 2
    assert "unreadable .state.json" in caplog.text


# --- real photos ----------------------------------------------------------------------------

SKIMAGE_DATA = Path(__import__("skimage.data", fromlist=["data"]).__file__).parent


def variants(source: Path) -> list[Image.Image]:
    """The photo and a few edits of it, as a user's near-duplicate shots would be."""
    image = Image.open(source).convert("RGB")
    width, height = image.size
    return [image, ImageOps.mirror(image), image.crop((width // 10, height // 10, width, height)),
            image.resize((width * 2 // 3, height * 2 // 3))]


def test_real_photos_name_what_is_in_them(tmp_path, squeezenet):
    library = tmp_path / "lib"
    sources = {"pets": ["chelsea.png"], "cafe": ["coffee.png"], "street": ["motorcycle_left.png",
                                                                          "motorcycle_right.png"]}
    for folder, files in sources.items():
        for name in files:
            for i, image in enumerate(variants(SKIMAGE_DATA / name)):
                (library / folder).mkdir(parents=True, exist_ok=True)
                image.save(library / folder / f"{Path(name).stem}_{i}.jpg", quality=92)
    from photocluster.images import load_image

    rels = sorted(str(path.relative_to(library)) for path in library.rglob("*.jpg"))
    batch = np.stack([load_image(library / rel, squeezenet.input_size) for rel in rels])
    _, probs = squeezenet.predict(batch)
    photos = {rel: top_labels(row) for rel, row in zip(rels, probs)}

    out = library / "photocluster"
    update_patterns(out, photos, PatternSettings(), library)
    expected = {"pets": "cat", "cafe": "drink", "street": "motorcycle"}
    for folder, thing in expected.items():
        patterns = read_patterns(out / "patterns" / folder / PATTERNS)
        assert patterns[0][0] == (thing,), (folder, patterns)
        assert patterns[0][1] == len(list((library / folder).iterdir()))
        summary = (out / "patterns" / folder / SUMMARY).read_text(encoding="utf-8")
        assert f"- **{thing}**:" in summary
        others = set(expected.values()) - {thing}
        assert not any(f"**{other}**" in summary for other in others), summary
    whole = {items for items, _ in read_patterns(out / "patterns" / LIBRARY_DIR / PATTERNS)}
    assert {("cat",), ("drink",), ("motorcycle",)} <= whole

    # fine labels keep the breeds apart: the cat photos hold more than one cat class
    update_patterns(out, photos, PatternSettings(level="fine"), library)
    fine_items = {item for items, _ in read_patterns(out / "patterns" / "pets" / PATTERNS) for item in items}
    assert fine_items and fine_items <= {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "lynx"}
    assert len((out / "patterns" / "pets" / TRANSACTIONS).read_text().split("\n")[0].split(",")) >= 2


def test_pattern_options_are_checked_without_the_patterns_package_and_share_its_defaults():
    """settings.PatternOptions is the one home of the pattern defaults and checks (issue 11): validating them
    never imports the patterns package (settings is the lower layer), and the miner's settings default to them."""
    code = ("import sys\nfrom photocluster.settings import PatternOptions, SettingsError\nPatternOptions().validate()\n"
            "try:\n    PatternOptions(threshold=0).validate()\nexcept SettingsError as e:\n    print(e)\n"
            "print('photocluster.patterns' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["threshold must be a probability in (0, 1], got 0", "False"]
    from photocluster.settings import PatternOptions

    options = PatternOptions()
    assert PatternSettings() == PatternSettings(options.threshold, options.min_support, options.labels)
    assert PatternSettings.from_options(PatternOptions(True, 0.4, 3, "fine")) == PatternSettings(0.4, 3, "fine")
