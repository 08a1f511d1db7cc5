"""Audits against real listeners on loopback: policies, wait-until and drift, through the real
``portscan`` command line and through ``run_audit``."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import jsonschema
import pytest
from support import CLI, REPO, closed_port, in_netns, nft, wait_for_main_scan

from nornir_portscan import ScanRequest, build_request, parse_ports, scan
from nornir_portscan.audit.drift import Drift
from nornir_portscan.audit.gates import Unmet, run_audit
from nornir_portscan.audit.policy import Violation, load_policy_file, parse_policy
from nornir_portscan.cli import EXIT_INPUT, EXIT_OK, EXIT_VIOLATED
from nornir_portscan.reports.data import report_schema, report_to_dict

FAST = ("--timeout", "0.5", "--no-progress")


def valid(data: dict[str, object]) -> dict[str, object]:
    jsonschema.validate(data, report_schema())
    return data


def listener(host: str, port: int = 0) -> socket.socket:
    """A listening socket the test closes itself (the kernel completes the handshakes)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(64)
    return sock


def fresh(listeners, host: str, taken: set[int]) -> int:
    """A new listener on ``host`` whose port number is not in ``taken`` (bind(0) may hand out a
    number already used on another loopback address)."""
    while (port := listeners.open(host)) in taken:
        pass
    taken.add(port)
    return port


def fresh_closed(host: str, taken: set[int]) -> int:
    while (port := closed_port(host)) in taken:
        pass
    taken.add(port)
    return port


# -- policies -------------------------------------------------------------------------------

POLICY = """\
defaults:
  expect_closed: "{q}"
  allowed_open: ""
groups:
  web:
    hosts: [127.0.0.21, 127.0.0.22]
    expect_open: "{p}"
    allowed_open: "{p}"
  db:
    expect_closed: "{c}"
    allowed_open: "{q}"
hosts:
  127.0.0.22:
    expect_open: "{p},{c}"
    allowed_open: "{p},{c}"
  127.0.0.23:
    groups: [db]
"""


@pytest.fixture
def estate(listeners, tmp_path):
    """Four hosts and a policy file. 127.0.0.21 (web) is compliant; 127.0.0.22 (web, and its own
    entry) expects port c open, which is closed; 127.0.0.23 (db, whose keys replace the
    defaults) has r open, outside its allow-list; 127.0.0.24 gets only the defaults and is
    compliant. Only r is given with -p: p, q and c are scanned because the policy names them."""
    taken: set[int] = set()
    p = fresh(listeners, "127.0.0.21", taken)
    listeners.open("127.0.0.22", p)
    q = fresh(listeners, "127.0.0.23", taken)
    r = fresh(listeners, "127.0.0.23", taken)
    c = fresh_closed("127.0.0.21", taken)
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(p=p, q=q, c=c))
    return {"p": p, "q": q, "r": r, "c": c, "path": path}


