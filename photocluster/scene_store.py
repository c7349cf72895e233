"""The scene store: local features, capture info and pair verdicts of one library, kept in <out>/scenes/.

    <out>/scenes/                      our folder (holds the `.photocluster-folder` mark, as every folder below)
    <out>/scenes/captures              every photo's Capture, loaded whole at open
    <out>/scenes/pairs                 every verified pair's Verdict, loaded whole at open
    <out>/scenes/features/<ab>/<ab...> one photo's Features: 32 hex digits of the key's digest, read lazily

A photo is keyed like the fingerprints, by (rel, size, mtime_ns): an edited photo is a new key, and its old data is
dropped by forget_except. Features are up to 66,000 bytes a photo (verify.py), 6.6 GB at 100,000 photos, so they
are never all in memory: one file each, read when asked for. 100,000 files in one folder would make every lookup
slow on file systems without indexed folders (exFAT disks, some NAS shares) and every listing long, so they are
sharded into 256 folders by the first two hex digits of the digest (about 400 files each at 100,000 photos).

The files' formats are in scene_formats.py: checked binary records, never pickle. A file that fails its checks is
refused with one warning; one of another format version or made with other verification settings is stale:
dropped quietly and made again.

Every write is atomic (fsutil.atomic_writer) and every access goes through directory descriptors with O_NOFOLLOW: a
symlink at any of these names is never followed and never removed, a file or folder the store did not make (one
without our mark, one whose name is not ours) is never read as ours nor deleted. A folder is ours when it holds the
mark, or when it is empty (then it gets one). Reading never raises: what cannot be read is a one-line warning and
is treated as absent (warned about once per file and store). put_* raise ValueError for what verify and capture
cannot give; writing raises only the OSErrors of a failing disk or a missing <out> (the pipeline adopts <out>
first), like the fingerprint cache's save. A folder or file of someone else's in the way is one warning, and that
data is not kept. Features come back as read-only arrays.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from . import scene_formats, verify
from .capture import Capture
from .fsutil import (FILE, FOLDER_MARK, FileTooLarge, ForeignEntry, atomic_writer, is_atomic_temporary, is_regular_at,
                     lstat_at, open_dir, our_folder, read_regular, remove_made)
from .library import PhotoFile, printable_path
from .scene_formats import (DIGEST, PhotoKey, Refused, Stale, decode_captures, decode_features, decode_pairs,
                            encode_capture, encode_captures, encode_features, encode_pairs)
from .verify import Features, Verdict

log = logging.getLogger(__name__)

SCENES, FEATURES, CAPTURES, PAIRS = "scenes", "features", "captures", "pairs"
_FEATURE_NAME = re.compile(r"[0-9a-f]{32}")
_FEATURE_TEMPORARY = re.compile(r"\.[0-9a-f]{32}\..+\.tmp")  # atomic_writer's `.<name>.<token>.tmp`
_SHARD = re.compile(r"[0-9a-f]{2}")


def photo_key(photo: PhotoFile) -> PhotoKey:
    return (photo.rel, photo.size, photo.mtime_ns)


def key_digest(key: PhotoKey) -> bytes:
    """The 16 bytes that name a photo key on disk (its features file, its pairs)."""
    rel, size, mtime_ns = key
    return hashlib.sha256(b"%b\0%d\0%d" % (os.fsencode(rel), size, mtime_ns)).digest()[:DIGEST]


class SceneStore:
    """Local features, capture info and pair verdicts of one library, in <out>/scenes/ (ours, marked)."""

    def __init__(self, out_dir: Path, usable: bool = True):
        self.out_dir = Path(out_dir)
        self._usable = usable  # False: scenes/ is someone else's; nothing is read or written there
        self._captures: dict[PhotoKey, Capture] = {}
        self._pair_keys = np.zeros(0, "S32")  # sorted; with the three columns below, what the pairs file holds
        self._inliers = np.zeros(0, np.uint32)
        self._spread = np.zeros(0, np.float32)
        self._same = np.zeros(0, np.uint8)
        self._new_pairs: dict[bytes, Verdict] = {}  # put since the last save; they win over the columns
        self._captures_dirty = self._pairs_dirty = False
        self._warned: set[str] = set()

    # --- opening -----------------------------------------------------------------------------------------------
    @classmethod
    def open(cls, out_dir: Path) -> SceneStore:
        """The store of `out_dir`: captures and verdicts read now, features when asked for. Never raises for what
        is (or is not) on disk: each problem is one warning, and what could not be read is absent."""
        store = cls(out_dir)
        try:
            with open_dir(out_dir, follow=True) as out_fd, our_folder(out_fd, SCENES) as fd:
                store._load(fd)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("scenes: not keeping scene data in %s: %s", _shown(out_dir, SCENES), _reason(exc))
            store._usable = False
        return store

    def _load(self, scenes_fd: int) -> None:
        self._captures_dirty, self._captures = self._load_file(
            scenes_fd, CAPTURES, scene_formats.CAPTURES_MAX_BYTES, decode_captures, {})
        empty = (self._pair_keys, self._inliers, self._spread, self._same)
        self._pairs_dirty, columns = self._load_file(scenes_fd, PAIRS, scene_formats.pairs_max_bytes(), decode_pairs,
                                                     empty)
        self._pair_keys, self._inliers, self._spread, self._same = columns

    def _load_file(self, fd: int, name: str, limit: int, decode, empty):
        """(whether the file must be written anew, its decoded contents or `empty`)."""
        try:
            raw = _read_ours(fd, name, limit)
            return False, (empty if raw is None else decode(raw))
        except Stale:
            log.info("scenes: %s were made by another version or with other settings; they are made again", name)
        except Refused as exc:
            log.warning("scenes: ignoring %s: %s", _shown(self.out_dir, SCENES, name), exc)
        except OSError as exc:  # a symlink, a FIFO, a folder, an unreadable file: not ours to replace
            log.warning("scenes: ignoring %s: %s", _shown(self.out_dir, SCENES, name), _reason(exc))
            return False, empty
        return True, empty

    @property
    def dirty(self) -> bool:
        """True when captures or verdicts changed since they were last saved (features are written at once)."""
        return self._captures_dirty or self._pairs_dirty

    # --- features ----------------------------------------------------------------------------------------------
    def features(self, key: PhotoKey) -> Features | None:
        """The stored features of `key`, read from its file now; None when there are none (or none usable)."""
        if not self._usable:
            return None
        shard, name = _feature_path(key)
        folder = _shown(self.out_dir, SCENES, FEATURES, shard)
        try:
            with open_dir(self.out_dir, follow=True) as out_fd, \
                    open_dir(f"{SCENES}/{FEATURES}/{shard}", dir_fd=out_fd) as fd:
                if not is_regular_at(FOLDER_MARK, fd):
                    return None  # not ours, or a folder made but not yet marked: it holds nothing of ours
                try:
                    raw = _read_ours(fd, name, scene_formats.features_max_bytes())
                    return None if raw is None else decode_features(raw, key)
                except (OSError, Refused) as exc:
                    reason = _reason(exc) if isinstance(exc, OSError) else exc
                    self._warn_once(f"read {folder}/{name}", "scenes: ignoring %s (features of %s): %s",
                                    os.path.join(folder, name), printable_path(key[0]), reason)
                    return None
        except (FileNotFoundError, Stale):
            return None
        except OSError as exc:  # a symlink or a file on the way to the folder: left alone
            self._warn_once(f"read {folder}", "scenes: not reading features in %s: %s", folder, _reason(exc))
            return None

    def put_features(self, key: PhotoKey, features: Features) -> None:
        """Write the features of `key` now, atomically (a later kill loses nothing written).

        ValueError for features that verify.local_features cannot have made (the file would be refused)."""
        data = encode_features(key, features)
        if not self._usable:
            return
        shard, name = _feature_path(key)
        try:
            with open_dir(self.out_dir, follow=True) as out_fd, our_folder(out_fd, SCENES, create=True) as scenes_fd, \
                    our_folder(scenes_fd, FEATURES, create=True) as features_fd, \
                    our_folder(features_fd, shard, create=True) as fd, atomic_writer(name, dir_fd=fd) as fh:
                fh.write(data)
        except ForeignEntry as exc:
            where = {SCENES: (SCENES,), FEATURES: (SCENES, FEATURES), shard: (SCENES, FEATURES, shard)}
            shown = _shown(self.out_dir, *where.get(exc.filename, (SCENES, FEATURES, shard, name)))
            self._warn_once(f"write {shown}", "scenes: not keeping features in %s: %s", shown, _reason(exc))

    # --- captures ----------------------------------------------------------------------------------------------
    def capture(self, key: PhotoKey) -> Capture | None:
        """The stored capture of `key`; None when it was not read yet (a Capture of Nones: read, nothing there)."""
        return self._captures.get(key)

    def put_capture(self, key: PhotoKey, capture: Capture) -> None:
        encode_capture(key, capture)  # ValueError now, not at save, for what cannot be stored
        if self._captures.get(key) != capture:
            self._captures[key] = capture
            self._captures_dirty = True

    # --- verdicts ----------------------------------------------------------------------------------------------
    def verdict(self, a: PhotoKey, b: PhotoKey) -> Verdict | None:
        """The stored verdict on the pair (a, b), or (b, a): the same pair."""
        pair = _pair_key(a, b)
        found = self._new_pairs.get(pair)
        if found is not None:
            return found
        query = np.array(pair, "S32")  # compared as arrays: a bytes_ scalar loses its trailing zero bytes
        i = int(np.searchsorted(self._pair_keys, query))
        if i == len(self._pair_keys) or self._pair_keys[i:i + 1] != query:
            return None
        return Verdict(bool(self._same[i]), int(self._inliers[i]), float(self._spread[i]))

    def put_verdict(self, a: PhotoKey, b: PhotoKey, verdict: Verdict) -> None:
        """Keep the verdict on (a, b), its spread rounded to float32 as the file stores it."""
        inliers, spread = int(verdict.inliers), float(np.float32(verdict.spread))
        if not 0 <= inliers <= verify.MAX_KEYPOINTS or not math.isfinite(spread):
            raise ValueError(f"a verdict verify_pair cannot give: {verdict}")
        stored = Verdict(bool(verdict.same_scene), inliers, spread)
        if self.verdict(a, b) != stored:
            self._new_pairs[_pair_key(a, b)] = stored
            self._pairs_dirty = True

    def same_scene_digests(self) -> list[tuple[bytes, bytes]]:
        """Every stored pair judged one scene, as the two photos' key digests (key_digest)."""
        self._merge_new_pairs()
        pairs = [pair.ljust(2 * DIGEST, b"\0") for pair in self._pair_keys[self._same.astype(bool)].tolist()]
        return [(pair[:DIGEST], pair[DIGEST:]) for pair in pairs]  # tolist() drops trailing zero bytes: put back

    # --- forgetting and saving ---------------------------------------------------------------------------------
    def forget_except(self, current: Iterable[PhotoKey], left: Iterable[PhotoKey] | None = None) -> None:
        """Drop the features, captures and verdicts of every photo not in `current` (gone, or changed).

        `left`: the keys that left since verdicts and feature files were last pruned to `current` + `left` (the
        SceneLinker knows, and checks stamp()): only theirs are looked for, so an update costs what changed.
        Feature files are removed with fsutil.remove_made: only regular files by our names, in our folders."""
        current = set(current)
        stale = self._captures.keys() - current  # in memory: every one is checked, cheaply
        if stale:
            self._captures = {k: c for k, c in self._captures.items() if k not in stale}
            self._captures_dirty = True
        if left is None:
            digests = {key_digest(k) for k in current}
            self._forget_pairs(lambda halves: np.isin(halves, np.array(sorted(digests), f"S{DIGEST}")))
            for _, fd, shown in (_our_shards(self.out_dir) if self._usable else ()):
                with os.scandir(fd) as it:
                    names = {e.name for e in it if _FEATURE_NAME.fullmatch(e.name)} - {d.hex() for d in digests}
                remove_made(fd, dict.fromkeys(names, FILE), shown)  # a symlink or folder by such a name is left
            return
        gone = {key_digest(k) for k in left if k not in current}
        if gone:
            self._forget_pairs(lambda halves: ~np.isin(halves, np.array(sorted(gone), f"S{DIGEST}")))
            names = {d.hex() for d in gone}
            for shard, fd, shown in (_our_shards(self.out_dir, {n[:2] for n in names}) if self._usable else ()):
                remove_made(fd, {n: FILE for n in names if n[:2] == shard}, shown)

    def _forget_pairs(self, kept) -> None:
        """Keep the verdicts whose both digests `kept` (an array of digests -> bool array) says to keep."""
        new_keys = list(self._new_pairs)
        new_kept = kept(np.array(new_keys, "S32").view(f"S{DIGEST}")).reshape(-1, 2).all(axis=1)
        new = {pair: self._new_pairs[pair] for pair, ok in zip(new_keys, new_kept.tolist()) if ok}
        keep = kept(self._pair_keys.view(f"S{DIGEST}")).reshape(-1, 2).all(axis=1)
        if len(new) != len(self._new_pairs) or not keep.all():
            self._new_pairs = new
            self._set_columns(self._pair_keys[keep], self._inliers[keep], self._spread[keep], self._same[keep])
            self._pairs_dirty = True

    def stamp(self) -> tuple | None:
        """The (inode, size, mtime) of the pairs file and the features folders: a run that wrote or removed a
        verdict or feature file changes it (a folder's mtime follows its files). None: not usable or not seen."""
        if not self._usable:
            return None
        try:
            with open_dir(self.out_dir, follow=True) as out_fd, open_dir(SCENES, dir_fd=out_fd) as fd:
                return _stat_stamp(fd, PAIRS), _stat_stamp(fd, FEATURES), _features_stamp(fd)
        except FileNotFoundError:
            return ()
        except OSError:
            return None

    def save(self) -> None:
        """Write the captures and the verdicts that changed, each file atomically (and each on its own: a foreign
        entry in the way of one is warned about, and the other is still written)."""
        if not self.dirty or not self._usable:
            return
        if self._captures_dirty:
            self._captures_dirty = not self._write(CAPTURES, lambda: encode_captures(self._captures))
        if self._pairs_dirty:
            self._merge_new_pairs()
            self._pairs_dirty = not self._write(PAIRS, lambda: encode_pairs(self._pair_keys, self._inliers,
                                                                              self._spread, self._same))

    def _write(self, name: str, encode) -> bool:
        try:
            with open_dir(self.out_dir, follow=True) as out_fd, our_folder(out_fd, SCENES, create=True) as fd, \
                    atomic_writer(name, dir_fd=fd) as fh:
                fh.write(encode())
            return True
        except ForeignEntry as exc:
            shown = _shown(self.out_dir, SCENES, *(() if exc.filename == SCENES else (name,)))
            log.warning("scenes: not saving %s in %s: %s", name, shown, _reason(exc))
            return False

    def _merge_new_pairs(self) -> None:
        if not self._new_pairs:
            return
        new_keys = np.array(list(self._new_pairs), "S32")
        old = ~np.isin(self._pair_keys, new_keys)
        verdicts = self._new_pairs.values()
        keys = np.concatenate([self._pair_keys[old], new_keys])
        order = np.argsort(keys, kind="stable")
        self._set_columns(
            keys[order],
            np.concatenate([self._inliers[old], np.array([v.inliers for v in verdicts], np.uint32)])[order],
            np.concatenate([self._spread[old], np.array([v.spread for v in verdicts], np.float32)])[order],
            np.concatenate([self._same[old], np.array([v.same_scene for v in verdicts], np.uint8)])[order])
        self._new_pairs = {}

    def _set_columns(self, keys, inliers, spread, same) -> None:
        self._pair_keys, self._inliers, self._spread, self._same = keys, inliers, spread, same

    def _warn_once(self, topic: str, message: str, *args) -> None:
        if topic not in self._warned:
            self._warned.add(topic)
            log.warning(message, *args)


