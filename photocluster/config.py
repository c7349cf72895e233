"""The daemon's configuration: a TOML file listing the libraries to watch and the daemon's timings.

Where it is read from: `--config FILE`; else `$XDG_CONFIG_HOME/photocluster/config.toml` (a user's own), if it
exists; else `/etc/photocluster/config.toml` (the system service's).

    [daemon]                        # optional; every key has a default (see DaemonTimings)
    quiet_seconds = 2
    max_delay_seconds = 30

    [[library]]                     # one table per library; each gets its own output, cache and settings
    path = "/srv/photos/family"     # required
    out = "/var/lib/photocluster/family"
    model = "vgg16"
    sim = 0.5
    [library.patterns]
    threshold = 0.2

Every problem is reported as one line naming the file and the key, e.g.
`/etc/photocluster/config.toml: [[library]] #2: sim must be a number, got 'high'`, and the daemon refuses to start.
Relative paths are taken relative to the config file's folder; `~` is expanded.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .lastrun import adopt_recorded_model
from .settings import LibrarySettings, PatternOptions, SettingsError

SYSTEM_CONFIG = Path("/etc/photocluster/config.toml")


class ConfigError(SettingsError):
    """A bad config file. The message is one line naming the file and the key."""


@dataclass
class DaemonTimings:
    """How the daemon paces itself. All in seconds."""

    quiet_seconds: float = 2.0  # run once no event came for this long...
    max_delay_seconds: float = 30.0  # ...or once this long has passed since the first unprocessed event
    settle_seconds: float = 1.0  # a file whose size or mtime changed within this long is still being written
    rescan_seconds: float = 3600.0  # a full rescan this often, the safety net for lost events; 0: never
    root_check_seconds: float = 5.0  # how often to check that each library root is still there (unmounts)
    worker_idle_seconds: float = 120.0  # the fingerprint worker (and its model) exits after this long unused
    retry_seconds: float = 2.0  # first wait after a worker crash or a failed run; doubles on each repeat...
    retry_max_seconds: float = 300.0  # ...up to this
    batch_timeout_seconds: float = 600.0  # a worker silent this long is taken as hung, and killed

    def validate(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "rescan_seconds" and value == 0:
                continue
            if value <= 0:
                raise SettingsError(f"{f.name} must be greater than 0, got {value}")
        if self.max_delay_seconds < self.quiet_seconds:
            raise SettingsError(f"max_delay_seconds ({self.max_delay_seconds}) must not be less than "
                                f"quiet_seconds ({self.quiet_seconds})")
        if self.retry_max_seconds < self.retry_seconds:
            raise SettingsError(f"retry_max_seconds ({self.retry_max_seconds}) must not be less than "
                                f"retry_seconds ({self.retry_seconds})")


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


def load_config(path: Path) -> Config:
    """Read and validate a config file. Raises ConfigError with a one-line message."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, path)


# What each table may hold, and the type each value must have. TOML already distinguishes strings, integers,
# floats and booleans, so a plain type check gives exact messages; a number may be written 2 or 2.0.
_NUMBER, _INT, _STR, _BOOL, _TABLE = "a number", "a whole number", "a string", "true or false", "a table"
_TOP_KEYS = {"daemon": _TABLE, "library": "a list of [[library]] tables"}
_LIBRARY_KEYS = {"path": _STR, "out": _STR, "sim": _NUMBER, "cut": _NUMBER, "min_size": _INT, "model": _STR,
                 "weights": _STR, "batch_size": _INT, "patterns": _TABLE}
_PATTERN_KEYS = {"enabled": _BOOL, "threshold": _NUMBER, "min_support": _NUMBER, "labels": _STR}
_DAEMON_KEYS = {f.name: _NUMBER for f in fields(DaemonTimings)}


def parse_config(data: dict[str, Any], path: Path) -> Config:
    """Validate the parsed TOML of `path` into a Config."""
    _check_keys(data, _TOP_KEYS, path, "")
    daemon = data.get("daemon", {})
    _check_keys(daemon, _DAEMON_KEYS, path, "[daemon] ")
    timings = DaemonTimings(**{k: float(v) for k, v in daemon.items()})
    _settings_errors(timings.validate, path, "[daemon] ")
    tables = data.get("library", [])
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"{path}: no [[library]] tables; add one per library to watch")
    libraries = [_library(table, path, f"[[library]] #{i}: ") for i, table in enumerate(tables, 1)]
    _check_distinct(libraries, path)
    return Config(libraries, timings, path)


def _library(table: Any, path: Path, where: str) -> LibrarySettings:
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: {where.rstrip(': ')} must be a table")
    _check_keys(table, _LIBRARY_KEYS, path, where)
    if "path" not in table:
        raise ConfigError(f"{path}: {where}path is missing")
    patterns = table.get("patterns", {})
    _check_keys(patterns, _PATTERN_KEYS, path, f"{where}[patterns] ")
    pattern_options = replace(PatternOptions(), **patterns)
    _settings_errors(pattern_options.validate, path, f"{where}[patterns] ")
    values = {k: v for k, v in table.items() if k != "patterns"}
    for key in ("path", "out", "weights"):
        if key in values and not (key == "weights" and values[key] in ("imagenet", "random", "none")):
            values[key] = _resolve(values[key], path)
    library = values.pop("path")
    if not os.path.isdir(library):
        problem = "is not a folder" if os.path.exists(library) else "does not exist"
        raise ConfigError(f"{path}: {where}path {library} {problem}")
    settings = LibrarySettings(library=Path(library), patterns=pattern_options, **values)
    if settings.out is not None:
        settings.out = Path(settings.out)
    if settings.weights is not None:
        settings.weights = str(settings.weights)
    _settings_errors(settings.validate, path, where)
    if "model" not in table:  # the model of the library's last run, else the default (lastrun.py)
        _settings_errors(lambda: adopt_recorded_model(settings), path, where)
    return settings


def _resolve(value: str, config_path: Path) -> Path:
    expanded = Path(os.path.expanduser(value))
    return expanded if expanded.is_absolute() else config_path.parent / expanded


def _check_keys(table: Any, known: dict[str, str], path: Path, where: str) -> None:
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: {where.strip() or 'the file'} must be a table")
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"{path}: {where}unknown key {key!r} (known keys: {', '.join(known)})")
        if not _has_type(value, known[key]):
            raise ConfigError(f"{path}: {where}{key} must be {known[key]}, got {_describe(value)}")


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
    shown = repr(value) if not isinstance(value, (list, dict)) else ""
    return f"{shown} ({kind})" if shown else kind


def _settings_errors(validate, path: Path, where: str) -> None:
    try:
        validate()
    except SettingsError as exc:
        raise ConfigError(f"{path}: {where}{exc}") from None


def _check_distinct(libraries: list[LibrarySettings], path: Path) -> None:
    """Two libraries must not share a root or an output folder: they would overwrite each other's cache."""
    seen_roots: dict[str, int] = {}
    seen_outs: dict[str, int] = {}
    for i, settings in enumerate(libraries, 1):
        root, out = os.path.realpath(settings.library), os.path.realpath(settings.out_dir)
        if root in seen_roots:
            raise ConfigError(f"{path}: [[library]] #{i}: path {settings.library} is already "
                              f"[[library]] #{seen_roots[root]}")
        if out in seen_outs:
            raise ConfigError(f"{path}: [[library]] #{i}: out {settings.out_dir} is already the output of "
                              f"[[library]] #{seen_outs[out]}")
        seen_roots[root], seen_outs[out] = i, i