def test_policy_file_inheritance_through_the_cli(run_cli, estate, tmp_path):
    p, q, r, c = estate["p"], estate["q"], estate["r"], estate["c"]
    out = tmp_path / "audit.json"
    done = run_cli(
        "--policy", str(estate["path"]), "-p", str(r), "--json", str(out), *FAST, "127.0.0.21-24"
    )
    assert done.returncode == EXIT_VIOLATED, done.stderr
    assert done.stderr == ""
    assert done.stdout.splitlines()[-4:] == [
        "policy: 2 compliant, 2 non-compliant, 0 not judged",
        "failed: 2 of 4 hosts",
        f"  127.0.0.22: port {c} closed (expected open)",
        f"  127.0.0.23: port {r} open (not in allowed_open)",
    ]
    data = valid(json.loads(out.read_text()))
    assert data["compliance"] == {"compliant": 2, "non_compliant": 2, "error": 0, "violations": 2}
    hosts = {h["name"]: h for h in data["hosts"]}
    assert list(hosts) == ["127.0.0.21", "127.0.0.22", "127.0.0.23", "127.0.0.24"]
    assert {n: h["compliant"] for n, h in hosts.items()} == {
        "127.0.0.21": True,
        "127.0.0.22": False,
        "127.0.0.23": False,
        "127.0.0.24": True,
    }
    assert {n: h["violations"] for n, h in hosts.items()} == {
        "127.0.0.21": [],
        "127.0.0.22": [
            {"port": c, "expected": "open", "actual": "closed", "reason": "conn-refused"}
        ],
        "127.0.0.23": [{"port": r, "expected": "not open", "actual": "open", "reason": "syn-ack"}],
        "127.0.0.24": [],
    }
    assert {n: h["open_ports"] for n, h in hosts.items()} == {
        "127.0.0.21": [p],
        "127.0.0.22": [p],
        "127.0.0.23": [r],  # q is open too, but db's expect_closed replaced the default's
        "127.0.0.24": [],
    }
    assert {n: parse_ports(h["scanned_ports"]) for n, h in hosts.items()} == {
        "127.0.0.21": tuple(sorted({p, q, r})),
        "127.0.0.22": tuple(sorted({p, q, r, c})),
        "127.0.0.23": tuple(sorted({r, c})),
        "127.0.0.24": tuple(sorted({q, r})),
    }

    def spec(*ports: int) -> str:
        return ",".join(map(str, sorted(ports)))

    assert {n: h["policy"] for n, h in hosts.items()} == {
        "127.0.0.21": {
            "expect_open": spec(p),
            "expect_closed": spec(q),
            "expect_filtered": "",
            "allowed_open": spec(p),
        },
        "127.0.0.22": {
            "expect_open": spec(p, c),
            "expect_closed": spec(q),
            "expect_filtered": "",
            "allowed_open": spec(p, c),
        },
        "127.0.0.23": {
            "expect_open": "",
            "expect_closed": spec(c),
            "expect_filtered": "",
            "allowed_open": spec(q),
        },
        "127.0.0.24": {
            "expect_open": "",
            "expect_closed": spec(q),
            "expect_filtered": "",
            "allowed_open": "",
        },
    }


def test_policy_file_through_run_audit(estate):
    r, c = estate["r"], estate["c"]
    request = build_request(["127.0.0.21-24"], [r], timeout=0.5)
    book = load_policy_file(estate["path"])
    audit = run_audit(request, [book.policy_for(t.name, t.address) for t in request.targets])
    assert [(v.name, v.compliant, v.violations) for v in audit.verdicts if v] == [
        ("127.0.0.21", True, ()),
        ("127.0.0.22", False, (Violation(c, "open", "closed", "conn-refused"),)),
        ("127.0.0.23", False, (Violation(r, "not open", "open", "syn-ack"),)),
        ("127.0.0.24", True, ()),
    ]
    assert audit.violated


def test_allowed_open_and_expect_closed_flags(run_cli, listeners):
    taken: set[int] = set()
    a = fresh(listeners, "127.0.0.31", taken)
    b = fresh(listeners, "127.0.0.31", taken)
    c = fresh_closed("127.0.0.31", taken)
    done = run_cli("--allowed-open", str(a), "-p", f"{a},{b}", *FAST, "127.0.0.31")
    assert done.returncode == EXIT_VIOLATED, done.stderr
    assert done.stdout.splitlines()[-3:] == [
        "policy: 0 compliant, 1 non-compliant, 0 not judged",
        "failed: 1 of 1 hosts",
        f"  127.0.0.31: port {b} open (not in allowed_open)",
    ]
    done = run_cli(
        "--expect-closed", f"{a},{c}", "--expect-open", str(b), "-p", str(c), "--json", "-",
        *FAST, "127.0.0.31",
    )  # fmt: skip
    assert done.returncode == EXIT_VIOLATED, done.stderr
    (host,) = valid(json.loads(done.stdout))["hosts"]
    assert host["violations"] == [
        {"port": a, "expected": "closed", "actual": "open", "reason": "syn-ack"}
    ]
    assert parse_ports(host["scanned_ports"]) == tuple(sorted({a, b, c}))
    done = run_cli("--allowed-open", f"{a},{b}", "--expect-closed", str(c), "-p", str(a), *FAST,
                   "127.0.0.31")  # fmt: skip
    assert done.returncode == EXIT_OK, done.stderr
    assert done.stdout.splitlines()[-1] == "policy: 1 compliant, 0 non-compliant, 0 not judged"


