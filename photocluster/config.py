"""The daemon's configuration: a TOML file listing the libraries to watch and the daemon's timings.

Where it is read from: `--config FILE`; else `$XDG_CONFIG_HOME/photocluster/config.toml` (a user's own), if it
exists; else `/etc/photocluster/config.toml` (the system service's).

    [daemon]                        # optional; every key has a default (see DaemonTimings)
    quiet_seconds = 0.5
    max_delay_seconds = 30

    [[library]]                     # one table per library; each gets its own output, cache and settings
    path = "/srv/photos/family"     # required
    out = "/var/lib/photocluster/family"
    model = "vgg16"
    sim = 0.5
    index_objects = false           # true: keep <out>/objects.index for `similar --object` (CLI runs only, yet)
    dask = "tcp://scheduler:8786"   # fingerprint on this Dask cluster (README.rst); dask_path_map = "/a=/b" too
    [library.patterns]
    threshold = 0.2

Every problem is reported as one line naming the file and the key, e.g.
`/etc/photocluster/config.toml: [[library]] #2: sim must be a number, got 'high'`, and the daemon refuses to start.
Relative paths are taken relative to the config file's folder; `~` is expanded.
"""
from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .fsutil import NotAFileError, open_regular
from .lastrun import adopt_recorded_model
from .settings import NAMED_WEIGHTS, LibrarySettings, PatternOptions, SettingsError

SYSTEM_CONFIG = Path("/etc/photocluster/config.toml")


