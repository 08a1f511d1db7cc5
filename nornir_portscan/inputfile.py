"""Reading the files a user names (target files, policy files, baselines) as text.

Every way such a file can be unreadable becomes one ``InputError`` line before any packet is
sent: it is missing or a directory, larger than the reader takes, not UTF-8, or binary. A
UTF-8 byte order mark (as some Windows editors write) is dropped.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any

from nornir_portscan.errors import InputError

__all__ = ["read_text", "show"]

_MIB = 2**20
_SHOWN = 40  # characters of a bad value quoted in a message


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
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(
            f"{where}: not UTF-8 text (byte 0x{data[exc.start]:02x} at "
            f"{_at(data, exc.start)}); save it as UTF-8"
        ) from None
    nul = data.find(b"\0")
    if nul >= 0:
        raise error(f"{where}: a binary file, not text (a NUL byte at {_at(data, nul)}); {hint}")
    return text


def _at(data: bytes, offset: int) -> str:
    line = data.count(b"\n", 0, offset) + 1
    return f"line {line}, offset {offset}"


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
