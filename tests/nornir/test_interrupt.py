"""Ctrl-C under the ThreadedRunner: the run stops at once, not at the end of wait_timeout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from conftest import script_env
from support import closed_port

SCRIPT = textwrap.dedent(
    """
    import sys
    from nornir import InitNornir
    from nornir_portscan import portscan

    hosts, port = sys.argv[1], int(sys.argv[2])
    nr = InitNornir(
        runner={"plugin": "threaded", "options": {"num_workers": 10}},
        inventory={"plugin": "SimpleInventory", "options": {"host_file": hosts}},
        logging={"enabled": False},
    )
    print("running", flush=True)
    try:
        # 40 hosts, each waiting up to 10 minutes for a port that never opens
        nr.run(task=portscan, ports=str(port), expect_open=str(port), wait=True,
               wait_timeout=600, interval=0.2, timeout=0.5)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(130)
    print("finished", flush=True)
    """
)


def test_ctrl_c_stops_a_threaded_run_within_a_second(tmp_path: Path) -> None:
    port = closed_port("127.0.0.1")
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(
        "".join(f"h{i}:\n  hostname: 127.0.0.{i + 1}\n" for i in range(40)), encoding="utf-8"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(hosts), str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=script_env(),
        start_new_session=True,  # its own process group, as a terminal's job
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "running\n"
        # poll until the workers scan (the calls are waiting for their ports by then)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = subprocess.run(
                ["pgrep", "-P", str(proc.pid), "-f", "nornir_portscan.engine.worker"],
                capture_output=True,
                text=True,
            )
            workers = [int(pid) for pid in found.stdout.split()]
            if workers:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("no worker process ever started")
        time.sleep(0.5)  # a few wait rounds (driving the test, not timing an assertion)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, as a terminal sends it
        sent = time.monotonic()
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    assert (proc.returncode, out) == (130, "interrupted\n"), err
    assert took < 1.5
    deadline = time.monotonic() + 10  # and no worker is left behind
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in workers):
        time.sleep(0.05)
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]
