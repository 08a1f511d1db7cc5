"""The fleet package exports the public functions of its modules, and lists them."""

import nornir_portscan.fleet as fleet
from nornir_portscan.fleet import baseline, matrix, scopes, verdicts


def test_the_package_exports_the_matrix_verdicts_and_baseline():
    for module in (matrix, verdicts, baseline, scopes):
        for name in module.__all__:
            if name == "CONFLICT":
                continue
            assert getattr(fleet, name) is getattr(module, name), name
            assert name in fleet.__all__, name


def test_the_docstring_names_each_exported_function():
    doc = fleet.__doc__ or ""
    for name in (
        "reachability_matrix",
        "judge_merged",
        "merged_drift",
        "rechecks",
        "confirm_rechecks",
        "drift_section",
        "merge_failure",
    ):
        assert name in doc, name
