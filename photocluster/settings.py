"""Settings of one library, validated the same way whether they come from the command line or a config file."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

MODEL_NAMES = ("vgg16", "squeezenet")
LABEL_LEVELS = ("coarse", "fine")
NAMED_WEIGHTS = (None, "imagenet", "random", "none")  # anything else names a weights file
OUTPUT_NAME = "photocluster"
# Where photocluster must never write, whatever --out says.
SYSTEM_DIRS = ("/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/run", "/sbin", "/sys", "/usr", "/var")
# Folders that belong to other tools: version control, thumbnail caches, trash cans, NAS indexers.
OTHER_TOOLS_DATA = (".git", ".hg", ".svn", ".thumbnails", ".Trash", ".Trash-1000", ".dtrash", "@eaDir", "#recycle")


class SettingsError(ValueError):
    """A setting with a bad value. The message is one line that names the setting."""


@dataclass
class PatternOptions:
    """Whether and how to write the per-folder object summaries (see patterns.PatternSettings)."""

    enabled: bool = True
    threshold: float = 0.2
    min_support: float = 0.05  # a fraction of the folder's photos when < 1, a photo count when >= 1
    labels: str = "coarse"

    def to_pattern_settings(self):
        from .patterns import PatternSettings

        try:
            return PatternSettings(self.threshold, self.min_support, self.labels)
        except ValueError as exc:
            raise SettingsError(str(exc)) from None

    def validate(self) -> None:
        self.to_pattern_settings()


@dataclass
class LibrarySettings:
    library: Path
    out: Path | None = None
    sim: float = 0.5
    cut: float | None = None
    min_size: int = 2
    model: str = "vgg16"
    weights: str | None = None
    batch_size: int = 16
    patterns: PatternOptions = field(default_factory=PatternOptions)

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
        if self.model not in MODEL_NAMES:
            raise SettingsError(f"model must be one of {', '.join(MODEL_NAMES)}, got {self.model!r}")
        if not 1 <= self.batch_size <= 1024:
            raise SettingsError(f"batch_size must be between 1 and 1024, got {self.batch_size}")
        if self.weights not in NAMED_WEIGHTS and not os.path.isfile(self.weights):
            raise SettingsError(f"weights file {self.weights} does not exist")
        self.patterns.validate()
        self.validate_paths()

    def validate_paths(self) -> None:
        library = Path(self.library)
        if not library.is_dir():
            raise SettingsError(f"library {library} is not a folder" if library.exists() else f"library {library} does not exist")
        check_output_dir(library, self.out_dir)


def check_output_dir(library: Path, out: Path) -> None:
    """Refuse an output folder where writing could harm the user's photos or another tool's data."""
    real_out, real_lib = os.path.realpath(out), os.path.realpath(library)
    if real_out == real_lib:
        raise SettingsError(f"out {out} is the library itself; photocluster needs a folder of its own")
    if real_out in SYSTEM_DIRS or real_out == os.path.realpath(Path.home()):
        raise SettingsError(f"out {out} is a system or home folder; choose a folder of its own")
    if any(real_out.startswith(d + "/") for d in SYSTEM_DIRS[1:] if d not in ("/var", "/run")):
        raise SettingsError(f"out {out} lies in a system folder")
    parts = Path(real_out).parts
    if any(p in OTHER_TOOLS_DATA or p.endswith(".lrdata") for p in parts):
        raise SettingsError(f"out {out} lies inside another tool's data folder")
    if real_lib.startswith(real_out + "/"):
        raise SettingsError(f"out {out} contains the library; photocluster needs a folder of its own")
    if os.path.isdir(out) and _holds_photos(out) and not _is_ours(out):
        raise SettingsError(f"out {out} is a folder of photos; photocluster needs a folder of its own")


def _holds_photos(folder: Path) -> bool:
    from .library import is_photo_name

    try:
        with os.scandir(folder) as it:
            return any(is_photo_name(e.name) and e.is_file(follow_symlinks=False) for e in it)
    except OSError:
        return False


def _is_ours(folder: Path) -> bool:
    return any(os.path.lexists(os.path.join(folder, marker)) for marker in ("fingerprints.pk", "clusters", ".lock"))
