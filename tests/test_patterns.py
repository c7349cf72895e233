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
    COCO_ITEMS, FOLDER_MARK, LIBRARY_DIR, OUR_FILES, PATTERNS, PHOTOS, ROOT_DIR, SUMMARY, TRANSACTIONS, UTILITIES,
    PatternSettings, escape_name, format_patterns, mine_maximal, mirror_parts, parse_min_support, photo_items,
    photo_objects, read_patterns, read_photo_names, read_utilities, transaction_stats, unescape_name, update_patterns,
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


# --- objects from the detector (issue 13) ----------------------------------------------------

# The 80 COCO class names, in the detector's order (@vladmandic/human src/object/labels.ts), written out here so that
# the table is checked against the list and not against itself.
COCO_NAMES = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow", "elephant",
    "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard",
    "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli",
    "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed", "dining table", "toilet",
    "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
]
COARSE = class_labels("coarse")


def box() -> tuple[float, float, float, float]:
    return (0.1, 0.1, 0.5, 0.5)


def seen(*pairs: tuple[str, float]) -> tuple:
    """Detections from (COCO label, score) pairs."""
    from photocluster.labels import Detection

    return tuple(Detection(label, score, box()) for label, score in pairs)


def items_of(predictions, detections, source="both", level="coarse", threshold=0.2):
    return photo_items(predictions, detections, names=class_labels(level), coarse=COARSE,
                       min_probability=threshold, source=source)


def test_every_coco_class_is_itself_or_a_coarse_label():
    coarse = set(COARSE)
    assert list(COCO_ITEMS) == COCO_NAMES
    for name, (item, covers) in COCO_ITEMS.items():
        assert item == name or item in coarse or (name, item) == ("kite", "kite (toy)"), name
        assert set(covers) <= coarse, name  # covers names real coarse labels
        if name in coarse:  # the same word in both vocabularies is one item
            assert item == name and name in covers, name
        if item in coarse:  # an item renamed to a coarse label merges with it
            assert item in covers, name
    assert COCO_ITEMS["couch"][0] == "sofa" and COCO_ITEMS["tv"][0] == "television"
    assert COCO_ITEMS["cow"][0] == "cattle"
    # items are safe in transactions and pattern lines, and the fine ImageNet "kite" (a bird) stays apart
    assert not any(re.search(r"[,\t\r\n:]", item) for item, _ in COCO_ITEMS.values())
    assert "kite (toy)" not in set(FINE) | coarse


def test_items_merge_across_the_two_vocabularies():
    # ImageNet: tabby 0.6 (coarse "cat") and studio couch 0.3 (coarse "sofa"); the detector: a cat, two people, a couch
    predictions = labels(("tabby", 0.6), ("studio couch", 0.3))
    detections = seen(("cat", 0.9), ("person", 0.8), ("person", 0.7), ("couch", 0.5))
    objects, utilities = items_of(predictions, detections)
    assert objects == {"cat": 0.9, "person": 0.8, "sofa": 0.5}  # cat and sofa once each, best confidence kept
    assert utilities == {"cat": 1, "person": 2, "sofa": 1}
    # a vaguer ImageNet label of a detected thing goes; a scene COCO cannot name stays
    objects, _ = items_of(labels(("Granny Smith", 0.7), ("seashore", 0.25)), seen(("banana", 0.6), ("apple", 0.4)))
    assert objects == {"banana": 0.6, "apple": 0.4, "seashore": 0.25}
    # at the fine level the same word is one item too ("laptop"); its coarse "computer" is what COCO covers
    objects, _ = items_of(labels(("laptop", 0.5), ("notebook", 0.3)), seen(("laptop", 0.8)), level="fine")
    assert objects == {"laptop": 0.8}
    # a parking meter covers no coarse label (ImageNet's rolls up to "clock"), but the fine names coincide
    both = items_of(labels(("parking meter", 0.5)), seen(("parking meter", 0.4), ("parking meter", 0.3)), level="fine")
    assert both == ({"parking meter": 0.5}, {"parking meter": 2})


def test_the_threshold_applies_to_detection_scores():
    detections = seen(("person", 0.19), ("dog", 0.2), ("bicycle", 0.5), ("person", 0.6))
    objects, utilities = items_of((), detections, threshold=0.2)
    assert objects == {"person": 0.6, "bicycle": 0.5, "dog": 0.2}  # 0.2 is in (inclusive), 0.19 out
    assert utilities == {"person": 1, "bicycle": 1, "dog": 1}  # the person at 0.19 is not counted
    assert items_of((), detections, threshold=0.55) == ({"person": 0.6}, {"person": 1})