@pytest.mark.netns
def test_expect_closed_and_filtered_in_a_namespace(netns):
    nft(
        netns,
        textwrap.dedent("""
        table inet t {
          chain input {
            type filter hook input priority 0;
            tcp dport 81 drop
          }
        }
    """),
    )
    base = ("--no-progress", "--timeout", "0.3", "--retries", "0", "--json", "-", "-p", "1")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return in_netns(netns, *CLI, *args, *base, "127.0.0.1", cwd=str(REPO))

    done = cli("--expect-filtered", "81", "--expect-closed", "80")
    assert done.returncode == EXIT_OK, done.stderr
    data = valid(json.loads(done.stdout))
    assert data["compliance"] == {"compliant": 1, "non_compliant": 0, "error": 0, "violations": 0}
    assert data["hosts"][0]["filtered_ports"] == [81]
    done = cli("--expect-filtered", "80", "--expect-closed", "81")
    assert done.returncode == EXIT_VIOLATED, done.stderr
    (host,) = valid(json.loads(done.stdout))["hosts"]
    assert (host["compliant"], host["violations"]) == (
        False,
        [
            {"port": 80, "expected": "filtered", "actual": "closed", "reason": "conn-refused"},
            {"port": 81, "expected": "closed", "actual": "filtered", "reason": "no-response"},
        ],
    )


# -- waiting --------------------------------------------------------------------------------


def test_wait_converges_when_a_listener_opens_mid_wait(listeners):
    """The port opens after the first round (the scanner says when): the second round sees it,
    with real sockets and no clock in the assertions."""
    port = closed_port("127.0.0.41")
    rounds: list[ScanRequest] = []

    def scanner(request, **kwargs):
        report = scan(request, **kwargs)
        rounds.append(request)
        if len(rounds) == 1:
            listeners.open("127.0.0.41", port)
        return report

    request = build_request(["127.0.0.41"], [port], timeout=0.5)
    policy = parse_policy({"expect_open": port})
    audit = run_audit(request, [policy], wait=True, wait_timeout=30, interval=0.1,
                      scanner=scanner)  # fmt: skip
    wait = audit.wait
    assert wait is not None
    assert (wait.converged, wait.unmet, wait.rounds, len(rounds)) == (True, (), 2, 2)
    assert audit.report.hosts[0].open_ports == [port]
    assert audit.verdict(0) is not None
    assert audit.verdict(0).compliant is True
    assert not audit.violated


DELAYED_LISTENER = """
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
sys.stdin.readline()  # the test says when
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind((host, port))
sock.listen(64)
print(time.time(), flush=True)
time.sleep(30)
"""


