"""Per-folder object patterns: a photo's objects -> transactions -> maximal frequent itemsets -> summary files.

The method is "pattern discovery in imagery data": a photo's objects become a transaction, and the maximal frequent
itemsets are mined per folder and for the whole library. A photo's objects (objects.py) are the COCO objects the
detector found with a score at or above the --threshold option, each once, and the photo's ImageNet labels at or
above the same probability, named at the chosen label level (the --labels option; labels.py: `coarse` rolls the
1000 classes up to readable names, `fine` keeps them), because they name scenes (seashore, church) that COCO lacks.
The same thing in both vocabularies is one object (COCO "dog" is the coarse "dog", "couch" the coarse "sofa"), and
an ImageNet label that only names a detected object more vaguely ("fruit" next to "banana") is dropped. --objects
chooses detector, imagenet (the classifier alone, as before the detector) or both (the default); a photo that has
not been through the detector has its ImageNet objects. A name that occurs twice in one photo is one object with its
highest probability; how many times the detector found it is its utility ("3 persons"). The mining is mlxtend's
fpmax (BSD, pure Python wheel; Borgelt's pyfim is an sdist that needs a C compiler at install time, and PAMI is
GPL-3). Unlike PAMI's MaxFPGrowth, which drops transactions of one item before mining, maximal itemsets of a single
object are kept.

Minimum support is a photo count (a whole number >= 1) or a fraction of the folder's photos (a number < 1, counted
over all the folder's photos, those without a confident object included, and never fewer than 2 photos: an object
set seen in one photo is no pattern). The default is 0.05: 5 photos in a folder of 100, 2 in a folder of 30, 500 in
a library of 10,000. Low enough that a trip folder's "seashore + sandbar" in 9 of 150 photos shows up; the summary
lists the patterns by support, so the rarer ones only lengthen patterns.txt.

Output, under <out>/patterns/ only, never in the library:
    <folder>/         mirrors library folder <folder> ("2024/Lisbon" -> patterns/2024/Lisbon/)
    _root/            the photos that sit directly in the library root
    _library/         the whole library, with an index of the folders
    .state.json       a digest per summary folder, so an unchanged folder is not rewritten
Every folder photocluster makes there holds an empty `.photocluster-folder` mark: only marked folders are ever
written into or emptied, so a user's own folder or file under patterns/ is never touched (and no symlink is
followed: all of it goes through directory descriptors, see fsutil).
A library folder whose name starts with "_", or is one of the file names here, is mirrored with one more "_" in
front ("_drafts" -> "__drafts", "summary.md" -> "_summary.md"), so no real folder can land on _root or _library or
on a file of ours. Each summary folder holds:
    transactions.txt  one line per photo: its objects comma-separated, most probable first; an empty line for a
                      photo with no object at the minimum probability (PAMI's transactional format, sep=",")
    utilities.txt     the same lines in PAMI's utility format, sep=",": `objects:total utility:utilities`, an
                      object's utility being how many of it were found: "person,dog:4:3,1" (one for an ImageNet label)
    photos.txt        line i is the file name of the photo on line i of transactions.txt (library-relative path in
                      _library); backslash, newline, CR, tab and undecodable bytes are written as \\\\ \\n \\r \\t \\xNN
    patterns.txt      one maximal itemset a line, items tab-separated, ":support" (a photo count) at the end, most
                      frequent first: "tram<TAB>street sign:14" (PAMI's pattern format)
    summary.md        the objects seen together (patterns of two or more), each with its photo count and example
                      photos (relative links), then the most common single objects and how many of each were found;
                      in _library, also the patterns that two or more folders share, and every folder summary

The modules: options (the settings as mining uses them), objects (a photo's items from both vocabularies), mining
(transactions, fpmax), formats (the files' names and text formats, name escaping), markdown (summary.md), folders
(writing under patterns/ safely), update (the incremental update that ties them together).
"""
from __future__ import annotations

from .formats import (FOLDER_MARK, FORMAT_VERSION, LIBRARY_DIR, OUR_FILES, PATTERNS, PATTERNS_DIR, PHOTOS,
                      RESERVED_NAMES, ROOT_DIR, STATE_NAME, SUMMARY, TRANSACTIONS, UTILITIES, escape_name,
                      format_patterns, mirror_parts, read_patterns, read_photo_names, read_utilities, unescape_name)
from .mining import Pattern, mine_maximal, photo_objects, transaction_stats
from .objects import COCO_ITEMS, photo_items
from .options import MIN_FRACTION_COUNT, PatternSettings, parse_min_support
from .update import PatternReport, update_patterns

__all__ = [
    "COCO_ITEMS", "FOLDER_MARK", "FORMAT_VERSION", "LIBRARY_DIR", "MIN_FRACTION_COUNT", "OUR_FILES", "PATTERNS",
    "PATTERNS_DIR", "PHOTOS", "RESERVED_NAMES", "ROOT_DIR", "STATE_NAME", "SUMMARY", "TRANSACTIONS", "UTILITIES",
    "Pattern", "PatternReport", "PatternSettings", "escape_name", "format_patterns", "mine_maximal", "mirror_parts",
    "parse_min_support", "photo_items", "photo_objects", "read_patterns", "read_photo_names", "read_utilities",
    "transaction_stats", "unescape_name", "update_patterns",
]