def test_each_objects_choice():
    predictions = labels(("seashore", 0.5), ("beagle", 0.3))
    detections = seen(("person", 0.9), ("dog", 0.6), ("dog", 0.4), ("umbrella", 0.1))
    names = class_labels("coarse")
    assert items_of(predictions, detections, "imagenet") == (photo_objects(predictions, names, 0.2),
                                                             {"seashore": 1, "dog": 1})
    assert items_of(predictions, detections, "detector") == ({"person": 0.9, "dog": 0.6}, {"person": 1, "dog": 2})
    assert items_of(predictions, detections, "both") == ({"person": 0.9, "dog": 0.6, "seashore": 0.5},
                                                         {"person": 1, "dog": 2, "seashore": 1})


@pytest.mark.parametrize("source", ["detector", "imagenet", "both"])
def test_a_photo_without_detections_has_its_imagenet_items(source):
    predictions = labels(("seashore", 0.5), ("sandbar", 0.3))
    assert items_of(predictions, None, source) == ({"seashore": 0.5, "sandbar": 0.3}, {"seashore": 1, "sandbar": 1})
    assert items_of(predictions, (), source)[0] == ({} if source == "detector" else
                                                    {"seashore": 0.5, "sandbar": 0.3})


def test_transaction_stats():
    assert transaction_stats([]) == (0.0, 0.0)
    share, mean = transaction_stats([{"a", "b"}, {"a"}, set(), ["a", "b", "c"]])
    assert share == 0.5 and mean == 6 / 4


PARTY = {  # a party folder: people with a dog or at a table; one photo only a cake
    "party/1.jpg": (labels(("beagle", 0.4)), seen(("person", 0.9), ("person", 0.8), ("person", 0.7), ("dog", 0.8))),
    "party/2.jpg": (labels(("beagle", 0.5)), seen(("person", 0.9), ("dog", 0.7))),
    "party/3.jpg": (labels(), seen(("person", 0.9), ("person", 0.6), ("dog", 0.3))),
    "party/4.jpg": (labels(("dining table", 0.3)), seen(("person", 0.9), ("dining table", 0.8), ("cup", 0.5))),
    "party/5.jpg": (labels(), seen(("person", 0.7), ("dining table", 0.6), ("cup", 0.6), ("cup", 0.5))),
    "party/6.jpg": (labels(), seen(("cake", 0.9))),
}
PARK = {  # people with dogs again, and a bench; no table
    "park/a.jpg": (labels(("seashore", 0.6)), seen(("person", 0.8), ("dog", 0.9))),
    "park/b.jpg": (labels(("seashore", 0.5)), seen(("person", 0.8), ("dog", 0.5), ("bench", 0.4))),
    "park/c.jpg": (labels(("seashore", 0.7)), seen(("bench", 0.5))),
}
SHORE = {  # only the seashore: no detector results yet (an old cache)
    "shore/x.jpg": (labels(("seashore", 0.8)), None),
    "shore/y.jpg": (labels(("seashore", 0.9)), None),
    "shore/z.jpg": (labels(("seashore", 0.7)), None),
}


def split(photos: dict) -> tuple[dict, dict]:
    return {rel: value[0] for rel, value in photos.items()}, {rel: value[1] for rel, value in photos.items()}


