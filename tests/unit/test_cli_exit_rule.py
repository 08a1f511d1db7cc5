"""The boundary of exit code 3 (README, "Exit codes"): any port that ended ``error`` makes it;
none, and the exit code is 0 or 1 as the audit says. 3 wins over 1. The scheduler's fake worker
(``fake_worker.py``: port p open when p % 7 == 0, else closed) dies on every unit holding port
5: units hold 256 ports at least, so ``-p 1-300`` loses ports 1-256 and keeps 257-300."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from nornir_portscan import cli
from nornir_portscan.engine import processes

FAKE = str(Path(__file__).with_name("fake_worker.py"))
ERROR_LINE = (
    "portscan: error: the scan could not tell the state of {} of {} ports (worker-died); "
    "they are listed as error_ports in the report\n"
)


@pytest.fixture(autouse=True)
def dying_worker(monkeypatch):
    monkeypatch.setattr(processes, "WORKER_COMMAND", [FAKE])
    monkeypatch.setenv("FAKE_DIE_ON_PORT", "5")


@pytest.mark.parametrize(
    ("args", "code", "line"),
    [
        (["-p", "257-300"], 0, ""),  # no port lost: done
        (["-p", "1-300"], 3, ERROR_LINE.format(256, 300)),  # some lost: 3
        (["-p", "257-300", "--expect-open", "258"], 1, ""),  # 258 is closed: violated
        (["-p", "1-300", "--expect-open", "258"], 3, ERROR_LINE.format(256, 300)),  # 3 wins
        (["-p", "1-10"], 3, ERROR_LINE.format(10, 10)),  # a host of errors only
    ],
)
def test_exit_3_when_any_port_ended_error(capsys, args, code, line):
    assert cli.main([*args, "127.0.0.1", "--no-progress", "--processes", "1"]) == code
    assert capsys.readouterr().err == line


def test_one_host_of_two_lost_is_enough(capsys, tmp_path):
    # the policy adds port 5 to the second host only: its one unit dies, the first is fine
    policy = tmp_path / "policy.yml"
    policy.write_text("hosts:\n  127.0.0.2:\n    expect_open: '5'\n")
    argv = ["-p", "257-300", "127.0.0.1-2", "--policy", str(policy), "--no-progress"]
    assert cli.main(argv) == 3
    captured = capsys.readouterr()
    assert captured.err == ERROR_LINE.format(45, 89)
    assert "127.0.0.2  127.0.0.2  error" in captured.out


def test_the_readme_lists_every_exit_code_the_cli_returns():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    table = readme.split("Exit codes, first match wins:", 1)[1].split("\n\n", 2)[1]
    listed = {int(code) for code in re.findall(r"`(\d+)`", table)}
    signals = {128 + s for s in cli._STOP_SIGNALS} | {128 + signal.SIGINT}
    codes = {cli.EXIT_OK, cli.EXIT_VIOLATED, cli.EXIT_INPUT, cli.EXIT_SCAN, cli.EXIT_INTERRUPTED}
    assert listed == codes | signals
