"""The benchmark reports' shared arithmetic."""

from pathlib import Path

import pytest

from bench.gather import gather, measured_on
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


def test_gather_lists_missing_reports_and_demotes_headings(tmp_path: Path) -> None:
    (tmp_path / "server.md").write_text("# STUN Binding throughput\n\nMeasured 2026-11-20 on x.\n\n## detail\n")
    text = "\n".join(gather(tmp_path))
    assert "| [STUN Binding throughput against coturn, per core](#server) | `just bench-server` | 2026-11-20 |" in text
    assert (
        "| [relay throughput through one server core, against coturn](#relay) | `just bench-relay` | not run |" in text
    )
    assert "\n## STUN Binding throughput\n" in text
    assert "\n### detail\n" in text
    assert "Not run: `just bench-relay` writes `bench/relay.md`." in text


def test_measured_on_reads_the_report_date() -> None:
    assert measured_on("# x\n\nMeasured 2026-01-02 on vm") == "2026-01-02"
    assert measured_on("# x\n\nno date") == "?"
