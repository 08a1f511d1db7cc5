"""Every float option refuses nan, infinities and negatives with one OptionError line, from the
Python API and the command line (exit 2) alike; nothing is sent. (Through the Nornir task and
the Ansible module: the conformance scenarios wait_timeout_nan and wait_timeout_inf.)"""

from __future__ import annotations

import math

import pytest

from nornir_portscan.cli import main
from nornir_portscan.errors import OptionError
from nornir_portscan.pipeline import build_job

FLOATS = ("timeout", "min_timeout", "rate", "host_timeout", "wait_timeout", "interval")
BAD = (math.nan, math.inf, -math.inf, -1.0, 0.0)


@pytest.mark.parametrize("value", BAD, ids=repr)
@pytest.mark.parametrize("option", FLOATS)
def test_python_api_refuses(option: str, value: float) -> None:
    with pytest.raises(OptionError) as caught:
        build_job(["127.0.0.1"], "22", **{option: value})
    assert str(caught.value).startswith(f"invalid {option} {value!r}: use a number")
    assert f"e.g. {option}=" in str(caught.value)


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "Infinity", "-1", "1e999"])
@pytest.mark.parametrize("option", FLOATS)
def test_cli_refuses_in_one_line(
    option: str, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    flag = "--" + option.replace("_", "-")
    # --flag=-1: argparse takes a bare -1 for an option, since -4 and -6 are options
    assert main(["-p", "22", "127.0.0.1", f"{flag}={text}", "--no-progress"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"portscan: error: invalid {option} ")
    assert err.count("\n") == 1