def sweep_scene_leftovers(out_dir: Path) -> None:
    """Remove the temporaries that a killed write left in scenes/ (only regular files by atomic_writer's names, in
    our folders). Only a holder of the output lock calls this, so no other run is writing them now."""
    try:
        with open_dir(out_dir, follow=True) as out_fd, open_dir(SCENES, dir_fd=out_fd) as fd:
            if is_regular_at(FOLDER_MARK, fd):
                with os.scandir(fd) as it:
                    left = {e.name: FILE for e in it if is_atomic_temporary(e.name, (CAPTURES, PAIRS))}
                remove_made(fd, left, _shown(out_dir, SCENES))
    except OSError:  # no scenes/, or not ours: nothing of ours to sweep
        return
    for shard, fd, shown in _our_shards(out_dir):
        with os.scandir(fd) as it:
            left = {e.name: FILE for e in it if _FEATURE_TEMPORARY.fullmatch(e.name)}
        remove_made(fd, left, shown)


# --- folders ---------------------------------------------------------------------------------------------------

def _our_shards(out_dir: Path, only: set[str] | None = None):
    """(shard name, descriptor, shown path) of each of our shard folders under scenes/features/ (those in `only`,
    if given); the descriptor is valid until the next item. Nothing when scenes/ or features/ is missing or not
    ours."""
    try:
        with open_dir(out_dir, follow=True) as out_fd, open_dir(f"{SCENES}/{FEATURES}", dir_fd=out_fd) as fd:
            if not is_regular_at(FOLDER_MARK, fd):
                return
            with os.scandir(fd) as it:
                shards = sorted(e.name for e in it if _SHARD.fullmatch(e.name) and (only is None or e.name in only)
                                and e.is_dir(follow_symlinks=False))
            for shard in shards:
                try:
                    with open_dir(shard, dir_fd=fd) as shard_fd:
                        if is_regular_at(FOLDER_MARK, shard_fd):
                            yield shard, shard_fd, _shown(out_dir, SCENES, FEATURES, shard)
                except OSError as exc:  # swapped for a symlink since the listing: left alone
                    log.warning("scenes: left %s alone: %s", _shown(out_dir, SCENES, FEATURES, shard), _reason(exc))
    except OSError:
        return


