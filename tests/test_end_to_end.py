"""End to end with real photographs and the real SqueezeNet ImageNet weights, through the command line."""
import csv
import itertools
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from skimage import data

from photocluster.cli import main

from .conftest import sha256_tree

def variants(img: Image.Image, folder: Path, stem: str) -> None:
    """The photo plus a resized, a re-compressed and a cropped copy."""
    folder.mkdir(parents=True, exist_ok=True)
    w, h = img.size
    img.save(folder / f"{stem}.jpg", quality=95)
    img.resize((w // 2, h // 2), Image.Resampling.LANCZOS).save(folder / f"{stem}-small.jpg", quality=90)
    img.save(folder / f"{stem}-recompressed.jpg", quality=40)
    img.crop((w // 20, h // 20, w - w // 20, h - h // 20)).save(folder / f"{stem}-crop.png")


@pytest.fixture(scope="module")
def sample_library(tmp_path_factory):
    lib = tmp_path_factory.mktemp("samples") / "lib"
    variants(Image.fromarray(data.chelsea()), lib / "cats", "chelsea")
    variants(Image.fromarray(data.rocket()), lib / "space", "rocket")
    (lib / "misc").mkdir()
    for name in ["astronaut", "coffee", "camera", "immunohistochemistry", "hubble_deep_field"]:
        Image.fromarray(getattr(data, name)()).save(lib / "misc" / f"{name}.jpg")
    return lib


def run_json(capsys, *args) -> dict:
    assert main([str(a) for a in args] + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def run_json_unpatched(*args) -> dict:
    """The same for module-scoped fixtures, which cannot use capsys: run the CLI in a subprocess."""
    done = subprocess.run([os.sys.executable, "-m", "photocluster", *map(str, args), "--json"],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def sample_run(sample_library, tmp_path_factory):
    from photocluster.weights import fetch_weights

    fetch_weights("squeezenet")
    before = sha256_tree(sample_library)
    out = tmp_path_factory.mktemp("sample-out")
    result = run_json_unpatched(sample_library, "--model", "squeezenet", "--out", out)
    assert sha256_tree(sample_library) == before
    return result, out


def test_variants_cluster_together_and_unrelated_photos_do_not(sample_run):
    result, out = sample_run
    clusters = sorted(sorted(m) for m in result["clusters"].values())
    assert clusters == [
        ["cats/chelsea-crop.png", "cats/chelsea-recompressed.jpg", "cats/chelsea-small.jpg", "cats/chelsea.jpg"],
        ["space/rocket-crop.png", "space/rocket-recompressed.jpg", "space/rocket-small.jpg", "space/rocket.jpg"],
    ]
    links = sorted((out / "clusters/cluster_with_4").glob("*/*"))
    assert len(links) == 8 and all((link.is_symlink() and link.resolve().is_file()) for link in links)


def test_cat_folder_summary_names_the_cat(sample_run):
    _, out = sample_run
    patterns = (out / "patterns/cats/patterns.txt").read_text()
    assert patterns.splitlines()[0].startswith("cat") and patterns.splitlines()[0].endswith(":4")
    assert "cat" in (out / "patterns/cats/summary.md").read_text()


def test_rerun_fingerprints_nothing_and_one_new_photo_costs_one(sample_library, squeezenet_weights, capsys, tmp_path):
    out = tmp_path / "out"
    lib = tmp_path / "lib"
    shutil.copytree(sample_library, lib)
    assert run_json(capsys, lib, "--model", "squeezenet", "--out", out)["fingerprinted"] == 13
    shown = os.readlink(out / "clusters")
    again = run_json(capsys, lib, "--model", "squeezenet", "--out", out)
    assert again["fingerprinted"] == 0 and not again["layout_changed"] and os.readlink(out / "clusters") == shown
    Image.fromarray(data.chelsea()).rotate(3).save(lib / "cats" / "chelsea-tilted.jpg")
    grown = run_json(capsys, lib, "--model", "squeezenet", "--out", out)
    assert grown["fingerprinted"] == 1
    assert any("cats/chelsea-tilted.jpg" in m and "cats/chelsea.jpg" in m for m in grown["clusters"].values())


@pytest.fixture(scope="module")
def devset_run(devset, tmp_path_factory):
    out = tmp_path_factory.mktemp("devset-out")
    return run_json_unpatched(devset, "--model", "squeezenet", "--out", out), out


def test_devset_clusters_are_precise(devset, devset_run):
    result, _ = devset_run
    truth = {r["file"]: r["group"] for r in csv.DictReader(open(devset / "manifest.csv", newline=""))}
    together = [pair for members in result["clusters"].values() for pair in itertools.combinations(members, 2)]
    right = sum(1 for a, b in together if truth[a] and truth[a] == truth[b])
    assert right / len(together) >= 0.95, f"pairwise precision {right / len(together):.3f}"
    # every wallpaper shipped under many names forms one cluster of its own
    by_group = {}
    for rel, group in truth.items():
        if group.startswith("plasma:"):
            by_group.setdefault(group, set()).add(rel)
    member_sets = [set(m) for m in result["clusters"].values()]
    big = [g for g in by_group.values() if len(g) >= 12]
    assert big and all(any(g <= m for m in member_sets) for g in big)


def test_devset_folder_summaries_name_real_objects(devset_run):
    _, out = devset_run
    kite = (out / "patterns/wallpapers/Kite/patterns.txt").read_text()
    assert kite.splitlines()[0].split(":")[0] == "aircraft"  # the Kite wallpaper: a kite flying over hills
