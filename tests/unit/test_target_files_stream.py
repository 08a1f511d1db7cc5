"""Target files are read as they are parsed: the scope guard stops a huge ``-iL`` at the first
line past the limit, in memory that does not grow with the file. No test sends a packet."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO

from nornir_portscan.errors import ScopeError, TargetSpecError
from nornir_portscan.targets import parse_targets

LINES = 2_000_000


@pytest.fixture(scope="module")
def huge_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two million distinct loopback addresses, one a line (about 28 MB)."""
    path = tmp_path_factory.mktemp("huge") / "targets.txt"
    with path.open("w", encoding="utf-8") as file:
        file.writelines(
            f"127.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}\n" for i in range(1, LINES + 1)
        )
    return path


MEASURE = """
import json, sys, tracemalloc
from nornir_portscan.targets import parse_targets
from nornir_portscan.errors import ScopeError
tracemalloc.start()
try:
    parse_targets([], files=[sys.argv[1]])
except ScopeError as exc:
    message = str(exc)
else:
    message = None
print(json.dumps({"message": message, "peak": tracemalloc.get_traced_memory()[1]}))
"""


def _refuse(path: Path) -> dict[str, object]:
    """Parse ``path`` in an interpreter of its own, so the peak is this parse's alone."""
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=True,
    )
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_a_huge_target_file_is_refused_at_the_limit_in_flat_memory(
    huge_file: Path, tmp_path: Path
) -> None:
    # It used to keep every line and every parsed token before counting them: 2.9 GB and
    # 116 s for two million lines (16 s and 740 MB for half a million on this machine).
    outcome = _refuse(huge_file)
    assert outcome["message"] == (
        f"the targets add up to 65537 hosts by '127.1.0.1' in {str(huge_file)!r} line 65537, "
        "more than the limit of 65536; raise max_hosts or give fewer targets, e.g. split them "
        "across scans"
    )
    small = tmp_path / "small.txt"  # just past the limit: 1/28 of the lines
    with huge_file.open(encoding="utf-8") as file:
        small.write_text("".join(next(file) for _ in range(70_000)), encoding="utf-8")
    small_outcome = _refuse(small)
    assert small_outcome["message"] is not None
    # Flat: the 65536 specs kept below the limit and one 64 KiB read, whatever the file's size
    # (its text alone is 28 MB).
    peak, small_peak = outcome["peak"], small_outcome["peak"]
    assert isinstance(peak, int)
    assert isinstance(small_peak, int)
    assert peak < 1.2 * small_peak, (peak, small_peak)
    assert peak < 40_000_000, peak


def test_the_cli_refuses_a_huge_target_file_in_one_line(huge_file: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "nornir_portscan", "-p", "22", "-iL", str(huge_file)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("portscan: error: the targets add up to 65537 hosts by ")
    assert done.stderr.count("\n") == 1


@pytest.mark.parametrize("block", ["10.0.0.0/8", "::/64", "10.*.*.*"])
def test_a_big_block_in_a_file_is_counted_not_expanded(tmp_path: Path, block: str) -> None:
    path = tmp_path / "targets.txt"
    path.write_text(f"127.0.0.1\n{block}\n", encoding="utf-8")
    with pytest.raises(ScopeError) as caught:
        parse_targets([], files=[path])
    assert str(caught.value).startswith(f"{block!r} in {str(path)!r} line 2 expands to ")


def test_lines_are_whole_across_reads(tmp_path: Path) -> None:
    """A line, or a character of two bytes, cut by the 64 KiB reads is read whole."""
    path = tmp_path / "targets.txt"
    head = "# " + "é" * 40_000 + "\n"  # 80 KB: the first read ends inside this line
    path.write_text(head + "127.0.0.1\r\n127.0.0.2", encoding="utf-8")
    assert [t.address for t in parse_targets([], files=[path])] == ["127.0.0.1", "127.0.0.2"]


def test_a_bad_byte_far_into_a_file_names_its_line_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "targets.txt"
    body = b"127.0.0.1\n" * 20_000  # 200 KB: several reads
    path.write_bytes(b"\xef\xbb\xbf" + body + b"127.0.0.\xff\n")
    with pytest.raises(TargetSpecError) as caught:
        parse_targets([], files=[path], max_hosts=100_000)
    assert str(caught.value) == (
        f"cannot read target file {str(path)!r}: not UTF-8 text (byte 0xff at line 20001, "
        f"offset {3 + len(body) + 8}); save it as UTF-8"
    )
    path.write_bytes(body + b"127.0.0.1\0\n")
    with pytest.raises(TargetSpecError, match=f"a NUL byte at line 20001, offset {len(body) + 9}"):
        parse_targets([], files=[path], max_hosts=100_000)


def test_a_bad_byte_after_a_byte_order_mark_is_the_byte_named(tmp_path: Path) -> None:
    """The offset counts the byte order mark, and names the bad byte, not one 3 bytes before
    (the whole-file reader, which policy files and baselines use, was off by the mark)."""
    from nornir_portscan.inputfile import read_text

    path = tmp_path / "policy.yml"
    path.write_bytes(b"\xef\xbb\xbfdefaults: {}\n# caf\xe9\n")
    with pytest.raises(TargetSpecError) as caught:
        read_text(path, "policy file", limit=2**20, hint="", error=TargetSpecError)
    assert str(caught.value) == (
        f"cannot read policy file {str(path)!r}: not UTF-8 text (byte 0xe9 at line 2, offset "
        "21); save it as UTF-8"
    )