def _stat_stamp(fd: int, name: str) -> tuple | None:
    st = lstat_at(name, fd)
    return None if st is None else (st.st_ino, st.st_size, st.st_mtime_ns)


def _features_stamp(scenes_fd: int) -> tuple:
    try:
        with open_dir(FEATURES, dir_fd=scenes_fd) as fd, os.scandir(fd) as it:
            return tuple(sorted((e.name, e.inode(), e.stat(follow_symlinks=False).st_mtime_ns) for e in it))
    except (FileNotFoundError, NotADirectoryError):
        return ()


def _read_ours(fd: int, name: str, limit: int) -> bytes | None:
    """The bytes of our file `name`, None when missing: never through a symlink, never from a FIFO or a device
    (ForeignEntry), and Refused when longer than `limit`, before anything is read."""
    try:
        return read_regular(name, fd, limit, whole=True)
    except FileTooLarge:
        raise Refused("larger than any file photocluster writes there") from None


def _feature_path(key: PhotoKey) -> tuple[str, str]:
    name = key_digest(key).hex()
    return name[:2], name


def _pair_key(a: PhotoKey, b: PhotoKey) -> bytes:
    da, db = key_digest(a), key_digest(b)
    return da + db if da <= db else db + da


def _shown(out_dir: Path, *parts: str) -> str:
    return os.path.join(out_dir, *parts)


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or errno.errorcode.get(exc.errno or 0, "error")

