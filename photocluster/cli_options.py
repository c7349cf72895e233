"""The command-line options and parser pieces that the run, watch and other commands share."""
from __future__ import annotations

import argparse

from . import __version__
from .settings import LABEL_LEVELS, OBJECT_SOURCES, RUNTIMES, LibrarySettings, PatternOptions


class UsageError(Exception):
    """Bad command-line input; the message is printed as one line and the exit status is 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so every error is one line with our own exit status."""

    def error(self, message: str):
        raise UsageError(message)


def _number(kind: type, name: str):
    def parse(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a {kind.__name__}, got {text!r}") from None

    return parse


def _min_support(text: str):
    from .patterns import parse_min_support

    try:
        return parse_min_support(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_runtime_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runtime", choices=RUNTIMES, default="openvino",
                   help="what runs the models: openvino (default; converted once, then no TensorFlow at start-up) "
                   "or tensorflow (the fallback)")


def _add_scene_options(p: argparse.ArgumentParser) -> None:
    defaults = LibrarySettings
    p.add_argument("--verify", choices=("on", "off"), default="on" if defaults.verify else "off",
                   help="on: photos a little below the cut still group when their local features match (the same "
                   "scene from another angle); off: the cosine cut alone (default: %(default)s)")
    p.add_argument("--burst-seconds", type=_number(float, "--burst-seconds"), default=defaults.burst_seconds,
                   metavar="S", help="photos from the same camera taken at most S seconds apart group as one scene "
                   "when their content is close to the cut; 0: off (default: %(default)g)")
    p.add_argument("--time-weight", type=_number(float, "--time-weight"), default=defaults.time_weight,
                   metavar="A", help="0 to below 1: how much capture time counts next to content, to group trips "
                   "or events rather than scenes; photos a day or more apart count as far apart (default: "
                   "%(default)g, off)")


def _add_pattern_options(p: argparse.ArgumentParser) -> None:
    defaults = PatternOptions()
    p.add_argument("--threshold", type=_number(float, "--threshold"), default=defaults.threshold,
                   help="smallest label probability, or detection score, that counts as an object in a photo "
                   f"(default: {defaults.threshold})")
    p.add_argument("--min-support", type=_min_support, default=defaults.min_support,
                   help="how many of a folder's photos a pattern must occur in: a count such as 5, or a fraction "
                   f"such as 0.05 or 5%% (never fewer than 2 photos) (default: {defaults.min_support})")
    p.add_argument("--labels", choices=LABEL_LEVELS, default=defaults.labels,
                   help="object names: coarse (dog, car, boat...) or fine (the 1000 ImageNet classes) "
                   f"(default: {defaults.labels})")
    p.add_argument("--objects", choices=OBJECT_SOURCES, default=defaults.objects,
                   help="where a photo's objects come from: detector (every COCO object found), imagenet (the "
                   "classifier's labels, which also name scenes) or both, merged (default: %(default)s)")


def _add_verbosity(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="store_true", help="say more (and show tracebacks of internal errors)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    p.add_argument("--version", action="version", version=f"photocluster {__version__}")
