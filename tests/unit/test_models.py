import pickle

import pytest

from nornir_portscan import (
    HostResult,
    HostStatus,
    OptionError,
    PortResult,
    PortState,
    ScanOptions,
    ScanReport,
    ScanRequest,
    Target,
    build_request,
)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout": 0}, "invalid timeout 0: use a number of seconds > 0, e.g. timeout=1.5"),
        (
            {"timeout": "fast"},
            "invalid timeout 'fast': use a number of seconds > 0, e.g. timeout=1.5",
        ),
        ({"retries": 11}, "invalid retries 11: use 0 to 10, e.g. retries=1"),
        ({"rate": -5}, "invalid rate -5: use a number > 0, e.g. rate=1000"),
        (
            {"concurrency": 0},
            "invalid concurrency 0: use a whole number from 1 to 100000, e.g. concurrency=100",
        ),
        (
            {"processes": True},
            "invalid processes True: use a whole number from 1 to 256, e.g. processes=100",
        ),
        (
            {"min_timeout": 2.0},
            "invalid min_timeout 2.0: it must not exceed timeout 1.0, "
            "e.g. min_timeout=0.1 with timeout=1.0",
        ),
    ],
)
def test_bad_options_fail_with_one_line(options, message):
    with pytest.raises(OptionError) as caught:
        ScanOptions(**options)
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)


def test_unknown_option_names_the_valid_ones():
    with pytest.raises(OptionError, match=r"^unknown option 'timout': use one of adaptive, "):
        build_request(["127.0.0.1"], "22", timout=1)


def test_models_pickle_and_are_frozen():
    host = HostResult(
        "h",
        "127.0.0.1",
        HostStatus.UP,
        (
            PortResult(22, PortState.OPEN, "syn-ack", 0.1, 1),
            PortResult(23, PortState.FILTERED, "no-response", None, 2),
        ),
        5,
    )
    report = ScanReport((host,), ScanOptions(), 1.0, 2.5, 7)
    request = ScanRequest((Target("h", "127.0.0.1"),), (22, 23))
    for obj in (host, report, request):
        assert pickle.loads(pickle.dumps(obj)) == obj
    with pytest.raises(AttributeError):
        host.name = "x"  # type: ignore[misc]
    assert (host.open_ports, host.filtered_ports, host.error_ports) == ([22], [23], [])
    assert (report.duration, report.rate) == (1.5, 7 / 1.5)


def test_a_host_that_only_sent_its_own_icmp_errors_is_up_in_every_report() -> None:
    """Issue 12: a host whose every port the host itself rejected (status ``up``, set by the
    executor from the worker's ``UnitDone.replied``) answered: ``up`` in JSON, nmap XML and a
    merge of shards."""
    from nornir_portscan.fleet.merge import _status
    from nornir_portscan.reports.data import host_entry
    from nornir_portscan.reports.nmap_xml import _host_state

    rejected = PortResult(113, PortState.FILTERED, "admin-prohibited", 0.4, 1)
    host = HostResult("h", "198.18.1.1", HostStatus.UP, (rejected,), scanned=(113,))
    silent = HostResult("h", "198.18.1.1", HostStatus.NO_RESPONSE, (rejected,), scanned=(113,))
    assert (host.answered, silent.answered) == (True, False)
    report = ScanReport((host,), ScanOptions(), 0.0, 1.0, 1)
    assert host_entry(report, 0)["up"] is True
    assert _host_state(host) == ("up", "admin-prohibited")
    assert _host_state(silent) == ("down", "no-response")
    filtered = {113: PortState.FILTERED}
    assert _status(["up", "no-response"], filtered) is HostStatus.UP
