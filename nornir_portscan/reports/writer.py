"""Writing report files: the destination checked before the scan, the file replaced after it.

``check_destination`` runs before any packet is sent, so a mistyped report path costs nothing;
``write_atomic`` writes a temporary file next to the report, syncs it and renames it over the
report, so a failed write (a full disk) leaves the previous report as it was, byte for byte.
Nothing here knows a report format.

A symlink is written through: the file it points to is replaced and the link kept, as
``open(path, "w")`` would. A destination that exists and is not a regular file (``/dev/stdout``,
``/dev/null``, a FIFO) is written in place: it cannot be replaced, and must not be. Replacing a
file gives it a new inode: its mode is kept, its owner and other hard links are not.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from nornir_portscan.errors import ReportError, ReportPathError

__all__ = ["check_destination", "write_atomic"]


def check_destination(path: str | os.PathLike[str], what: str) -> None:
    """Raise ``ReportPathError`` (one line, naming ``what``) if a report cannot be written to
    ``path``: its directory is missing, is not a directory or is not writable, or ``path`` is a
    directory.

    >>> check_destination("missing/r.json", "JSON report")
    Traceback (most recent call last):
    ...
    nornir_portscan.errors.ReportPathError: cannot write the JSON report to 'missing/r.json': \
no such directory 'missing'; give a path in an existing directory, e.g. 'r.json'
    """
    shown = os.fspath(path)
    lead = f"cannot write the {what} to {shown!r}"
    if not shown:
        raise ReportPathError(f"{lead}: no file name; give one, e.g. 'report'")
    given = Path(shown)
    existing = f"give a path in an existing directory, e.g. {given.name!r}"
    try:
        info: os.stat_result | None = given.stat()
    except (FileNotFoundError, NotADirectoryError):  # said below, about the directory
        info = None
    except OSError as exc:  # a symlink loop, no permission to look
        raise ReportPathError(f"{lead}: {exc.strerror}; {existing}") from None
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise ReportPathError(
            f"{lead}: it is a directory; give a file name in it, e.g. {str(given / 'report')!r}"
        )
    real = Path(os.path.realpath(given))
    parent = real.parent
    # Name the directory as the user wrote it, unless a symlink led elsewhere.
    parent_shown = str(parent if given.is_symlink() else given.parent)
    if not parent.exists():
        raise ReportPathError(f"{lead}: no such directory {parent_shown!r}; {existing}")
    if not parent.is_dir():
        raise ReportPathError(f"{lead}: {parent_shown!r} is not a directory; {existing}")
    elsewhere = _elsewhere(given.name, parent)
    replaced = info is None or stat.S_ISREG(info.st_mode)  # else written in place
    if replaced and _read_only(parent):
        raise ReportPathError(
            f"{lead}: directory {parent_shown!r} is on a read-only file system; give a path in "
            f"a directory you can write to, e.g. {elsewhere!r}"
        )
    if info is not None and not os.access(real, os.W_OK):
        raise ReportPathError(
            f"{lead}: the file is not writable; make it writable or give another path, "
            f"e.g. {elsewhere!r}"
        )
    if replaced and not os.access(parent, os.W_OK | os.X_OK):
        raise ReportPathError(
            f"{lead}: no permission to create files in directory {parent_shown!r}; give a "
            f"path in a directory you can write to, e.g. {elsewhere!r}"
        )


def write_atomic(
    path: str | os.PathLike[str], text: str | Iterable[str], what: str = "report"
) -> None:
    """Write ``text`` (UTF-8; a string, or the chunks of one, which are never all in memory at
    once) to ``path`` so that readers see the old file or the new one, never a part; raises
    ``ReportError`` (one line, naming ``what``) on any ``OSError``, with the previous file
    intact and no temporary file left."""
    shown = os.fspath(path)
    lead = f"cannot write the {what} {shown!r}"
    real = Path(os.path.realpath(shown))  # through a symlink, to the file it names
    try:
        info: os.stat_result | None = real.stat()
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise ReportError(f"{lead}: {exc.strerror or exc}") from exc
    if info is not None and not stat.S_ISREG(info.st_mode):
        try:
            with real.open("wb") as file:  # /dev/stdout, a FIFO: written in place
                _write(file, text)
        except OSError as exc:
            raise ReportError(f"{lead}: {exc.strerror or exc}") from exc
        return
    mode = stat.S_IMODE(info.st_mode) if info is not None else 0o666 & ~_umask()
    try:
        handle, name = tempfile.mkstemp(dir=real.parent, prefix=f".{real.name}.", suffix=".tmp")
    except OSError as exc:
        raise ReportError(f"{lead}: {exc.strerror or exc}") from exc
    temporary = Path(name)
    try:
        with os.fdopen(handle, "wb") as file:
            _write(file, text)
            file.flush()
            os.fchmod(file.fileno(), mode)
            os.fsync(file.fileno())
        temporary.replace(real)
    except BaseException as exc:
        temporary.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise ReportError(f"{lead}: {exc.strerror or exc}") from exc
        raise
    _sync_directory(real.parent)


def _write(file: BinaryIO, text: str | Iterable[str]) -> None:
    for chunk in (text,) if isinstance(text, str) else text:
        file.write(chunk.encode("utf-8"))


def _elsewhere(name: str, parent: Path) -> str:
    """A path for the example of a fix: the same name here, or in the temporary directory
    when here is the directory that failed."""
    if parent != Path(os.path.realpath(Path.cwd())):
        return name
    return str(Path(tempfile.gettempdir()) / name)


def _read_only(directory: Path) -> bool:
    try:
        return bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _umask() -> int:
    """The process umask, read without changing it (``os.umask`` would, for every thread)."""
    try:
        with Path("/proc/self/status").open(encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no /proc: the only other way, briefly changing it
    os.umask(mask)
    return mask


def _sync_directory(directory: Path) -> None:
    # The rename is durable once the directory is synced; the new file is in place either way.
    with contextlib.suppress(OSError):
        handle = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)
