"""The daemon's reload (SIGHUP): read the config file again and apply it to the running daemon.

A library whose settings did not change keeps its watch, its pipeline and its fingerprints in memory; a changed
one is set up anew and rescanned; one no longer configured is unwatched. A bad config file changes nothing.
"""
from __future__ import annotations

import logging
import os
import time

from .config import Config, DaemonTimings, load_config
from .settings import SettingsError
from .watched import Library

log = logging.getLogger("photocluster.daemon")  # the daemon's own logger: these are its lines


class ConfigReloading:
    """The reload half of daemon.Daemon, which provides what these methods use: config, timings, libraries,
    notifier, worker, fingerprinter, _lock, _add_library() and _unwatch()."""

    def reload(self) -> None:
        """Read the config file again; a bad one keeps the current config, and says why."""
        if self.config.source is None:
            log.warning("SIGHUP: nothing to reload (the libraries were given on the command line)")
            return
        self.notifier.reloading()
        try:
            config = load_config(self.config.source)
        except SettingsError as exc:
            log.error("config reload failed, keeping the current config: %s", exc)
            self.notifier.ready()
            return
        self._apply(config)
        self.notifier.ready()

    def _apply(self, config: Config) -> None:
        old = {os.path.realpath(lib.root): lib for lib in self.libraries}
        kept: list[Library] = []
        for settings in config.libraries:
            library = old.pop(os.path.realpath(settings.library), None)
            if library is not None and library.settings == settings and library.failed is None:
                kept.append(library)
                continue
            if library is not None:
                self._unwatch(library)
                self.libraries.remove(library)
            kept.append(self._add_library(settings))
            with self._lock:
                kept[-1].mark(time.monotonic() - self.timings.quiet_seconds, rescan=True)
        for library in old.values():
            self._unwatch(library)
            log.info("%s: no longer watched", library.root)
        self.libraries = kept
        self._apply_timings(config.timings)
        self.config = config
        log.info("config reloaded from %s: watching %s", config.source, ", ".join(lib.root for lib in kept))

    def _apply_timings(self, timings: DaemonTimings) -> None:
        self.timings = timings
        self.worker.idle_seconds = timings.worker_idle_seconds
        self.worker.batch_timeout = timings.batch_timeout_seconds
        self.fingerprinter.retry_seconds = timings.retry_seconds
        self.fingerprinter.retry_max_seconds = timings.retry_max_seconds
