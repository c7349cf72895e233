"""Settings of one library, validated the same way whether they come from the command line or a config file."""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .errors import SettingsError  # settings.SettingsError is its usual name

# The one home of these facts: models.py, config.py and cli.py take them from here.
MODEL_NAMES = ("vgg16", "squeezenet")  # models.py builds each (tests/test_models.py checks it knows them all)
RUNTIMES = ("openvino", "tensorflow")  # the model runtimes (models.py, detector.py)
IMAGENET_WEIGHTS = "imagenet"  # the published pretrained weights
RANDOM_WEIGHTS = ("random", "none")  # random initialisation with a fixed seed
NAMED_WEIGHTS = (None, IMAGENET_WEIGHTS, *RANDOM_WEIGHTS)  # any other `weights` names a weights file
DEFAULT_BATCH_SIZE = 16  # photos per model call
LABEL_LEVELS = ("coarse", "fine")
OBJECT_SOURCES = ("detector", "imagenet", "both")  # where a photo's objects come from (--objects)
BURST_SECONDS_MAX = 3600.0  # an hour: a longer "burst" is not one scene any more
OUTPUT_NAME = "photocluster"
# Where photocluster must never write, whatever --out says (checked on the real path, links resolved):
# system trees, refused at any depth...
SYSTEM_TREES = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/sbin", "/snap",
                "/sys", "/usr", "/var/log", "/var/spool", "/var/mail", "/run")
# ...except these per-user places inside them (a user's runtime folder, a removable disk mounted for a user)...
USER_PLACES_IN_SYSTEM_TREES = ("/run/user", "/run/media")
# ...shared folders, refused themselves...
SHARED_DIRS = ("/", "/home", "/root", "/srv", "/opt", "/mnt", "/media", "/tmp", "/var", "/lost+found")
# ...and the folders whose every direct subfolder belongs to one user or one service (/home/alice, /var/lib/mysql,
# /run/user/1000), refused themselves and one level down. Deeper is the owner's to choose: /var/lib/x/out is fine.
PER_OWNER_DIRS = ("/home", "/var", "/var/lib", "/var/cache", "/run/user", "/media", "/run/media")
# Folders that belong to other tools: version control, thumbnail caches, trash cans, NAS indexers.
OTHER_TOOLS_DATA = (".git", ".hg", ".svn", ".thumbnails", ".Trash", ".Trash-1000", ".dtrash", "@eaDir", "#recycle")


@dataclass
class PatternOptions:
    """Whether and how to write the per-folder object summaries: the one home of their defaults and checks.

    The fields are named as the user names them (flags --threshold, --min-support, --labels; the same keys in a
    config file; --objects too). Inside the patterns package they are the minimum probability and the label level
    (patterns.PatternSettings.from_options).
    """

    enabled: bool = True
    threshold: float = 0.2  # the minimum probability that makes a prediction one of the photo's objects
    min_support: float = 0.05  # a fraction of the folder's photos when < 1, a photo count when >= 1
    labels: str = "coarse"  # the label level: "coarse" (rolled up, readable) or "fine" (the 1000 ImageNet classes)
    objects: str = "both"  # "detector" (COCO objects), "imagenet" (the classifier's labels) or both, merged

    def validate(self) -> None:
        """Raise SettingsError, one line naming the setting, for the first bad value."""
        import math

        from .labels import LEVELS  # the lowest module: no import cycle

        threshold, support = self.threshold, self.min_support
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
            raise SettingsError(f"threshold must be a probability in (0, 1], got {threshold!r}")
        if (isinstance(support, bool) or not isinstance(support, (int, float)) or not math.isfinite(support)
                or support <= 0 or (support >= 1 and support != int(support))):
            raise SettingsError(
                f"min_support must be a fraction in (0, 1) or a whole photo count >= 1, got {support!r}")
        if self.labels not in LEVELS:
            raise SettingsError(f"labels must be one of {', '.join(LEVELS)}, got {self.labels!r}")
        if self.objects not in OBJECT_SOURCES:
            raise SettingsError(f"objects must be one of {', '.join(OBJECT_SOURCES)}, got {self.objects!r}")


