"""The cache file's guard: what a pickle may hold before photocluster unpickles it.

pickle runs whatever a file describes. A photocluster cache is one pickle of plain columns (see cache.py), so
the loader refuses every global (RefusingUnpickler) and walks the opcode stream first (check_opcodes), so that a
tampered file can neither run code nor make the loader build unbounded objects.
"""
from __future__ import annotations

import os
import pickle
import pickletools
from typing import IO

import numpy as np


class CacheError(Exception):
    """The cache file is unreadable, tampered with, or of another format."""


class RefusingUnpickler(pickle.Unpickler):
    """Unpickles built-in containers and scalars only. Any class or function reference is refused.

    The cache never names a global, so refusing them all costs nothing and shuts out every code-execution
    payload (`__reduce__` needs a global to call).
    """

    def find_class(self, module: str, name: str):
        raise CacheError(f"refused: the file asks to load {module}.{name}, which a photocluster cache never does")

    def persistent_load(self, pid):
        raise CacheError("refused: persistent references are never used by a photocluster cache")


# --- the opcode check ------------------------------------------------------------------------------------------
# pickle builds whatever a file describes, and a few bytes can describe a lot: each 1-byte EMPTY_SET or EMPTY_DICT
# is a new 200-byte object (10 MB of them took 2.5 GB), and nested containers make RecursionError later. The C
# unpickler cannot be limited from Python, and its pure-Python twin is far too slow for a 250,000-photo cache, so
# the opcode stream is walked once before unpickling, jumping over string and vector payloads without reading them,
# and only what pickle.dump(protocol=5) writes for the cache's plain columns is allowed:
# - no globals, tuples, sets, PUT with a chosen memo index, or text (protocol 0) opcodes;
# - at most _CONTAINERS_MAX lists and dicts (a cache has 5), so nesting is shallow;
# - marks at most _MARKS_MAX deep and the stack at most _STACK_MAX items (the pickler writes batches of 1000);
# - a memo entry only for a new object, and memo references only to entries that exist.
# What is left costs memory in proportion to the file: every allowed opcode of n bytes builds at most about 16 n
# bytes (a 2-character string, a list slot and a memo entry from 4 bytes), so a refused file of S bytes peaks
# below ~16 S. A hand-written walk, since pickletools.genops reads every payload and is ~10x slower.
_CONTAINERS_MAX = 16
_MARKS_MAX = 4
_STACK_MAX = 4096
_PUSH, _APPEND, _SETITEM, _MARK, _POP_MARK, _MEMOIZE, _GET, _CONTAINER, _NOTHING, _STOP = range(10)
_EFFECT = {
    "PROTO": _NOTHING, "FRAME": _NOTHING, "STOP": _STOP, "MARK": _MARK, "APPENDS": _POP_MARK,
    "SETITEMS": _POP_MARK, "APPEND": _APPEND, "SETITEM": _SETITEM, "MEMOIZE": _MEMOIZE, "BINGET": _GET,
    "LONG_BINGET": _GET, "EMPTY_DICT": _CONTAINER, "EMPTY_LIST": _CONTAINER,
    **dict.fromkeys(["SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "SHORT_BINBYTES", "BINBYTES", "BINBYTES8",
                     "BYTEARRAY8", "BININT", "BININT1", "BININT2", "LONG1", "LONG4", "BINFLOAT", "NONE", "NEWTRUE",
                     "NEWFALSE"], _PUSH),
}


def _opcode_table() -> list[tuple[int, int, int] | None]:
    """For each opcode byte: (effect, fixed argument bytes, length-prefix bytes), or None when not allowed."""
    prefix = {pickletools.TAKEN_FROM_ARGUMENT1: 1, pickletools.TAKEN_FROM_ARGUMENT4: 4,
              pickletools.TAKEN_FROM_ARGUMENT4U: 4, pickletools.TAKEN_FROM_ARGUMENT8U: 8}
    table: list[tuple[int, int, int] | None] = [None] * 256
    for op in pickletools.opcodes:
        if op.name not in _EFFECT:
            continue
        arg = op.arg
        if arg is None:
            table[ord(op.code)] = (_EFFECT[op.name], 0, 0)
        elif arg.n >= 0:
            table[ord(op.code)] = (_EFFECT[op.name], arg.n, 0)
        else:  # a counted payload: LONG1/LONG4 and the strings, bytes and bytearrays
            table[ord(op.code)] = (_EFFECT[op.name], 0, prefix[arg.n])
    return table


_OPCODES = _opcode_table()


_WINDOW = 1 << 20  # the opcodes are read a window at a time; payloads are skipped with seek, never read
_HEADER_MAX = 9  # an opcode byte and at most 8 bytes of argument or length


def check_opcodes(fh: IO[bytes]) -> None:
    """Raise CacheError unless the pickle in `fh` is made only of what a cache holds, within the bounds above."""
    end = fh.seek(0, os.SEEK_END)
    if end == 0:
        raise CacheError("empty file")
    table = _OPCODES
    base, data, at = 0, b"", 0  # data is the window of the file from offset base; at indexes it
    containers = memo = stack = 0
    marks: list[int] = []
    fresh = False  # the top of the stack is an object just built (only those get a memo entry)
    while base + at < end:
        if at + _HEADER_MAX > len(data):  # also after a payload skipped past the window
            base += at
            fh.seek(base)
            data, at = fh.read(_WINDOW), 0
        entry = table[data[at]]
        if entry is None:
            raise CacheError(f"refused: opcode {data[at]:#04x} at byte {base + at} is never in a photocluster cache")
        effect, fixed, prefix = entry
        at += 1
        if prefix:
            at += prefix + int.from_bytes(data[at:at + prefix], "little")
        elif fixed:
            arg_at, at = at, at + fixed
        if base + at > end:
            break
        if effect == _PUSH:
            stack += 1
            fresh = True
            if stack > _STACK_MAX:
                raise CacheError("refused: too many values in a row")
            continue
        if effect == _NOTHING:  # PROTO, or FRAME: frames may start between an object and its memo entry
            continue
        if effect == _MEMOIZE:
            if not fresh:
                raise CacheError("refused: a memo entry for an object already stored")
            memo += 1
        elif effect == _GET:
            if int.from_bytes(data[arg_at:at], "little") >= memo:
                raise CacheError("refused: a reference to a memo entry that does not exist")
            stack += 1
        elif effect == _CONTAINER:
            containers += 1
            stack += 1
            if containers > _CONTAINERS_MAX:
                raise CacheError("refused: more lists and dicts than a cache has (nested or repeated)")
        elif effect == _MARK:
            marks.append(stack)
            if len(marks) > _MARKS_MAX:
                raise CacheError("refused: marks nested too deep")
        elif effect == _POP_MARK:
            if not marks:
                raise CacheError("refused: a batch without its mark")
            stack = marks.pop()
        elif effect == _APPEND:
            stack -= 1
        elif effect == _SETITEM:
            stack -= 2
        elif effect == _STOP:
            if base + at != end:
                raise CacheError("refused: data after the end of the pickle")
            return
        if stack > _STACK_MAX:
            raise CacheError("refused: too many values in a row")
        fresh = effect == _CONTAINER
    raise CacheError("truncated file")


def column(data: dict, name: str, dtype) -> np.ndarray:
    """The unpickled file's column `name` as a read-only array of `dtype`; TypeError when it is not bytes (each
    column is stored as the raw bytes of one array)."""
    value = data[name]
    if not isinstance(value, (bytes, bytearray)):
        raise TypeError(f"column {name} is not bytes")
    return np.frombuffer(value, dtype)
