"""Report files: where each format goes, checked before the scan and written atomically after.

Every front door names its files with a ``ReportFiles``; ``write_reports`` renders each format
once and writes it through ``writer.write_atomic``, so a failed write (a full disk) never
destroys the previous report.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from pathlib import Path

from nornir_portscan.audit.gates import Audit
from nornir_portscan.errors import InputError
from nornir_portscan.reports.data import iter_json, iter_table
from nornir_portscan.reports.writer import check_destination, write_atomic

__all__ = ["FORMATS", "ReportFiles", "page_format", "write_reports"]

Path_ = str | os.PathLike[str]


# The renderers of the formats a plain scan does not write are imported when one is written.
def _xml(audit: Audit) -> Iterable[str]:
    from nornir_portscan.reports.nmap_xml import iter_xml

    return iter_xml(audit)


def _markdown(audit: Audit) -> Iterable[str]:
    from nornir_portscan.reports.pages import iter_markdown

    return iter_markdown(audit)


def _html(audit: Audit) -> Iterable[str]:
    from nornir_portscan.reports.pages import iter_html

    return iter_html(audit)


FORMATS: dict[str, tuple[str, Callable[[Audit], Iterable[str]]]] = {
    "json": ("JSON report", iter_json),
    "xml": ("XML report", _xml),
    "table": ("table", iter_table),
    "markdown": ("Markdown report", _markdown),
    "html": ("HTML report", _html),
}
"""format -> (what it is called in messages, its renderer: the text in chunks, so that a report
of 65,536 hosts is never all in memory)."""
_PAGES = {".md": "markdown", ".html": "html", ".htm": "html"}


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportFiles:
    """Where to write each report format; None: not written."""

    json: Path_ | None = None
    xml: Path_ | None = None
    table: Path_ | None = None
    markdown: Path_ | None = None
    html: Path_ | None = None

    def items(self) -> list[tuple[str, Path_]]:
        """``(format, path)`` of every file asked for, in a fixed order."""
        paths = ((f.name, getattr(self, f.name)) for f in fields(self))
        return [(name, path) for name, path in paths if path is not None]

    def check(self) -> None:
        """Raise an ``InputError`` when a file cannot be written; call it before the scan."""
        for name, path in self.items():
            check_destination(path, FORMATS[name][0])


def page_format(path: Path_) -> str:
    """``markdown`` or ``html`` by the suffix of ``path`` (a readable report's file name)."""
    kind = _PAGES.get(Path(path).suffix.lower())
    if kind is None:
        raise InputError(
            f"unknown report format {str(path)!r}: use a .md or .html file name, e.g. 'audit.html'"
        )
    return kind


def write_reports(files: ReportFiles, audit: Audit) -> tuple[str, ...]:
    """Write every file asked for; return their paths. Raises ``ReportError`` (one line) at the
    first that cannot be written; those before it are written."""
    written = []
    for name, path in files.items():
        what, render = FORMATS[name]
        write_atomic(path, render(audit), what)
        written.append(str(path))
    return tuple(written)
