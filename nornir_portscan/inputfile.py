"""Reading the files a user names (target files, policy files, baselines) as text.

Every way such a file can be unreadable becomes one ``InputError`` line before any packet is
sent: it is missing or a directory, larger than the reader takes, not UTF-8, or binary. A
UTF-8 byte order mark (as some Windows editors write) is dropped.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from typing import Any

from nornir_portscan.errors import InputError

__all__ = ["read_lines", "read_text", "show"]

_MIB = 2**20
_SHOWN = 40  # characters of a bad value quoted in a message
_CHUNK = 2**16
_BOM = b"\xef\xbb\xbf"


def read_text(
    path: str | os.PathLike[str],
    what: str,
    *,
    limit: int,
    hint: str,
    error: type[InputError] = InputError,
) -> str:
    """The text of ``path``, at most ``limit`` bytes; raises ``error`` naming ``what``.

    ``hint`` ends the message about a binary file: what a valid file holds.
    """
    where = f"cannot read {what} {str(path)!r}"
    too_large = f"{where}: larger than {limit // _MIB} MiB, the most a {what} may be"
    try:
        with open(path, "rb") as file:  # noqa: PTH123 - a path or a PathLike, as given
            info = os.fstat(file.fileno())
            # A regular file says its size; a pipe or device is read up to the limit.
            if stat.S_ISREG(info.st_mode) and info.st_size > limit:
                raise error(too_large)
            data = file.read(limit + 1)
    except OSError as exc:
        raise error(f"{where}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise error(too_large)
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise error(f"{where}: UTF-16 text, not UTF-8; save it as UTF-8")
    start = len(_BOM) if data.startswith(_BOM) else 0
    try:
        text = data[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = start + exc.start  # in the file, the byte order mark counted
        raise error(
            f"{where}: not UTF-8 text (byte 0x{data[bad]:02x} at {_at(data, bad)}); "
            "save it as UTF-8"
        ) from None
    nul = data.find(b"\0")
    if nul >= 0:
        raise error(f"{where}: a binary file, not text (a NUL byte at {_at(data, nul)}); {hint}")
    return text


def read_lines(
    path: str | os.PathLike[str],
    what: str,
    *,
    limit: int,
    hint: str,
    error: type[InputError] = InputError,
) -> Iterator[str]:
    """The lines of ``path`` as ``str.splitlines`` gives them, read as they are asked for:
    the checks of ``read_text``, each made when the reader comes to it, in memory that does
    not grow with the file (a caller that stops early reads no further)."""
    where = f"cannot read {what} {str(path)!r}"
    too_large = f"{where}: larger than {limit // _MIB} MiB, the most a {what} may be"
    try:
        file = open(path, "rb")  # noqa: PTH123, SIM115 - closed below, also when left early
    except OSError as exc:
        raise error(f"{where}: {exc.strerror or exc}") from None
    with file:
        info = os.fstat(file.fileno())
        if stat.S_ISREG(info.st_mode) and info.st_size > limit:
            raise error(too_large)
        offset = 0  # of ``pending`` in the file
        line = 1  # the line ``pending`` starts on
        pending = bytearray()
        while True:
            try:
                chunk = file.read(_CHUNK)
            except OSError as exc:
                raise error(f"{where}: {exc.strerror or exc}") from None
            if offset + len(pending) + len(chunk) > limit:
                raise error(too_large)
            if offset == 0 and not pending:
                if chunk.startswith((b"\xff\xfe", b"\xfe\xff")):
                    raise error(f"{where}: UTF-16 text, not UTF-8; save it as UTF-8")
                if chunk.startswith(_BOM):
                    offset, chunk = len(_BOM), chunk[len(_BOM) :]
            pending += chunk
            # whole lines only, so that no character is cut in two
            end = chunk.rfind(b"\n") if chunk else len(chunk) - 1
            if end < 0 and chunk:
                continue
            cut = len(pending) - len(chunk) + end + 1
            segment = bytes(pending[:cut])
            del pending[:cut]
            try:
                text = segment.decode("utf-8")
            except UnicodeDecodeError as exc:
                at = _at(segment, exc.start, line, offset)
                raise error(
                    f"{where}: not UTF-8 text (byte 0x{segment[exc.start]:02x} at {at}); "
                    "save it as UTF-8"
                ) from None
            nul = segment.find(b"\0")
            if nul >= 0:
                at = _at(segment, nul, line, offset)
                raise error(f"{where}: a binary file, not text (a NUL byte at {at}); {hint}")
            yield from text.splitlines()
            if not chunk:
                return
            offset += len(segment)
            line += segment.count(b"\n")


def _at(data: bytes, offset: int, first_line: int = 1, base: int = 0) -> str:
    """Where ``offset`` in ``data`` is, when ``data`` starts at ``base`` on ``first_line``."""
    line = data.count(b"\n", 0, offset) + first_line
    return f"line {line}, offset {base + offset}"


def show(value: Any) -> str:
    """``value`` for a message: strings quoted, the rest as JSON spells it, cut short.

    >>> show("abc"), show(None), show([5]), show("x" * 50)
    ("'abc'", 'null', '[5]', "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...")
    """
    if isinstance(value, str):
        text = repr(value)
    else:
        try:
            text = json.dumps(value, default=repr)
        except (ValueError, RecursionError):  # a cycle, or nested too deeply
            text = type(value).__name__
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."
