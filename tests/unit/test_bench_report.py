"""The benchmark reports' shared arithmetic."""

import pytest

from bench.report import markdown_table, median_p95, percentile

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("values", "share", "expected"),
    [
        ([5.0], 0.95, 5.0),
        ([float(v) for v in range(1, 101)], 0.95, 95.0),
        ([float(v) for v in range(1, 51)], 0.95, 48.0),
        ([float(v) for v in range(1, 21)], 0.5, 10.0),
        ([3.0, 1.0, 2.0], 1.0, 3.0),
    ],
)
def test_percentile_is_nearest_rank(values: list[float], share: float, expected: float) -> None:
    assert percentile(values, share) == expected


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="percentile of no values"):
        percentile([], 0.95)


def test_median_p95_formats_and_dashes() -> None:
    assert median_p95([1.0, 2.0, 3.0, 4.0]) == ("2.5", "4.0")
    assert median_p95([]) == ("-", "-")


def test_markdown_table() -> None:
    assert markdown_table(["a", "b"], [[1, "x"]]) == ["| a | b |", "|---|---|", "| 1 | x |"]