def test_utilities_count_the_instances_found(tmp_path):
    predictions, detections = split({**PARTY, **SHORE})
    out = tmp_path / "out"
    update_patterns(out, predictions, PatternSettings(min_support=2), tmp_path / "lib", detections=detections)
    party = out / "patterns" / "party"
    assert (party / UTILITIES).read_text(encoding="utf-8").splitlines()[0] == "person,dog:4:3,1"
    rows = dict(zip(read_photo_names(party / PHOTOS), read_utilities(party / UTILITIES)))
    assert rows["1.jpg"] == {"person": 3, "dog": 1}
    assert rows["3.jpg"] == {"person": 2, "dog": 1}
    assert rows["5.jpg"] == {"person": 1, "dining table": 1, "cup": 2}
    # dining table: the detector's and ImageNet's are one item, counted as the detector found it
    assert rows["4.jpg"] == {"person": 1, "dining table": 1, "cup": 1}
    # the transactions keep PAMI's plain format, the same objects in the same order
    lines = (party / TRANSACTIONS).read_text(encoding="utf-8").splitlines()
    assert [",".join(row) for row in read_utilities(party / UTILITIES)] == lines
    # an ImageNet-only object counts one
    assert read_utilities(out / "patterns" / "shore" / UTILITIES) == [{"seashore": 1}] * 3
    summary = (party / SUMMARY).read_text(encoding="utf-8")
    assert "- **person**: 5 photos (83%), 8 found in all" in summary  # 3 + 1 + 2 + 1 + 1 people
    assert "- **cake**: 1 photo (17%)\n" in summary  # one found in one photo: no "found in all"


def test_a_summary_shows_objects_seen_together_first(tmp_path):
    library = tmp_path / "lib"
    photos = {**PARTY, **PARK, **{f"party/{n}.jpg": (labels(), seen(("cake", 0.8))) for n in (7, 8, 9)}}
    make_library(library, photos)
    predictions, detections = split(photos)
    out = library / "photocluster"
    update_patterns(out, predictions, PatternSettings(min_support=2), library, detections=detections)
    party = out / "patterns" / "party"
    # cake alone in 4 photos is a maximal pattern with more support than either pair
    assert read_patterns(party / PATTERNS) == [(("cake",), 4), (("person", "dog"), 3),
                                               (("person", "dining table", "cup"), 2)]
    summary = (party / SUMMARY).read_text(encoding="utf-8")
    together, common = summary.split("## Objects seen together\n")[1].split("## Most common objects\n")
    pairs = [line for line in together.splitlines() if line.startswith("- ")]
    assert [line.split("**")[1] for line in pairs] == ["person + dog", "person + dining table + cup"]
    assert pairs[0].startswith("- **person + dog**: 3 photos (33%), e.g. [")
    # most confident first, by each photo's least confident object of the pattern: 0.8, 0.7, 0.3
    assert re.findall(r"\[([^]]+)\]", pairs[0]) == ["1.jpg", "2.jpg", "3.jpg"]
    assert re.findall(r"\[([^]]+)\]", pairs[1]) == ["5.jpg", "4.jpg"]  # least confident object 0.6, then 0.5
    assert "cake" not in together
    assert [line.split("**")[1] for line in common.splitlines() if line.startswith("- ")][:3] == \
        ["person", "cake", "dog"]
    for link in links_in(party / SUMMARY):
        assert os.path.exists(os.path.join(party, urllib.parse.unquote(link))), link


def test_the_library_summary_shows_which_folders_share_a_pattern(tmp_path):
    library = tmp_path / "lib"
    photos = {**PARTY, **PARK, **SHORE}
    make_library(library, photos)
    predictions, detections = split(photos)
    out = library / "photocluster"
    update_patterns(out, predictions, PatternSettings(min_support=2), library, detections=detections)
    whole = out / "patterns" / LIBRARY_DIR
    text = (whole / SUMMARY).read_text(encoding="utf-8")
    shared = text.split("## Patterns shared by folders\n\n")[1].split("\n\n")[0].splitlines()
    # person + dog: 3 party photos, 2 park photos; seashore alone: park 3, shore 3, more photos but one object,
    # so second; the table and the cups only at the party
    assert shared == [
        "- **person + dog**: 2 folders: [party](../party/summary.md) (3 photos), [park](../park/summary.md) (2 photos)",
        "- **seashore**: 2 folders: [park](../park/summary.md) (3 photos), [shore](../shore/summary.md) (3 photos)",
    ]
    for link in links_in(whole / SUMMARY):
        assert os.path.exists(os.path.join(whole, urllib.parse.unquote(link))), link


def test_the_objects_choice_rewrites_the_summaries(tmp_path):
    predictions, detections = split({**PARTY, **SHORE})
    out = tmp_path / "out"
    for source, first_line in [("both", "person,dog"), ("imagenet", "dog"), ("detector", "person,dog")]:
        report = update_patterns(out, predictions, PatternSettings(objects=source), tmp_path / "lib",
                                 detections=detections)
        assert report.written == 3, source
        assert (out / "patterns" / "party" / TRANSACTIONS).read_text().splitlines()[0] == first_line
    # without detections at all, "both" is today's ImageNet summary
    update_patterns(out, predictions, PatternSettings(objects="imagenet"), tmp_path / "lib")
    imagenet_only = (out / "patterns" / "party" / TRANSACTIONS).read_text()
    update_patterns(out, predictions, PatternSettings(objects="both"), tmp_path / "lib")
    assert (out / "patterns" / "party" / TRANSACTIONS).read_text() == imagenet_only


