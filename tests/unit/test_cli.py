"""Bad input through the real command line: exit 2, one line, no traceback, nothing sent."""

import pytest

from nornir_portscan import __version__
from nornir_portscan.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["-p", "22,90-80", "127.0.0.1"],
            "portscan: error: invalid port range '90-80' in '22,90-80': start must be <= end, "
            "e.g. '80-90'",
        ),
        (["-p", "0", "127.0.0.1"], "portscan: error: invalid port '0' in '0'"),
        (["127.0.0.300"], "portscan: error: invalid target '127.0.0.300'"),
        (["127.0.0.0/8"], "portscan: error: '127.0.0.0/8' expands to 16777216 hosts"),
        (
            ["--timeout", "0", "127.0.0.1"],
            "portscan: error: invalid timeout 0: use a number of seconds > 0",
        ),
        (
            ["--timeout", "soon", "127.0.0.1"],
            "portscan: error: invalid timeout 'soon': use a number of seconds > 0",
        ),
        ([], "portscan: error: no targets given"),
        # a negative value is the option's value, not an option (the parser has -4 and -6)
        (
            ["--timeout", "-1", "127.0.0.1"],
            "portscan: error: invalid timeout -1: use a number of seconds > 0",
        ),
        (["--rate", "-inf", "127.0.0.1"], "portscan: error: invalid rate -inf: use a number > 0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    with pytest.raises(SystemExit) as exited:
        raise SystemExit(main(argv))
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(message)
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_version(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"portscan {__version__}"


def test_the_engine_imports_no_front_door_and_no_gevent():
    import subprocess
    import sys

    code = (
        "import sys, nornir_portscan; from nornir_portscan import scan, build_request; "
        "import nornir_portscan.cli; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('nornir', 'ansible', 'gevent')];"
        "print(bad)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
