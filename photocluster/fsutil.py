"""Small file-system helpers that every stage shares: atomic writes, and folder walks and removals that never
follow a symlink.

Inside the output folder, photocluster works through directory file descriptors opened with O_NOFOLLOW, one
path component at a time: a symlink planted at any level (by a user, or by anyone who can write there) is seen
as a symlink and left alone, never followed to a place outside the output. The standard library has no such
"open this relative path without following anything" call, so it is written here.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import secrets
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
LOCK_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# The mark of every folder photocluster makes in <out> (under patterns/ and scenes/): an empty regular file.
FOLDER_MARK = ".photocluster-folder"


class ForeignEntry(OSError):
    """An entry that photocluster did not make (a symlink, or a file where it keeps a folder): left alone."""

    def __init__(self, path: str | os.PathLike, what: str):
        super().__init__(errno.EEXIST, f"{what} that photocluster did not make; it is left alone (move it away "
                         "and run again)", os.fspath(path))


def kind_of(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "a file" if stat.S_ISREG(mode) else "a special file"


def lstat_at(name: str, dir_fd: int) -> os.stat_result | None:
    """The entry `name` inside `dir_fd`, not followed; None when there is none."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def open_dir(path: str | os.PathLike, dir_fd: int | None = None, follow: bool = False) -> Iterator[int]:
    """A descriptor of the folder `path` (a relative path is walked one component at a time from `dir_fd`).

    With follow=False no component is followed through a symlink: ForeignEntry names the first that is not a
    plain folder. follow=True is for the output folder itself, which the user named (and may reach by a link).
    """
    fd = open_dir_fd(os.fspath(path), dir_fd, follow)
    try:
        yield fd
    finally:
        os.close(fd)


def open_dir_fd(path: str, dir_fd: int | None = None, follow: bool = False) -> int:
    """open_dir's descriptor, for the caller to close."""
    if follow:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:  # a recorded path never goes up; one that does was not written by photocluster
        raise OSError(errno.EINVAL, "a path that leads upwards", path)
    fd = os.open("/" if path.startswith("/") else ".", DIR_FLAGS, dir_fd=None if path.startswith("/") else dir_fd)
    for part in parts:
        try:
            child = os.open(part, DIR_FLAGS, dir_fd=fd)
        except OSError as exc:
            st = lstat_at(part, fd) if exc.errno in (errno.ELOOP, errno.ENOTDIR) else None
            os.close(fd)
            if st is not None:
                raise ForeignEntry(path, kind_of(st.st_mode)) from None
            raise
        os.close(fd)
        fd = child
    return fd


class FileTooLarge(ValueError):
    """A file longer than any photocluster writes there (read_regular with whole=True)."""


def read_regular(name: str, dir_fd: int | None = None, limit: int = 1 << 30, whole: bool = False) -> bytes | None:
    """The bytes of our own small file `name` (at most `limit`); None when it does not exist.

    Opened without following a symlink and without blocking (a FIFO planted there cannot hang us); ForeignEntry
    when it is not a regular file. With `whole`, a file longer than `limit` is FileTooLarge, found from its size
    before anything is read. Only what the file holds is read, so a large `limit` costs no memory up front.
    """
    try:
        fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ForeignEntry(name, "a symlink") from None
        raise
    with os.fdopen(fd, "rb", buffering=0) as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ForeignEntry(name, kind_of(st.st_mode))
        if whole and st.st_size > limit:
            raise FileTooLarge(name)
        # Never more than the file holds (read(n) allocates n bytes first); one byte more sees a file that grew.
        data = fh.read(min(limit + 1, st.st_size + 1))
    if whole and len(data) > limit:
        raise FileTooLarge(name)
    return data[:limit]


def is_regular_at(name: str, dir_fd: int) -> bool:
    st = lstat_at(name, dir_fd)
    return st is not None and stat.S_ISREG(st.st_mode)