class ConfigError(SettingsError):
    """A bad config file: one line per problem, each naming the file and the key. str() joins them with "; "."""

    def __init__(self, problems: str | list[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


TIMING_MAX = 365 * 24 * 3600.0  # a year: anything longer is a typo, and waits on huge timeouts overflow


@dataclass
class DaemonTimings:
    """How the daemon paces itself. All in seconds."""

    quiet_seconds: float = 0.5  # run once no event came for this long...
    max_delay_seconds: float = 30.0  # ...or once this long has passed since the first unprocessed event
    settle_seconds: float = 1.0  # a file whose size or mtime changed within this long is still being written
    rescan_seconds: float = 3600.0  # a full rescan this often, the safety net for lost events; 0: never
    root_check_seconds: float = 5.0  # how often to check that each library root is still there (unmounts)
    worker_idle_seconds: float = 120.0  # the fingerprint worker (and its model) exits after this long unused
    retry_seconds: float = 2.0  # first wait after a worker crash or a failed run; doubles on each repeat...
    retry_max_seconds: float = 300.0  # ...up to this
    batch_timeout_seconds: float = 600.0  # a worker silent this long is taken as hung, and killed

    def validate(self) -> None:
        """Raise SettingsError naming the first bad timing."""
        problems = self.problems()
        if problems:
            raise SettingsError(problems[0])

    def problems(self) -> list[str]:
        """Every bad timing, one line each: each must be finite, above 0 (rescan_seconds may be 0) and at most a
        year (a NaN compares false with everything, so it would pass a plain `<= 0` check and stall the daemon)."""
        problems = []
        for f in fields(self):
            value = getattr(self, f.name)
            if not math.isfinite(value) or value > TIMING_MAX:
                problems.append(f"{f.name} must be a finite number of seconds up to {TIMING_MAX:.0f}, got {value}")
            elif value <= 0 and not (f.name == "rescan_seconds" and value == 0):
                problems.append(f"{f.name} must be greater than 0, got {value}")
        if problems:
            return problems  # the pairs below compare only sound values
        if self.max_delay_seconds < self.quiet_seconds:
            problems.append(f"max_delay_seconds ({self.max_delay_seconds}) must not be less than "
                            f"quiet_seconds ({self.quiet_seconds})")
        if self.retry_max_seconds < self.retry_seconds:
            problems.append(f"retry_max_seconds ({self.retry_max_seconds}) must not be less than "
                            f"retry_seconds ({self.retry_seconds})")
        return problems


@dataclass
class Config:
    libraries: list[LibrarySettings]
    timings: DaemonTimings = field(default_factory=DaemonTimings)
    source: Path | None = None  # the file it came from; None when the libraries came from the command line


def user_config_path() -> Path:
    config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(config_home) / "photocluster" / "config.toml"


def default_config_path() -> Path:
    """The user's config when there is one, else the system service's."""
    user = user_config_path()
    return user if user.exists() else SYSTEM_CONFIG


def existing_default_config() -> Path:
    """default_config_path(), or ConfigError naming both places looked in when neither exists."""
    path = default_config_path()
    if not path.exists():
        raise ConfigError(f"no config file: looked for {user_config_path()} and {SYSTEM_CONFIG}; write one, "
                          "or give PATHs to watch")
    return path


CONFIG_MAX_BYTES = 1 << 20  # a config is a few hundred bytes; a bigger file is not one


def load_config(path: Path) -> Config:
    """Read and validate a config file. Raises ConfigError listing every problem, one line each."""
    path = Path(path)
    try:
        # The config is the user's file: a link to it is followed (dotfiles often are links), but a FIFO or a
        # device is never opened in a way that could block.
        with open_regular(path, follow_symlinks=True) as fh:
            raw = fh.read(CONFIG_MAX_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except NotAFileError as exc:
        raise ConfigError(f"{path}: cannot read: it is {exc.kind}, not a file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > CONFIG_MAX_BYTES:
        raise ConfigError(f"{path}: larger than {CONFIG_MAX_BYTES} bytes; not a photocluster config")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start + 1}); TOML files must be UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise ConfigError(f"{path}: values nested too deeply; not a photocluster config") from None
    return parse_config(data, path)


# What each table may hold, and the type each value must have. TOML already distinguishes strings, integers,
# floats and booleans, so a plain type check gives exact messages; a number may be written 2 or 2.0.
_NUMBER, _INT, _STR, _BOOL, _TABLE = "a number", "a whole number", "a string", "true or false", "a table"
_TOP_KEYS = {"daemon": _TABLE, "library": "a list of [[library]] tables"}
_LIBRARY_KEYS = {"path": _STR, "out": _STR, "sim": _NUMBER, "cut": _NUMBER, "min_size": _INT, "model": _STR,
                 "weights": _STR, "batch_size": _INT, "patterns": _TABLE,
                 "verify": _BOOL, "burst_seconds": _NUMBER, "time_weight": _NUMBER, "index_objects": _BOOL,
                 "runtime": _STR, "gallery": _BOOL, "dask": _STR, "dask_path_map": _STR}
_PATTERN_KEYS = {"enabled": _BOOL, "threshold": _NUMBER, "min_support": _NUMBER, "labels": _STR, "objects": _STR}
_DAEMON_KEYS = {f.name: _NUMBER for f in fields(DaemonTimings)}
# A bad value of these is put back to its default after it is reported, so that the rest can still be checked.
_RESETTABLE = {f.name: f for f in fields(LibrarySettings)}


class _Problems(list):
    """Every problem found, so that one `watch --check` shows them all. Each is one line naming file and key."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path

    def add(self, where: str, message: str) -> None:
        self.append(f"{self.path}: {where}{message}")


def parse_config(data: dict[str, Any], path: Path) -> Config:
    """Validate the parsed TOML of `path` into a Config. Raises ConfigError listing every problem."""
    problems = _Problems(path)
    top = _checked_keys(data, _TOP_KEYS, problems, "")
    timings = _timings(_checked_keys(top.get("daemon", {}), _DAEMON_KEYS, problems, "[daemon] "), problems)
    tables = top.get("library", [])
    if not tables and ("library" in top or "library" not in data):  # (a `library` of the wrong type is reported)
        problems.add("", "no [[library]] tables; add one per library to watch")
    libraries = [(number, _library(table, problems, f"[[library]] #{number}: "))
                 for number, table in enumerate(tables, 1)]
    libraries = [(number, settings) for number, settings in libraries if settings is not None]
    _check_overlaps(libraries, problems)
    if problems:
        raise ConfigError(problems)
    return Config([settings for _, settings in libraries], timings, path)


def _timings(values: dict[str, Any], problems: _Problems) -> DaemonTimings:
    numbers = {}
    for key, value in values.items():
        try:
            numbers[key] = float(value)
        except OverflowError:  # a TOML integer beyond any float
            numbers[key] = math.inf
    timings = DaemonTimings(**numbers)
    for message in timings.problems():
        problems.add("[daemon] ", message)
    return timings


def _library(table: Any, problems: _Problems, where: str) -> LibrarySettings | None:
    """The settings of one [[library]] table, or None when it has no usable root. Problems are reported, not raised,
    so settings with bad values still come back, to be checked for overlaps."""
    if not isinstance(table, dict):
        problems.add(where.rstrip(": "), " must be a table")
        return None
    values = _checked_keys(table, _LIBRARY_KEYS, problems, where)
    patterns = _pattern_options(values.pop("patterns", {}), problems, f"{where}[patterns] ")
    if "path" not in values:
        if "path" not in table:
            problems.add(where, "path is missing")
        return None
    for key in ("path", "out", "weights"):
        if key in values and not (key == "weights" and values[key] in NAMED_WEIGHTS):
            if "\0" in values[key]:
                problems.add(where, f"{key} must not contain a NUL character")
                return None
            values[key] = _resolve(values[key], problems.path)
    library = values.pop("path")
    if not os.path.isdir(library):
        problems.add(where, f"path {library} {'is not a folder' if os.path.exists(library) else 'does not exist'}")
        return None
    settings = LibrarySettings(library=Path(library), patterns=patterns, **values)
    if settings.out is not None:
        settings.out = Path(settings.out)
    if settings.weights is not None:
        settings.weights = str(settings.weights)
    if not _settings_valid(settings, problems, where):
        return settings  # reported; still checked for overlaps with the others
    if "model" not in table:  # the model of the library's last run, else the default (lastrun.py)
        try:
            adopt_recorded_model(settings)
        except SettingsError as exc:
            problems.add(where, str(exc))
            return None
    return settings


def _settings_valid(settings: LibrarySettings, problems: _Problems, where: str) -> bool:
    """Report every bad value: LibrarySettings.validate stops at the first (its message starts with the key), so
    each one found is put back to its default and the check repeated. False when the library cannot be used."""
    valid = True
    for _ in range(len(_RESETTABLE) + 1):
        try:
            settings.validate()
            return valid
        except SettingsError as exc:
            problems.add(where, str(exc))
            valid = False
            key = str(exc).split(" ", 1)[0]
            if key not in _RESETTABLE or key in ("library", "out", "patterns"):
                return False
            setattr(settings, key, _RESETTABLE[key].default)
    return False


def _pattern_options(values: dict[str, Any], problems: _Problems, where: str) -> PatternOptions:
    """Each pattern setting checked on its own (PatternOptions.validate stops at the first), bad ones dropped."""
    good = {}
    for key, value in _checked_keys(values, _PATTERN_KEYS, problems, where).items():
        try:
            replace(PatternOptions(), **{key: value}).validate()
            good[key] = value
        except SettingsError as exc:
            problems.add(where, str(exc))
    return replace(PatternOptions(), **good)


def _resolve(value: str, config_path: Path) -> Path:
    expanded = Path(os.path.expanduser(value))
    return expanded if expanded.is_absolute() else config_path.parent / expanded


def _checked_keys(table: Any, known: dict[str, str], problems: _Problems, where: str) -> dict[str, Any]:
    """The entries of `table` with a known key and the right type; every other one is reported."""
    if not isinstance(table, dict):
        problems.add("", f"{where.strip() or 'the file'} must be a table")
        return {}
    good = {}
    for key, value in table.items():
        if key not in known:
            problems.add(where, f"unknown key {_shown(key)} (known keys: {', '.join(known)})")
        elif not _has_type(value, known[key]):
            problems.add(where, f"{key} must be {known[key]}, got {_describe(value)}")
        else:
            good[key] = value
    return good


def _has_type(value: Any, kind: str) -> bool:
    if kind == _NUMBER:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == _BOOL:
        return isinstance(value, bool)
    if kind == _STR:
        return isinstance(value, str)
    if kind == _TABLE:
        return isinstance(value, dict)
    return isinstance(value, list)


def _describe(value: Any) -> str:
    kinds = {bool: "a boolean", int: "a whole number", float: "a number", str: "a string", list: "a list",
             dict: "a table"}
    kind = kinds.get(type(value), type(value).__name__)
    shown = _shown(value) if not isinstance(value, (list, dict)) else ""
    return f"{shown} ({kind})" if shown else kind


def _shown(value: Any) -> str:
    """repr() of a value from the file, short enough for one line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_overlaps(libraries: list[tuple[int, LibrarySettings]], problems: _Problems) -> None:
    """No folder of one library (its root or its output) may be, contain or lie inside a folder of another.

    Otherwise one library's scan sees the other's photos or output, the daemon's watches overlap (and miss events),
    and two caches could be one file. A library's own output inside its own root is the default, and fine.
    """
    seen: list[tuple[int, str, str, Path]] = []  # (number, "path" or "out", real path, as written)
    for number, settings in libraries:
        mine = [("path", os.path.realpath(settings.library), settings.library),
                ("out", os.path.realpath(settings.out_dir), settings.out_dir)]
        clash = next(((kind, shown, other) for kind, real, shown in mine for other in seen
                      if _related(real, other[2])), None)
        if clash:
            kind, shown, (other_number, other_kind, other_real, other_shown) = clash
            relation = _relation(os.path.realpath(shown), other_real)
            what = "[[library]] #{}".format(other_number) if other_kind == "path" else \
                "the output of [[library]] #{}".format(other_number)
            problems.add(f"[[library]] #{number}: ",
                         f"{kind} {shown} {relation} {what} ({other_shown}); libraries must not overlap")
        seen += [(number, kind, real, shown) for kind, real, shown in mine]


def _related(one: str, other: str) -> bool:
    return one == other or one.startswith(other.rstrip("/") + "/") or other.startswith(one.rstrip("/") + "/")


def _relation(one: str, other: str) -> str:
    if one == other:
        return "is already"
    return "lies inside" if one.startswith(other.rstrip("/") + "/") else "contains"
