import nornir_portscan


def test_every_exported_name_resolves():
    for name in nornir_portscan.__all__:
        assert getattr(nornir_portscan, name) is not None, name
    assert sorted(nornir_portscan.__all__) == nornir_portscan.__all__
