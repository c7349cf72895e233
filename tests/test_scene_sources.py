"""scripts/scene_sources.py: how the real photographs are told from the packages' other pictures."""
import struct

import numpy as np
from PIL import Image

from .conftest import load_script

sources = load_script("scene_sources")


def test_flat_share_is_high_for_flat_fills_and_low_for_grain():
    halves = np.zeros((8, 10, 4), dtype=np.uint8)
    halves[..., 3] = 255
    halves[:, 5:, :3] = 200  # two flat colours: 9 neighbours a row, 1 of them across the edge
    assert sources.flat_share(Image.fromarray(halves)) == 8 / 9
    grain = np.random.default_rng(1).integers(0, 256, (8, 10, 3), dtype=np.uint8)
    assert sources.flat_share(Image.fromarray(grain)) < 0.05


def test_flat_share_looks_at_opaque_pixels_only():
    img = np.random.default_rng(2).integers(0, 256, (8, 10, 4), dtype=np.uint8)
    img[:, :5] = (30, 60, 90, 255)  # an opaque flat half ...
    img[:, 5:, 3] = 0  # ... and transparent grain, which a cut-out's ground is
    assert sources.flat_share(Image.fromarray(img)) == 1.0


def test_kin_drops_a_trailing_number_and_letter_only():
    assert sources.kin("brick-wall1") == sources.kin("brick-wall2") == "brick-wall"
    assert sources.kin("basketball-court1-a") == sources.kin("basketball-court1-b") == "basketball-court"
    assert sources.kin("beach-malibu") == "beach-malibu"
    assert sources.kin("the-movies") != sources.kin("the-movies-inside")


def qt_resource_bundle(files: dict[str, tuple[bytes, int]]) -> bytes:
    """A version 3 .rcc as Qt's rcc writes one (its layout documented in rcc.cpp), holding `files` (name: bytes,
    flags) in one folder 'images'."""
    names, name_at = b"", {}
    for name in ["images", *files]:
        name_at[name] = len(names)
        names += struct.pack(">HI", len(name), 0) + name.encode("utf-16-be")
    data, nodes = b"", []
    nodes.append(struct.pack(">IHII", 0, 2, 1, 1) + bytes(8))  # the root: a folder of 1, from node 1
    nodes.append(struct.pack(">IHII", name_at["images"], 2, len(files), 2) + bytes(8))
    for name, (content, flags) in files.items():
        nodes.append(struct.pack(">IHHHI", name_at[name], flags, 0, 0, len(data)) + bytes(8))
        data += struct.pack(">I", len(content)) + content
    tree = b"".join(nodes)
    header = 24
    return b"qres" + struct.pack(">IIIII", 3, header, header + len(tree), header + len(tree) + len(data), 0) \
        + tree + data + names


def test_rcc_files_reads_each_uncompressed_file_with_its_path():
    bundle = qt_resource_bundle({"a.webp": (b"RIFF-a", 0), "b.jpg": (b"\xff\xd8b", 0), "c.qml": (b"zz", 1)})
    assert list(sources.rcc_files(bundle)) == [("/images/a.webp", b"RIFF-a"), ("/images/b.jpg", b"\xff\xd8b")]