def test_cli_wait_converges_on_a_listener_that_starts_late(tmp_path):
    """The listener starts once the CLI's first scan is over: a later round must see it."""
    port = closed_port("127.0.0.42")
    out = tmp_path / "wait.json"
    late = subprocess.Popen(
        [sys.executable, "-c", DELAYED_LISTENER, "127.0.0.42", str(port)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    cli = subprocess.Popen(
        [*CLI, "--wait", "--expect-open", str(port), "-p", str(port), "--interval", "0.2",
         "--wait-timeout", "60", "--json", str(out), *FAST, "127.0.0.42"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for_main_scan(cli)
        assert late.stdin is not None
        assert late.stdout is not None
        late.stdin.write("open\n")
        late.stdin.flush()
        opened_at = float(late.stdout.readline())
        stdout, stderr = cli.communicate(timeout=60)
    finally:
        cli.kill()
        late.kill()
        late.wait(5)
    assert cli.returncode == EXIT_OK, stderr
    data = valid(json.loads(out.read_text()))
    wait = data["wait"]
    assert (wait["converged"], wait["unmet"]) == (True, [])
    assert wait["rounds"] >= 2
    converged_at = datetime.fromisoformat(data["started"]).timestamp() + wait["elapsed"]
    assert converged_at >= opened_at - 0.05  # never a result older than the port's opening
    assert stdout.splitlines()[-2:] == [
        "policy: 1 compliant, 0 non-compliant, 0 not judged",
        f"wait: converged after {wait['elapsed']:.1f} s, {wait['rounds']} rounds",
    ]
    assert data["hosts"][0]["open_ports"] == [port]


def test_cli_wait_that_does_not_converge_lists_what_never_did(run_cli, listeners, tmp_path):
    taken: set[int] = set()
    a = fresh(listeners, "127.0.0.43", taken)
    c = fresh_closed("127.0.0.43", taken)
    out = tmp_path / "wait.json"
    done = run_cli(
        "--wait", "--expect-open", str(c), "--expect-closed", str(a), "-p", str(a),
        "--wait-timeout", "1", "--interval", "0.25", "--json", str(out), *FAST, "127.0.0.43",
    )  # fmt: skip
    assert done.returncode == EXIT_VIOLATED, done.stderr
    wait = valid(json.loads(out.read_text()))["wait"]
    unmet = sorted(
        [
            {"host": "127.0.0.43", "port": a, "expected": "closed", "actual": "open"},
            {"host": "127.0.0.43", "port": c, "expected": "open", "actual": "closed"},
        ],
        key=lambda u: u["port"],
    )
    assert (wait["converged"], wait["unmet"]) == (False, unmet)
    assert wait["rounds"] >= 1  # how many fit is the fake clock's business (tests/unit)
    texts = {a: f"port {a} open (expected closed)", c: f"port {c} closed (expected open)"}
    assert done.stdout.splitlines()[-3:] == [
        f"wait: did NOT converge after {wait['elapsed']:.1f} s, {wait['rounds']} rounds",
        "failed: 1 of 1 hosts",
        "  127.0.0.43: did not converge within 1 s: "
        + ", ".join(texts[u["port"]] for u in unmet),
    ]


def test_wait_through_run_audit_reports_unmet_pairs(listeners):
    a = listeners.open("127.0.0.44")
    request = build_request(["127.0.0.44"], [a], timeout=0.5)
    audit = run_audit(
        request,
        [parse_policy({"expect_closed": a})],
        wait=True,
        wait_timeout=0.6,
        interval=0.2,
    )
    assert audit.wait is not None
    assert audit.wait.converged is False
    assert audit.wait.unmet == (Unmet("127.0.0.44", a, "closed", "open"),)
    assert 0.4 <= audit.wait.elapsed <= 1.2
    assert audit.violated


# -- baselines and drift --------------------------------------------------------------------


def test_cli_drift_is_confirmed_and_fails(run_cli, listeners, tmp_path):
    taken: set[int] = set()
    gone = listener("127.0.0.51")
    was_open = gone.getsockname()[1]
    taken.add(was_open)
    c = fresh_closed("127.0.0.51", taken)
    ports = ("-p", f"{was_open},{c}")
    baseline = tmp_path / "baseline.json"
    try:
        done = run_cli(*ports, "--json", str(baseline), *FAST, "127.0.0.51")
    finally:
        gone.close()
    assert done.returncode == EXIT_OK, done.stderr
    assert json.loads(baseline.read_text())["hosts"][0]["open_ports"] == [was_open]
    listeners.open("127.0.0.51", c)
    now = tmp_path / "now.json"
    done = run_cli(
        *ports, "--baseline", str(baseline), "--recheck", "2", "--json", str(now), *FAST,
        "127.0.0.51",
    )  # fmt: skip
    assert done.returncode == EXIT_VIOLATED, done.stderr
    changes = sorted([(c, "not open -> open"), (was_open, "open -> not open")])
    assert done.stdout.splitlines()[-5:] == [
        "drift: 1 hosts changed (2 of 2 differences confirmed on re-check), 0 appeared, "
        "0 disappeared",
        *(f"  127.0.0.51 port {port} {change}" for port, change in changes),
        "failed: 1 of 1 hosts",
        "  127.0.0.51: unexpected drift since the baseline: "
        + ", ".join(f"port {port} {change}" for port, change in changes),
    ]
    data = valid(json.loads(now.read_text()))
    assert data["drift"] == {
        "drifted": True,
        "hosts_changed": 1,
        "appeared": [],
        "disappeared": [],
        "rechecked": 2,
        "confirmed": 2,
    }
    assert data["hosts"][0]["drift"] == {
        "opened": [c],
        "closed": [was_open],
        "changed": [],
        "unexpected": sorted([c, was_open]),  # no expectations: every change is unexpected
        "in_baseline": True,
    }
    assert "compliance" not in data


def test_a_blip_is_rechecked_but_not_called_drift(listeners):
    port = closed_port("127.0.0.52")
    request = build_request(["127.0.0.52"], [port], timeout=0.5)
    baseline = report_to_dict(scan(request))
    blip = listener("127.0.0.52", port)
    calls: list[ScanRequest] = []

    def scanner(req: ScanRequest, **kwargs: object):
        calls.append(req)
        try:
            return scan(req, **kwargs)  # type: ignore[arg-type]
        finally:
            blip.close()  # the port was open for the first scan only

    try:
        audit = run_audit(request, baseline=baseline, recheck=2, scanner=scanner)
    finally:
        blip.close()
    assert audit.report.hosts[0].open_ports == [port]  # the scan itself saw it open
    assert audit.drift == Drift((), rechecked=1, confirmed=0)
    assert len(calls) == 3
    assert calls[1].targets[0].ports == (port,)
    assert not audit.violated
    data = valid(report_to_dict(audit))
    assert data["drift"] == {
        "drifted": False,
        "hosts_changed": 0,
        "appeared": [],
        "disappeared": [],
        "rechecked": 1,
        "confirmed": 0,
    }
    assert data["hosts"][0]["drift"] == {
        "opened": [],
        "closed": [],
        "changed": [],
        "unexpected": [],
        "in_baseline": True,
    }


def test_cli_hosts_that_appeared_and_disappeared(run_cli, tmp_path):
    port = closed_port("127.0.0.61")
    baseline = tmp_path / "baseline.json"
    done = run_cli("-p", str(port), "--json", str(baseline), *FAST, "127.0.0.61-62")
    assert done.returncode == EXIT_OK, done.stderr
    done = run_cli("-p", str(port), "--baseline", str(baseline), "--json", "-", *FAST,
                   "127.0.0.62-63")  # fmt: skip
    assert done.returncode == EXIT_VIOLATED, done.stderr
    data = valid(json.loads(done.stdout))
    assert data["drift"] == {
        "drifted": True,
        "hosts_changed": 0,
        "appeared": ["127.0.0.63"],
        "disappeared": ["127.0.0.61"],
        "rechecked": 0,
        "confirmed": 0,
    }
    done = run_cli("-p", str(port), "--baseline", str(baseline), *FAST, "127.0.0.62-63")
    assert done.stdout.splitlines()[-3:] == [
        "drift: 0 hosts changed (0 of 0 differences confirmed on re-check), 1 appeared, "
        "1 disappeared",
        "  appeared: 127.0.0.63",
        "  disappeared: 127.0.0.61",
    ]


# -- bad input ------------------------------------------------------------------------------

NOT_A_REPORT = (
    "portscan: error: baseline '{tmp}/{file}' is not a portscan JSON report: save one with "
    "'portscan --json baseline.json ...'"
)


@pytest.mark.parametrize(
    ("files", "args", "message"),
    [
        (
            {},
            ["--policy", "{tmp}/missing.yaml"],
            "portscan: error: cannot read policy file '{tmp}/missing.yaml': No such file or "
            "directory",
        ),
        (
            {"p.yaml": "defaults: [\n"},
            ["--policy", "{tmp}/p.yaml"],
            "portscan: error: policy file '{tmp}/p.yaml' is not valid YAML: line 2, column 1: "
            "expected the node content, but found '<stream end>'; "
            "e.g. 'defaults: {{allowed_open: \"22,443\"}}'",
        ),
        (
            {"p.yaml": "groups:\n  web:\n    hosts: [127.0.0.1]\n    expect_opn: '22'\n"},
            ["--policy", "{tmp}/p.yaml"],
            "portscan: error: unknown key 'expect_opn' in {tmp}/p.yaml group 'web': use "
            "expect_open, expect_closed, expect_filtered, allowed_open, "
            "e.g. {{expect_open: '22,443'}}",
        ),
        (
            {"p.yaml": "default:\n  expect_open: '22'\n"},
            ["--policy", "{tmp}/p.yaml"],
            "portscan: error: policy file '{tmp}/p.yaml': unknown key 'default': use the "
            "top-level keys defaults, groups and hosts, e.g. 'defaults: {{allowed_open: "
            '"22,443"}}\'',
        ),
        (
            {"p.yaml": "defaults: [22]\n"},
            ["--policy", "{tmp}/p.yaml"],
            "portscan: error: policy file '{tmp}/p.yaml': defaults must map policy keys to port "
            "specs, e.g. 'defaults: {{allowed_open: \"22,443\"}}'",
        ),
        (
            {"p.yaml": "groups:\n  web:\n    hosts: [127.0.0.1]\n    expect_open: '22'\n"
                       "hosts:\n  127.0.0.1:\n    expect_closed: '20-30'\n"},
            ["--policy", "{tmp}/p.yaml"],
            "portscan: error: policy of '127.0.0.1': port 22 is in both expect_open and "
            "expect_closed; give each port one expected state, e.g. expect_open: '22' and "
            "expect_closed: '23'",
        ),
        (
            {},
            ["--expect-open", "22", "--expect-filtered", "1-100"],
            "portscan: error: expectations: port 22 is in both expect_open and "
            "expect_filtered; give each port one expected state, e.g. expect_open: '22' and "
            "expect_filtered: '23'",
        ),
        (
            {},
            ["--allowed-open", "22,90-80"],
            "portscan: error: allowed_open: invalid port range '90-80' in '22,90-80': start "
            "must be <= end, e.g. '80-90'",
        ),
        (
            {"b.json": '{"version": "1.0", "hosts": {}}'},
            ["--baseline", "{tmp}/b.json"],
            NOT_A_REPORT.replace("{file}", "b.json"),
        ),
        (
            {"b.json": "[1, 2]"},
            ["--baseline", "{tmp}/b.json"],
            NOT_A_REPORT.replace("{file}", "b.json"),
        ),
        (
            {"b.json": "hosts:\n"},
            ["--baseline", "{tmp}/b.json"],
            "portscan: error: baseline '{tmp}/b.json' is not JSON: Expecting value: line 1 "
            "column 1 (char 0)",
        ),
        (
            {},
            ["--wait", "--wait-timeout", "5"],
            "portscan: error: nothing to wait for: give expectations, e.g. expect_open='8080', "
            "a policy file, or a host's own",
        ),
        (
            {},
            ["--wait", "--expect-open", "22", "--interval", "0"],
            "portscan: error: invalid interval 0: use a number of seconds > 0, e.g. interval=2",
        ),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(run_cli, tmp_path, files, args, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    argv = [a.format(tmp=tmp_path) for a in args]
    done = run_cli(*argv, "-p", "1", *FAST, "127.0.0.1", timeout=30)
    assert (done.returncode, done.stdout) == (EXIT_INPUT, "")
    assert done.stderr == message.format(tmp=tmp_path) + "\n"


def test_bad_input_sends_nothing(run_cli, tmp_path):
    """A bad policy is refused before the scan: no JSON report is written."""
    (tmp_path / "p.yaml").write_text("hosts:\n  127.0.0.1: {groups: [nope]}\n")
    out = tmp_path / "out.json"
    done = run_cli("--policy", str(tmp_path / "p.yaml"), "--json", str(out), "-p", "1", *FAST,
                   "127.0.0.1")  # fmt: skip
    assert done.returncode == EXIT_INPUT
    assert not Path(out).exists()