def mark_folder(fd: int) -> None:
    """Mark a folder as photocluster's, once: an empty FOLDER_MARK, created exclusively, never through a link."""
    if lstat_at(FOLDER_MARK, fd) is None:
        os.close(os.open(FOLDER_MARK, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=fd))
        os.fsync(fd)


def check_replaceable(name: str, dir_fd: int, shown: str | os.PathLike | None = None) -> None:
    """Raise ForeignEntry unless `name` is absent or a regular file: we never replace a user's link or folder."""
    st = lstat_at(name, dir_fd)
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise ForeignEntry(shown or name, kind_of(st.st_mode))


def is_atomic_temporary(name: str, of_names) -> bool:
    """True for a temporary that atomic_writer left behind (killed mid-write) while writing one of `of_names`."""
    return name.endswith(".tmp") and any(name.startswith(f".{target}.") for target in of_names)


@contextlib.contextmanager
def atomic_writer(path: str | Path, mode: str = "wb", dir_fd: int | None = None) -> Iterator[IO]:
    """Write `path` all-or-nothing: a temporary file beside it, fsync, then rename over it.

    A crash at any moment leaves either the old file or the new one, never a torn one. With `dir_fd`, `path` is a
    name inside that folder. Whatever is at `path` must be a regular file (else ForeignEntry): the rename would
    replace a user's symlink or folder, and the temporary is created exclusively, so nothing is ever followed.
    """
    with _parent_of(path, dir_fd) as (parent_fd, name):
        check_replaceable(name, parent_fd, path)
        tmp = f".{name}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=parent_fd)
        try:
            with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": "\n"})) as fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            check_replaceable(name, parent_fd, path)
            os.replace(tmp, name, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=parent_fd)
            raise
        os.fsync(parent_fd)


@contextlib.contextmanager
def _parent_of(path: str | os.PathLike, dir_fd: int | None) -> Iterator[tuple[int, str]]:
    if dir_fd is not None:
        yield dir_fd, os.fspath(path)
        return
    path = Path(path)
    with open_dir(path.parent, follow=True) as parent_fd:
        yield parent_fd, path.name


def write_text_atomic(path: str | Path, text: str, dir_fd: int | None = None) -> None:
    with atomic_writer(path, "w", dir_fd) as fh:
        fh.write(text)


