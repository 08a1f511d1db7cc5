"""Input files (baselines, policy files, target files): checked completely when read, before the
first packet, and refused with one line that names the file, the place in it and a valid form."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from nornir_portscan import TargetSpecError, parse_targets

# -- target files ---------------------------------------------------------------------------

TARGETS = "give a text file of targets, e.g. one '127.0.0.1' a line"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"127.0.0.1\n\x00\x00\x00",
         f"cannot read target file '{{path}}': a binary file, not text (a NUL byte at line 2, "
         f"offset 10); {TARGETS}"),
        (b"127.0.0.1\n\xff\xfe\n",
         "cannot read target file '{path}': not UTF-8 text (byte 0xff at line 2, offset 10); "
         "save it as UTF-8"),
        ("127.0.0.1\n".encode("utf-16"),
         "cannot read target file '{path}': UTF-16 text, not UTF-8; save it as UTF-8"),
    ],
)  # fmt: skip
def test_unreadable_target_files_are_one_line(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes(content)
    with pytest.raises(TargetSpecError) as raised:
        parse_targets([], files=[path])
    assert str(raised.value) == message.replace("{path}", str(path))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d, "cannot read target file '{path}': Is a directory"),
        (lambda d: d / "missing.txt",
         "cannot read target file '{path}': No such file or directory"),
    ],
)  # fmt: skip
def test_target_file_paths_that_are_not_files(
    tmp_path: Path, make: Callable[[Path], Path], message: str
) -> None:
    path = make(tmp_path)
    with pytest.raises(TargetSpecError) as raised:
        parse_targets([], files=[path])
    assert str(raised.value) == message.replace("{path}", str(path))


def test_huge_target_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    with path.open("wb") as file:
        file.truncate(64 * 2**20 + 1)
    with pytest.raises(TargetSpecError) as raised:
        parse_targets([], files=[path])
    assert str(raised.value) == (
        f"cannot read target file '{path}': larger than 64 MiB, the most a target file may be"
    )


def test_target_file_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes(b"\xef\xbb\xbf127.0.0.1\r\n127.0.0.2\r\n")
    assert [t.address for t in parse_targets([], files=[path])] == ["127.0.0.1", "127.0.0.2"]


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_endless_target_file_is_bounded() -> None:
    with pytest.raises(TargetSpecError) as raised:
        parse_targets([], files=["/dev/zero"])
    assert str(raised.value) == (
        "cannot read target file '/dev/zero': larger than 64 MiB, the most a target file may be"
    )
