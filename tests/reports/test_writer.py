"""The report writer, on real files: destinations checked before the scan, atomic replacement,
a full disk and a read-only file system that never cost the previous report."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nornir_portscan.errors import InputError, ReportError, ReportPathError, ScanError
from nornir_portscan.reports import writer
from nornir_portscan.reports.writer import check_destination, write_atomic

OLD = '{"version": "1.0", "hosts": []}\n'
ROOT = os.geteuid() == 0


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """``tmpfs(options)`` mounts a fresh tmpfs; every mount is undone at the end."""
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        where = tmp_path / f"mnt{len(mounted)}"
        where.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip() or done.returncode}")
        mounted.append(where)
        return where

    try:
        yield mount
    finally:
        for where in reversed(mounted):
            if subprocess.run(["umount", str(where)]).returncode != 0:
                subprocess.run(["umount", "-l", str(where)])


def remount(where: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(where)], check=True)


def fill(directory: Path) -> None:
    """Write into ``directory`` until its file system is full."""
    handle = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(handle, b"x" * 1024)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
    finally:
        os.close(handle)


# -- write_atomic ---------------------------------------------------------------------------


def test_the_errors_sit_in_the_tree() -> None:
    assert issubclass(ReportPathError, InputError)
    assert issubclass(ReportPathError, ValueError)
    assert issubclass(ReportError, ScanError)
    assert not issubclass(ReportError, InputError)


def test_write_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    write_atomic(path, OLD, "JSON report")
    write_atomic(str(path), "é\n", "JSON report")
    assert path.read_bytes() == "é\n".encode()
    assert files(tmp_path) == ["r.json"]


@pytest.mark.parametrize("full", [True, False], ids=["disk full", "report larger than the room"])
def test_full_disk_keeps_the_previous_report(tmpfs: Callable[[str], Path], full: bool) -> None:
    disk = tmpfs("size=16k")
    path = disk / "r.json"
    write_atomic(path, OLD, "JSON report")
    if full:
        fill(disk)
    with pytest.raises(ReportError) as raised:
        write_atomic(path, "x" * 64 * 1024, "JSON report")
    assert str(raised.value) == f"cannot write the JSON report '{path}': No space left on device"
    assert path.read_text() == OLD
    assert files(disk) == (["filler", "r.json"] if full else ["r.json"])


def test_read_only_file_system_keeps_the_previous_report(tmpfs: Callable[[str], Path]) -> None:
    disk = tmpfs("size=64k")
    path = disk / "r.json"
    write_atomic(path, OLD, "JSON report")
    remount(disk, "ro")
    with pytest.raises(ReportPathError) as checked:
        check_destination(path, "JSON report")
    assert str(checked.value) == (
        f"cannot write the JSON report to '{path}': directory '{disk}' is on a read-only file "
        "system; give a path in a directory you can write to, e.g. 'r.json'"
    )
    with pytest.raises(ReportError) as raised:
        write_atomic(path, "new\n", "JSON report")
    assert str(raised.value) == f"cannot write the JSON report '{path}': Read-only file system"
    assert path.read_text() == OLD
    assert files(disk) == ["r.json"]


def test_a_failed_sync_removes_the_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "r.json"
    write_atomic(path, OLD)

    def broken(handle: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(writer.os, "fsync", broken)
    with pytest.raises(ReportError) as raised:
        write_atomic(path, "new\n", "HTML report")
    assert str(raised.value) == f"cannot write the HTML report '{path}': Input/output error"
    assert path.read_text() == OLD
    assert files(tmp_path) == ["r.json"]


def test_an_interrupted_write_removes_the_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "r.json"
    write_atomic(path, OLD)

    def interrupted(self: Path, target: Path) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(writer.Path, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, "new\n")
    assert path.read_text() == OLD
    assert files(tmp_path) == ["r.json"]


def test_mode_of_an_existing_report_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(OLD)
    path.chmod(0o640)
    write_atomic(path, "new\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_a_new_report_gets_the_mode_open_would_give(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_atomic(tmp_path / "r.json", OLD)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o640


def test_a_symlink_is_written_through(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "r.json"
    target.write_text(OLD)
    link = tmp_path / "latest.json"
    link.symlink_to(target)
    check_destination(link, "JSON report")
    write_atomic(link, "new\n")
    assert link.is_symlink()
    assert link.readlink() == target
    assert target.read_text() == "new\n"
    assert files(tmp_path / "real") == ["r.json"]
    assert files(tmp_path) == ["latest.json", "real"]


def test_a_dangling_symlink_creates_its_target(tmp_path: Path) -> None:
    link = tmp_path / "latest.json"
    link.symlink_to(tmp_path / "r.json")
    check_destination(link, "JSON report")
    write_atomic(link, "new\n")
    assert link.is_symlink()
    assert (tmp_path / "r.json").read_text() == "new\n"


def test_a_fifo_is_written_in_place_never_replaced(tmp_path: Path) -> None:
    # Like /dev/stdout or /dev/null: a file that is not a regular one is not replaced (as root,
    # replacing /dev/null would break the machine). A FIFO here stands in for them.
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    read: list[bytes] = []
    reader = threading.Thread(target=lambda: read.append(fifo.read_bytes()))
    reader.start()
    check_destination(fifo, "JSON report")
    write_atomic(fifo, "new\n")
    reader.join(timeout=10)
    assert read == [b"new\n"]
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert files(tmp_path) == ["pipe"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing" / "r.json",
         "cannot write the JSON report '{path}': No such file or directory"),
        (lambda d: d, "cannot write the JSON report '{path}': Is a directory"),
    ],
)  # fmt: skip
def test_write_to_a_path_that_cannot_be_a_file(
    tmp_path: Path, make: Callable[[Path], Path], message: str
) -> None:
    path = make(tmp_path)
    with pytest.raises(ReportError) as raised:
        write_atomic(path, OLD, "JSON report")
    assert str(raised.value) == message.replace("{path}", str(path))


# -- check_destination ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("missing/r.json",
         "cannot write the JSON report to 'missing/r.json': no such directory 'missing'; give "
         "a path in an existing directory, e.g. 'r.json'"),
        ("a/b/r.json",
         "cannot write the JSON report to 'a/b/r.json': no such directory 'a/b'; give a path "
         "in an existing directory, e.g. 'r.json'"),
        ("notes.txt/r.json",
         "cannot write the JSON report to 'notes.txt/r.json': 'notes.txt' is not a directory; "
         "give a path in an existing directory, e.g. 'r.json'"),
        ("out",
         "cannot write the JSON report to 'out': it is a directory; give a file name in it, "
         "e.g. 'out/report'"),
        ("out/",
         "cannot write the JSON report to 'out/': it is a directory; give a file name in it, "
         "e.g. 'out/report'"),
        ("loop.json",
         "cannot write the JSON report to 'loop.json': Too many levels of symbolic links; give "
         "a path in an existing directory, e.g. 'loop.json'"),
        ("dangling.json",
         "cannot write the JSON report to 'dangling.json': no such directory '{tmp}/gone'; "
         "give a path in an existing directory, e.g. 'dangling.json'"),
        ("",
         "cannot write the JSON report to '': no file name; give one, e.g. 'report'"),
    ],
)  # fmt: skip
def test_bad_destinations_are_one_line_before_the_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / "out").mkdir()
    (tmp_path / "loop.json").symlink_to(tmp_path / "loop.json")
    (tmp_path / "dangling.json").symlink_to(tmp_path / "gone" / "r.json")
    with pytest.raises(ReportPathError) as raised:
        check_destination(path, "JSON report")
    assert str(raised.value) == message.replace("{tmp}", str(tmp_path))


@pytest.mark.parametrize("name", ["r.json", "existing.json", "sub/r.json"])
def test_good_destinations_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "existing.json").write_text(OLD)
    (tmp_path / "sub").mkdir()
    check_destination(name, "JSON report")
    check_destination(tmp_path / name, "JSON report")
    assert files(tmp_path) == ["existing.json", "sub"]  # checking writes nothing


@pytest.mark.skipif(ROOT, reason="root writes whatever the permission bits say")
def test_directory_without_write_permission(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(ReportPathError) as raised:
            check_destination(locked / "r.json", "JSON report")
    finally:
        locked.chmod(0o755)
    assert str(raised.value) == (
        f"cannot write the JSON report to '{locked}/r.json': no permission to create files in "
        f"directory '{locked}'; give a path in a directory you can write to, e.g. 'r.json'"
    )


@pytest.mark.skipif(ROOT, reason="root writes whatever the permission bits say")
def test_report_without_write_permission(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(OLD)
    path.chmod(0o444)
    with pytest.raises(ReportPathError) as raised:
        check_destination(path, "JSON report")
    assert str(raised.value) == (
        f"cannot write the JSON report to '{path}': the file is not writable; make it writable "
        "or give another path, e.g. 'r.json'"
    )