def fsync_dir(path: str | Path) -> None:
    """Make a rename inside `path` durable."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def make_dir(name: str, dir_fd: int) -> bool:
    """mkdir `name` inside `dir_fd`; True when this call made it, False when something was already there."""
    try:
        os.mkdir(name, dir_fd=dir_fd)
        return True
    except FileExistsError:
        return False


DIR, LINK, FILE = "dir", "link", "file"
_KIND_OF_MODE = {DIR: stat.S_ISDIR, LINK: stat.S_ISLNK, FILE: stat.S_ISREG}


def remove_made(root_fd: int, made: Mapping[str, str], where: str) -> bool:
    """Remove the entries photocluster recorded making under `root_fd`, and nothing else.

    `made` maps a relative path ("a/b/name") to what was made there: DIR, LINK or FILE. An entry that is now of
    another kind is left alone, a folder is removed only once empty (a user's file inside keeps it), and no
    folder on the way is followed through a symlink. Missing entries are fine (a crash, or already removed).
    `where` names the root in warnings. Returns True when every recorded entry is gone.
    """
    by_parent: dict[str, list[tuple[str, str]]] = {}
    for rel, kind in made.items():
        parent, _, name = rel.rpartition("/")
        by_parent.setdefault(parent, []).append((name, kind))
    complete = True
    for parent in sorted(by_parent, key=lambda p: (-(p.count("/") + 1) if p else 0, p)):  # deepest first
        try:
            with open_dir(parent, dir_fd=root_fd) as fd:
                for name, kind in sorted(by_parent[parent]):
                    complete &= _remove_one(fd, name, kind, os.path.join(where, parent, name))
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("left %s in place: %s", os.path.join(where, parent), exc.strerror or exc)
            complete = False
    return complete


def _remove_one(fd: int, name: str, kind: str, shown: str) -> bool:
    st = lstat_at(name, fd)
    if st is None:
        return True
    if not _KIND_OF_MODE[kind](st.st_mode):
        log.warning("left %s in place: photocluster did not make it (%s)", shown, kind_of(st.st_mode))
        return False
    try:
        if kind == DIR:
            os.rmdir(name, dir_fd=fd)
        else:
            os.unlink(name, dir_fd=fd)  # a symlink is unlinked as a link; its target is never touched
        return True
    except OSError as exc:
        warn_not_removed(shown, exc)
        return False


def warn_not_removed(shown: str, exc: OSError) -> None:
    """Say why a folder or file that photocluster meant to remove stays."""
    if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
        log.warning("left %s in place: it holds entries that photocluster did not make", shown)
    else:
        log.warning("could not remove %s: %s", shown, exc.strerror or exc)


def open_lock(path: str | os.PathLike) -> int:
    """Open (creating it) the lock file at `path`, never through a symlink and never blocking on a FIFO.

    Hand-written rather than filelock: some filelock releases open the path following links and truncate
    whatever a planted symlink points to. ForeignEntry when something other than a regular file is there.
    """
    try:
        fd = os.open(path, LOCK_FLAGS, 0o644)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EISDIR):
            raise ForeignEntry(path, "a symlink" if exc.errno == errno.ELOOP else "a folder") from None
        raise
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise ForeignEntry(path, kind_of(mode))
    return fd


def try_lock(fd: int) -> bool:
    """Take an exclusive flock(2) on `fd` if it is free. It dies with the process, so a killed run leaves none."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


class NotAFileError(OSError):
    """A path that should hold one of photocluster's files holds something else (FIFO, device, folder, link)."""

    def __init__(self, path: str | Path, mode: int):
        kinds = {stat.S_IFIFO: "a FIFO", stat.S_IFDIR: "a folder", stat.S_IFLNK: "a symbolic link",
                 stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a device", stat.S_IFBLK: "a device"}
        self.kind = kinds.get(stat.S_IFMT(mode), "not a regular file")
        super().__init__(f"{os.fspath(path)} is {self.kind}, not a regular file")


def open_regular(path: str | Path, follow_symlinks: bool = False) -> IO[bytes]:
    """Open a file for reading (binary) only if it is a regular file: never blocks, never follows a link unless asked.

    A FIFO at the path would block open() and then read() until a writer comes (a hang SIGTERM cannot end), and
    opening a device can have side effects, so the type is checked before opening (lstat, or stat with
    `follow_symlinks`) and again on the opened descriptor (fstat), in case the path was swapped in between.
    O_NONBLOCK makes even a FIFO swapped in at that moment open at once; on a regular file it changes nothing.
    Raises NotAFileError (an OSError) for anything but a regular file.
    """
    mode = os.stat(path, follow_symlinks=follow_symlinks).st_mode
    if not stat.S_ISREG(mode):
        raise NotAFileError(path, mode)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_symlinks else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotAFileError(path, mode)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


@contextlib.contextmanager
def our_folder(parent_fd: int, name: str, create: bool = False) -> Iterator[int]:
    """The descriptor of our folder `name` inside `parent_fd`; with create, made and marked when missing.

    ForeignEntry for a symlink, a file, or a non-empty folder without our mark; FileNotFoundError when it is
    missing and not to be made.
    """
    made = create and make_dir(name, parent_fd)
    fd = open_dir_fd(name, parent_fd)
    try:
        if not (made or is_regular_at(FOLDER_MARK, fd) or not os.listdir(fd)):
            raise ForeignEntry(name, "a folder")
        if create:
            mark_folder(fd)
        yield fd
    finally:
        os.close(fd)
