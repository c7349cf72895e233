#!/usr/bin/env python3
"""Regenerate photocluster/data/coarse_labels.json, the roll-up of the 1000 ImageNet classes to readable labels.

ImageNet's classes are too fine to form object patterns (120 dog breeds, "tabby" next to "tiger cat"). Each class
is a WordNet noun synset (wnid n02123045 = noun offset 02123045 in WordNet 3.0), so this script walks WordNet's
hypernyms upward from every class and rolls it up to the NEAREST synset in the curated TARGETS list below (breadth
first over all hypernym paths; a tie goes to the target listed first). A class with no listed ancestor keeps its own
short name. A few classes where WordNet's sense does not match what ImageNet's photos show are set by hand
(OVERRIDES).

photocluster never reads WordNet at run time: this script runs once, offline, and the table ships as package data.

Needs Debian's WordNet 3.0 database:   apt-get update && apt-get install -y wordnet-base
Usage: python scripts/make_coarse_labels.py [--wordnet /usr/share/wordnet] [--classes FILE] [--out FILE]

--classes is photocluster/data/imagenet_classes.json by default ([[wnid, name], ...]); a text file with one wnid
a line also works. Output (keyed by wnid, in Keras class-index order = sorted wnid order):
    {"source": ..., "classes": [[wnid, fine, coarse], ...]}
fine is the class's first WordNet lemma ("tiger cat"), made unique where two classes share one ("crane (bird)"),
coarse its rolled-up label ("cat"). Labels never contain a comma, tab, colon or line break: they are items in
comma-separated transactions and in `item<TAB>item:support` pattern lines.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from photocluster.fsutil import write_text_atomic  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CLASSES = ROOT / "photocluster" / "data" / "imagenet_classes.json"
DEFAULT_OUT = ROOT / "photocluster" / "data" / "coarse_labels.json"
DEFAULT_WORDNET = Path("/usr/share/wordnet")

# Readable target level: (label shown to the user, WordNet 3.0 noun offset, that synset's first lemma).
# The lemma is checked, so a different WordNet version fails loudly instead of mapping to the wrong synsets.
# Specific targets sit below general ones (bus below vehicle, chair below furniture): the nearest one wins.
TARGETS: list[tuple[str, str, str]] = [
    # animals
    ("dog", "02084071", "dog"),
    ("wolf", "02114100", "wolf"),
    ("fox", "02118333", "fox"),
    ("cat", "02121620", "cat"),
    ("big cat", "02127808", "big_cat"),
    ("bear", "02131653", "bear"),
    ("monkey", "02484322", "monkey"),
    ("ape", "02470325", "ape"),
    ("lemur", "02496913", "lemur"),
    ("bird", "01503061", "bird"),
    ("shark", "01482330", "shark"),
    ("fish", "02512053", "fish"),
    ("snake", "01726692", "snake"),
    ("lizard", "01674464", "lizard"),
    ("turtle", "01662784", "turtle"),
    ("crocodile", "01696633", "crocodilian_reptile"),
    ("reptile", "01661091", "reptile"),
    ("frog", "01639765", "frog"),
    ("salamander", "01629276", "salamander"),
    ("butterfly", "02274259", "butterfly"),
    ("insect", "02159955", "insect"),
    ("spider", "01772222", "spider"),
    ("crab", "01976957", "crab"),
    ("lobster", "01982650", "lobster"),
    ("crustacean", "01974773", "crustacean"),
    ("worm", "01922303", "worm"),
    ("horse", "02374451", "horse"),
    ("pig", "02395003", "swine"),
    ("cattle", "02402010", "bovine"),
    ("sheep", "02411705", "sheep"),
    ("sheep", "02414578", "wild_sheep"),
    ("goat", "02416519", "goat"),
    ("antelope", "02419796", "antelope"),
    ("cattle", "02401031", "bovid"),  # bison, water buffalo; after sheep, goat and antelope, which are bovids too
    ("camel", "02437136", "camel"),
    ("elephant", "02503517", "elephant"),
    ("rabbit", "02323902", "leporid"),
    ("rodent", "02329401", "rodent"),
    ("marsupial", "01874434", "marsupial"),
    ("whale", "02062744", "whale"),
    ("seal", "02076196", "seal"),
    ("person", "00007846", "person"),
    # plants and food
    ("flower", "11669921", "flower"),
    ("flower", "12041446", "orchid"),
    ("mushroom", "12992868", "fungus"),
    ("fruit", "07705931", "edible_fruit"),
    ("vegetable", "07707451", "vegetable"),
    ("bread", "07622061", "baked_goods"),
    ("dessert", "07609840", "dessert"),
    ("drink", "07881800", "beverage"),
    ("food", "07555863", "food"),
    ("food", "00021265", "food"),
    # vehicles
    ("car", "02958343", "car"),
    ("van", "04520170", "van"),
    ("truck", "04490091", "truck"),
    ("bus", "02924116", "bus"),
    ("train", "02959942", "car"),  # railway car
    ("train", "03684823", "locomotive"),
    ("train", "04468005", "train"),
    ("motorcycle", "03790512", "motorcycle"),
    ("bicycle", "02834778", "bicycle"),
    ("cart", "02970849", "cart"),
    ("cart", "03484083", "handcart"),
    ("sled", "04235291", "sled"),
    ("ship", "04194289", "ship"),
    ("boat", "04530566", "vessel"),
    ("aircraft", "02686568", "aircraft"),
    ("vehicle", "04524313", "vehicle"),
    # buildings and structures
    ("church", "03953416", "place_of_worship"),
    ("shop", "03748162", "mercantile_establishment"),
    ("house", "03259505", "dwelling"),
    ("building", "02913152", "building"),
    ("bridge", "02898711", "bridge"),
    ("fence", "03327234", "fence"),
    ("roof", "04105068", "roof"),
    ("monument", "03743902", "memorial"),
    ("tent", "04411264", "tent"),
    # furniture and household
    ("chair", "03001627", "chair"),
    ("bed", "02818832", "bed"),
    ("table", "04379243", "table"),
    ("sofa", "04256520", "sofa"),
    ("seat", "04161981", "seat"),
    ("cabinet", "02933112", "cabinet"),
    ("lamp", "03636649", "lamp"),
    ("lamp", "03636248", "lamp"),
    ("furniture", "03405725", "furniture"),
    ("kitchen appliance", "03620052", "kitchen_appliance"),
    ("appliance", "02729837", "appliance"),
    ("computer", "03082979", "computer"),
    ("telephone", "04401088", "telephone"),
    ("camera", "02942699", "camera"),
    ("electronics", "03278248", "electronic_equipment"),
    ("clock", "04437953", "timepiece"),
    ("measuring instrument", "03733925", "measuring_instrument"),
    ("optical instrument", "03852280", "optical_instrument"),
    ("musical instrument", "03800933", "musical_instrument"),
    ("toy", "03964744", "plaything"),
    ("ball", "02778669", "ball"),
    ("sports equipment", "04285146", "sports_equipment"),
    ("gun", "03467984", "gun"),
    ("weapon", "04565375", "weapon"),
    ("armor", "02739668", "armor"),
    ("tool", "04451818", "tool"),
    ("kitchenware", "03621049", "kitchen_utensil"),
    ("bottle", "02876657", "bottle"),
    ("bag", "02773037", "bag"),
    ("basket", "02801938", "basket"),
    ("box", "02883344", "box"),
    ("glass", "03438257", "glass"),
    ("cup", "03797390", "mug"),
    ("bowl", "02880940", "bowl"),
    ("container", "03094503", "container"),
    ("toiletry", "04447443", "toiletry"),
    # clothing
    ("shoe", "03380867", "footwear"),
    ("hat", "03502509", "headdress"),
    ("swimwear", "04371563", "swimsuit"),
    ("coat", "03057021", "coat"),
    ("clothing", "03051540", "clothing"),
    ("jewelry", "03597469", "jewelry"),
    # landscape
    ("mountain", "09359803", "mountain"),
]

# Classes whose WordNet sense differs from what ImageNet's photos of them show: wnid -> coarse label.
OVERRIDES: dict[str, str] = {
    "n01871265": "elephant",  # tusker: WordNet files it directly under mammal
    "n07565083": "menu",  # menu: WordNet's sense is "the food served", the photos show printed menus
    "n03770679": "car",  # minivan: WordNet puts it under van < truck, it is a passenger car
    "n07734744": "mushroom",  # the edible mushroom (a vegetable in WordNet) next to the fungi
    "n07871810": "food",  # meat loaf: WordNet also calls it a loaf, which would make it bread
    "n07802026": "hay",  # hay: WordNet's fodder < feed < food; nobody calls a hay field food
    "n03445924": "vehicle",  # golfcart: nearer to sports equipment than to vehicle in WordNet
    "n04162706": "seat belt",  # seat belt: WordNet's belt < accessory < clothing
    "n04335435": "tram",  # streetcar: the common name
    "n01704323": "dinosaur",  # triceratops
    "n03791053": "motorcycle",  # motor scooter: WordNet files it under wheeled vehicle, beside the moped in photos
}

FORBIDDEN = re.compile(r"[,\t\r\n:]")


def read_wordnet_nouns(wordnet: Path) -> dict[str, tuple[list[str], list[str]]]:
    """offset -> (lemmas, hypernym offsets) from WordNet's data.noun.

    Hand-written because the format is tiny and fixed (wndb(5)): "offset lex_filenum ss_type w_cnt word lex_id ...
    p_cnt pointer_symbol offset pos source/target ... | gloss". Using nltk for this would add a dependency for one
    one-off script. Both class (@) and instance (@i) hypernyms count.
    """
    nouns: dict[str, tuple[list[str], list[str]]] = {}
    with open(wordnet / "data.noun", encoding="latin-1") as handle:
        for line in handle:
            if line.startswith(" "):  # the licence header
                continue
            fields = line.partition(" | ")[0].split()
            word_count = int(fields[3], 16)
            lemmas = [fields[4 + 2 * i] for i in range(word_count)]
            at = 4 + 2 * word_count
            hypernyms = []
            for i in range(int(fields[at])):
                symbol, offset, pos = fields[at + 1 + 4 * i: at + 4 + 4 * i]
                if symbol in ("@", "@i") and pos == "n":
                    hypernyms.append(offset)
            nouns[fields[0]] = (lemmas, hypernyms)
    return nouns


def read_wnids(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    try:
        wnids = [entry[0] for entry in json.loads(text)]
    except json.JSONDecodeError:
        wnids = text.split()
    if len(wnids) != 1000 or len(set(wnids)) != 1000 or wnids != sorted(wnids):
        raise SystemExit(f"{path}: expected 1000 distinct wnids in sorted (Keras index) order")
    return wnids


def readable(lemma: str) -> str:
    label = FORBIDDEN.sub(" ", lemma.replace("_", " ")).strip()
    return re.sub(r" +", " ", label)


def nearest_target(offset: str, nouns, targets: dict[str, tuple[int, str]]) -> str | None:
    """Breadth-first up the hypernyms; among targets at the smallest distance the one listed first wins."""
    seen, frontier = {offset}, [offset]
    while frontier:
        found = [targets[o] for o in frontier if o in targets]
        if found:
            return min(found)[1]
        next_frontier = []
        for node in frontier:
            for parent in nouns[node][1]:
                if parent not in seen:
                    seen.add(parent)
                    next_frontier.append(parent)
        frontier = next_frontier
    return None


def fine_names(wnids: list[str], nouns) -> list[str]:
    """The first lemma of each class, with the direct hypernym added where two classes share a lemma."""
    names = [readable(nouns[w[1:]][0][0]) for w in wnids]
    counts = Counter(names)
    for i, wnid in enumerate(wnids):
        if counts[names[i]] > 1:
            parent = nouns[wnid[1:]][1][0]
            names[i] = f"{names[i]} ({readable(nouns[parent][0][0])})"
    if len(set(names)) != len(names):
        raise SystemExit("fine names are not unique")
    return names


def build_table(wnids: list[str], nouns) -> tuple[list[list[str]], Counter]:
    """The [wnid, fine, coarse] rows, and how each coarse label was chosen (target / override / own name)."""
    targets: dict[str, tuple[int, str]] = {}
    for rank, (label, offset, lemma) in enumerate(TARGETS):
        if offset not in nouns or nouns[offset][0][0] != lemma:
            raise SystemExit(f"target {label!r}: synset {offset} is not {lemma!r} here; is this WordNet 3.0?")
        targets[offset] = (rank, label)
    table, how = [], Counter()
    for wnid, fine in zip(wnids, fine_names(wnids, nouns)):
        if wnid[1:] not in nouns:
            raise SystemExit(f"{wnid} is not a WordNet 3.0 noun synset")
        if wnid in OVERRIDES:
            coarse, how["override"] = OVERRIDES[wnid], how["override"] + 1
        elif (coarse := nearest_target(wnid[1:], nouns, targets)) is not None:
            how["target"] += 1
        else:
            coarse, how["own name"] = fine, how["own name"] + 1
        table.append([wnid, fine, coarse])
    return table, how


def print_coverage(table: list[list[str]], how: Counter) -> None:
    groups = Counter(coarse for _, _, coarse in table)
    print(f"{len(table)} classes -> {len(groups)} coarse labels ({len(TARGETS)} targets listed): "
          f"{how['target']} rolled up to a listed target ({how['target'] / len(table):.1%}), "
          f"{how['override']} set by hand, {how['own name']} keep their own name (no listed ancestor)")
    print(f"the most common coarse labels cover {sum(n for _, n in groups.most_common(20)) / len(table):.1%} "
          f"of the classes with 20 labels:")
    print("  " + ", ".join(f"{label} {count}" for label, count in groups.most_common() if count > 1))
    own = sorted(coarse for _, fine, coarse in table if groups[coarse] == 1)
    print(f"labels that are a single class ({len(own)}): " + ", ".join(own))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wordnet", type=Path, default=DEFAULT_WORDNET, help="folder with WordNet's data.noun")
    parser.add_argument("--classes", type=Path, default=DEFAULT_CLASSES, help="the 1000 ImageNet wnids")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if not (args.wordnet / "data.noun").is_file():
        raise SystemExit(f"no {args.wordnet / 'data.noun'}: apt-get install -y wordnet-base")
    table, how = build_table(read_wnids(args.classes), read_wordnet_nouns(args.wordnet))
    for _, fine, coarse in table:
        assert not FORBIDDEN.search(fine) and not FORBIDDEN.search(coarse), (fine, coarse)
    document = {"source": "WordNet 3.0 hypernyms (Debian wordnet-base), scripts/make_coarse_labels.py",
                "classes": table}
    rows = ",\n".join(json.dumps(row, ensure_ascii=False) for row in table)
    text = json.dumps({k: v for k, v in document.items() if k != "classes"}, ensure_ascii=False)[:-1]
    write_text_atomic(args.out, f'{text},\n"classes": [\n{rows}\n]}}\n')
    print_coverage(table, how)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