@dataclass
class LibrarySettings:
    library: Path
    out: Path | None = None
    sim: float = 0.5
    cut: float | None = None
    min_size: int = 2
    verify: bool = True  # check candidate pairs below the cut with local features; False: the cosine cut alone
    burst_seconds: float = 5.0  # same camera, this close in time (and cosine above the candidate floor): one scene
    time_weight: float = 0.0  # imagecluster's alpha: how much capture time counts next to content; 0: off
    model: str = "vgg16"
    weights: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    patterns: PatternOptions = field(default_factory=PatternOptions)
    index_objects: bool = False  # keep <out>/objects.index for `similar --object` (a forward pass per object)
    runtime: str = "openvino"  # what runs the models: openvino (converted once), or tensorflow (the fallback)
    gallery: bool = True  # write <out>/gallery/ (thumbnails made while fingerprinting)
    dask: str | None = None  # the Dask scheduler that fingerprints (dask_fingerprinter.py); None: this machine
    dask_path_map: str | None = None  # "/client/prefix=/worker/prefix": where the Dask workers see the library

    @property
    def out_dir(self) -> Path:
        return Path(self.out) if self.out is not None else Path(self.library) / OUTPUT_NAME

    @property
    def cache_path(self) -> Path:
        return self.out_dir / "fingerprints.pk"

    def validate(self) -> None:
        """Check every value; raise SettingsError with a one-line message naming the first bad one."""
        if not 0.0 <= self.sim <= 1.0:
            raise SettingsError(f"sim must be between 0 and 1, got {self.sim}")
        if self.cut is not None and not -1.0 <= self.cut <= 1.0:
            raise SettingsError(f"cut is a cosine similarity between -1 and 1, got {self.cut}")
        if self.min_size < 1:
            raise SettingsError(f"min_size must be at least 1, got {self.min_size}")
        if not isinstance(self.verify, bool):
            raise SettingsError(f"verify must be true or false, got {self.verify!r}")
        if not isinstance(self.index_objects, bool):
            raise SettingsError(f"index_objects must be true or false, got {self.index_objects!r}")
        if not isinstance(self.gallery, bool):
            raise SettingsError(f"gallery must be true or false, got {self.gallery!r}")
        if not _number_within(self.burst_seconds, 0.0, BURST_SECONDS_MAX):
            raise SettingsError(f"burst_seconds must be a number of seconds from 0 (off) to {BURST_SECONDS_MAX:g}, "
                                f"got {self.burst_seconds!r}")
        if not _number_within(self.time_weight, 0.0, 1.0) or self.time_weight == 1:
            raise SettingsError(
                f"time_weight must be from 0 (off) up to but not including 1, got {self.time_weight!r}")
        if self.runtime not in RUNTIMES:
            raise SettingsError(f"runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")
        if self.model not in MODEL_NAMES:
            raise SettingsError(f"model must be one of {', '.join(MODEL_NAMES)}, got {self.model!r}")
        if not 1 <= self.batch_size <= 1024:
            raise SettingsError(f"batch_size must be between 1 and 1024, got {self.batch_size}")
        if self.weights not in NAMED_WEIGHTS and not os.path.isfile(self.weights):
            raise SettingsError(f"weights file {self.weights} does not exist")
        if self.dask is not None and (not isinstance(self.dask, str) or not self.dask or
                                      any(c.isspace() for c in self.dask)):
            raise SettingsError(f"dask must be a scheduler address such as tcp://host:8786, got {self.dask!r}")
        if self.dask_path_map is not None:
            parse_path_map(self.dask_path_map)
        self.patterns.validate()
        self.validate_paths()

    def validate_paths(self) -> None:
        library = Path(self.library)
        if not library.is_dir():
            raise SettingsError(f"library {library} is not a folder" if library.exists() else f"library {library} does not exist")
        check_output_dir(library, self.out_dir)


def parse_path_map(text: str) -> tuple[str, str]:
    """(client prefix, worker prefix) of a dask_path_map "/client/prefix=/worker/prefix"."""
    client, sep, worker = text.partition("=") if isinstance(text, str) else ("", "", "")
    if not sep or not client.startswith("/") or not worker.startswith("/") or "=" in worker or "\0" in text:
        raise SettingsError(f"dask_path_map must be CLIENT_PREFIX=WORKER_PREFIX, two absolute paths, got {text!r}")
    return os.path.normpath(client), os.path.normpath(worker)


def _number_within(value, low: float, high: float) -> bool:
    """A real number (not a bool) in [low, high]; NaN and infinities are not."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and low <= value <= high


def check_output_dir(library: Path, out: Path) -> None:
    """Refuse an output folder where writing could harm the user's photos, their files or another tool's data."""
    from .outdir import foreign_reason, has_marker

    real_out, real_lib = os.path.realpath(out), os.path.realpath(library)
    if real_out == real_lib:
        raise SettingsError(f"out {out} is the library itself; photocluster needs a folder of its own")
    _check_not_system(out, real_out)
    parts = Path(real_out).parts
    if any(p in OTHER_TOOLS_DATA or p.endswith(".lrdata") for p in parts):
        raise SettingsError(f"out {out} lies inside another tool's data folder")
    if real_lib.startswith(real_out + "/"):
        raise SettingsError(f"out {out} contains the library; photocluster needs a folder of its own")
    if os.path.isdir(out) and not has_marker(out) and _holds_photos(out):
        raise SettingsError(f"out {out} is a folder of photos; photocluster needs a folder of its own")
    reason = foreign_reason(out)
    if reason is not None:
        raise SettingsError(f"out {out} {reason}")


def _check_not_system(out: Path, real_out: str) -> None:
    def under(tree: str) -> bool:
        return real_out.startswith(tree.rstrip("/") + "/")

    if real_out in SHARED_DIRS or real_out in PER_OWNER_DIRS or real_out == os.path.realpath(Path.home()):
        raise SettingsError(f"out {out} is a system or home folder; choose a folder of its own")
    if any(os.path.dirname(real_out) == d for d in PER_OWNER_DIRS):
        raise SettingsError(f"out {out} is a system or home folder (one user's or one service's own); "
                            "choose a folder of its own inside it")
    in_user_place = any(under(d) for d in USER_PLACES_IN_SYSTEM_TREES)
    if any(real_out == d or under(d) for d in SYSTEM_TREES) and not in_user_place:
        raise SettingsError(f"out {out} lies in a system folder")


PHOTO_SEARCH_LIMIT = 100_000  # entries looked at before giving up: a folder that large is refused anyway


def _holds_photos(folder: Path) -> bool:
    """True when `folder` or any folder below it holds a photo (symlinks are not followed)."""
    from .library import is_photo_name

    seen = 0
    for dirpath, _dirnames, filenames in os.walk(folder):  # os.walk does not descend into symlinked folders
        if any(is_photo_name(name) and _is_regular(os.path.join(dirpath, name)) for name in filenames):
            return True
        seen += len(filenames)
        if seen > PHOTO_SEARCH_LIMIT:
            return False
    return False


def _is_regular(path: str) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False