def test_bad_detections_are_a_warning_and_the_imagenet_items_stand_in(tmp_path, caplog):
    predictions = {"a.jpg": labels(("tabby", 0.9)), "b.jpg": labels(("tabby", 0.9))}
    detections = {"a.jpg": "not detections", "b.jpg": (("person", 0.9, box()),)}
    with caplog.at_level(logging.WARNING, logger="photocluster.patterns"):
        update_patterns(tmp_path / "out", predictions, PatternSettings(), tmp_path / "lib", detections=detections)
    assert (tmp_path / "out" / "patterns" / ROOT_DIR / TRANSACTIONS).read_text() == "cat\ncat\n"
    assert caplog.text.count("ignored the detections") == 2


def test_objects_setting_is_checked():
    with pytest.raises(ValueError, match="objects must be one of detector, imagenet, both, got 'yolo'"):
        PatternSettings(objects="yolo")
    from photocluster.settings import PatternOptions

    assert PatternOptions().objects == "both" == PatternSettings().objects
    assert PatternSettings.from_options(PatternOptions(objects="detector")).objects == "detector"


def test_a_shared_pattern_counts_only_the_photos_holding_all_its_objects():
    from photocluster.patterns.markdown import shared_patterns
    from photocluster.patterns.mining import PhotoObjects, summarise

    def photos(folder, *transactions):
        return [PhotoObjects(f"{folder}/{n}.jpg", {item: 0.9 for item in t}, {"cup": 2} if "cup" in t else {})
                for n, t in enumerate(transactions)]

    # kitchen: cup + plate together in 2 of 6 photos, though each is in 4; cafe: together in 3 of 3
    folders = {"kitchen": photos("kitchen", ("cup", "plate"), ("cup", "plate"), ("cup",), ("cup",), ("plate",),
                                 ("plate",)),
               "cafe": photos("cafe", ("cup", "plate"), ("cup", "plate"), ("cup", "plate"))}
    settings = PatternSettings(min_support=2)
    everything = [p for members in folders.values() for p in members]
    library = summarise("the whole library", everything, settings)
    assert library.instance_counts["cup"] == 2 * 7  # seven photos hold cup, each with two
    text = shared_patterns(library, [("cup", "plate")], folders, settings)
    assert ("- **cup + plate**: 2 folders: [cafe](../cafe/summary.md) (3 photos), "
            "[kitchen](../kitchen/summary.md) (2 photos)") in text


def test_an_update_told_to_stop_keeps_the_summaries_it_did_not_reach_and_the_next_one_finishes(tmp_path):
    library = tmp_path / "lib"
    make_library(library, {**PARTY, **PARK, **SHORE})
    out = library / "photocluster"
    settings = PatternSettings(min_support=2)
    predictions, detections = split({**PARTY, **PARK, **SHORE})
    update_patterns(out, predictions, settings, library, detections=detections)
    before = {p: p.read_bytes() for p in (out / "patterns").rglob("*") if p.is_file()}
    # the park's photos are gone and a shore photo left: two folders and the library summary would change
    now = {rel: v for rel, v in {**PARTY, **SHORE}.items() if rel != "shore/z.jpg"}
    calls = []
    report = update_patterns(out, split(now)[0], settings, library, detections=split(now)[1],
                             should_stop=lambda: calls.append(1) or len(calls) > 1)  # stops after one folder
    assert report.stopped and report.folders_written == [] and report.folders_removed == []
    after = {p: p.read_bytes() for p in (out / "patterns").rglob("*") if p.is_file() and p.name != ".state.json"}
    assert after == {p: b for p, b in before.items() if p.name != ".state.json"}  # party unchanged; the rest kept
    report = update_patterns(out, split(now)[0], settings, library, detections=split(now)[1])
    assert not report.stopped and report.folders_written == ["shore"] and report.library_written
    assert report.folders_removed == ["park"] and not (out / "patterns" / "park").exists()
