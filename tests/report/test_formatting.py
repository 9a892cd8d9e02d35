"""benchsuite.formatting: the one place numbers are printed.

Method labels are stored in every run's record, so the hyperparameter format is checked
against the engine's own formatter as it was before it moved here (a frozen copy below).
"""

import numpy as np
import pytest

from benchsuite.formatting import fmt, fmt_hyperparameter, fmt_hyperparameters, fmt_list, fmt_p


def _engine_format_values(values) -> str:
    """benchsuite.execution.engine._format_values before it moved to the formatting module (frozen)."""
    return ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values)


HYPERPARAMETER_VALUES = [
    0, 1, -3, 10, 1000000, 12345678901234, True, False, None,
    1e-4, 1e-5, 3e-7, 0.1, 0.5, 3.0, 1.0, 0.0, -0.0, -2.5, 100.0, 1e6, 1234567.0, 123456.0, 0.00012345678,
    1 / 3, 2.5e-3, float("inf"), float("-inf"), float("nan"),
    "sgd", "", "a b", "1e-4", [1, 2], [0.1, 1e-4], (1, 2.0), {"a": 1},
    np.float64(1e-4), np.float32(0.1), np.int64(7), np.bool_(True),
]


@pytest.mark.parametrize("value", HYPERPARAMETER_VALUES, ids=repr)
def test_hyperparameters_print_as_the_engine_printed_them(value):
    assert fmt_hyperparameters([("x", value)]) == _engine_format_values([("x", value)])
    assert fmt_hyperparameter(value) == _engine_format_values([("x", value)]).removeprefix("x=")


def test_several_hyperparameters_print_as_the_engine_printed_them():
    values = [("lam", 1e-4), ("p", 0.5), ("mode", "schedule"), ("layers", [1, 2]), ("on", True), ("k", 3)]
    expected = "lam=0.0001,p=0.5,mode=schedule,layers=[1, 2],on=True,k=3"
    assert fmt_hyperparameters(values) == _engine_format_values(values) == expected
    assert fmt_hyperparameters([]) == _engine_format_values([]) == ""


def test_measured_numbers():
    assert [fmt(v) for v in (None, float("nan"), float("inf"), True, 3, 0.0, 0.123456, 1e-4, 12345.6)] == [
        "-", "-", "-", "true", "3", "0", "0.1235", "1.000e-04", "1.235e+04"]
    assert fmt(0.123456, 2) == "0.12"
    assert [fmt_p(p) for p in (None, 5e-5, 0.005, 0.2)] == ["-", "<0.0001", "0.0050", "0.200"]
    assert fmt_list([0.5, 1e-5, 2]) == "[0.5, 1.000e-05, 2]"
    assert fmt_list(0.25) == "0.25"
