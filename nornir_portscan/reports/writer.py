"""TEMPORARY stand-in until the real writer lands."""

from __future__ import annotations

import os
from pathlib import Path

from nornir_portscan.errors import InputError, ReportError


def check_destination(path: str | os.PathLike[str], what: str) -> None:
    parent = Path(path).parent
    if not parent.is_dir():
        raise InputError(
            f"cannot write the {what} to {str(path)!r}: no such directory {str(parent)!r}"
        )


def write_atomic(path: str | os.PathLike[str], text: str, what: str = "report") -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"cannot write the {what} {str(path)!r}: {exc.strerror}") from None
