"""matrix.html (netns/matrix/html.py): the colour of a cell, the committed page, and a file that is no matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from netns import cli
from netns.errors import LabError
from netns.matrix import html as matrix_html

pytestmark = pytest.mark.unit

BENCH = Path(__file__).resolve().parents[4] / "bench"


def cell(**fields: Any) -> dict[str, Any]:
    return {"cell": "a / b, firewall home", "nat": {}, "trials": 3, "successes": 3, "error": ""} | fields


@pytest.mark.parametrize(
    ("fields", "kind"),
    [
        ({"paths": {"direct": 3}}, "direct"),
        ({"paths": {"direct-lan": 3}}, "direct"),
        ({"paths": {"predicted": 2, "relay": 1}}, "predicted"),
        ({"paths": {"mapped": 3}}, "mapped"),  # through a router's mapped port: a colour of its own
        ({"paths": {"relay": 3}}, "relay"),
        ({"paths": {}, "successes": 0}, "failed"),
        ({"paths": {"direct": 1}, "error": "lab up failed"}, "failed"),
    ],
)
def test_a_cell_is_coloured_by_the_path_most_trials_took(fields: dict[str, Any], kind: str) -> None:
    assert matrix_html.kind(cell(**fields)) == kind


def test_the_committed_page_is_what_the_committed_matrix_json_makes(tmp_path: Path) -> None:
    """bench/matrix.html is regenerated from bench/matrix.json (`just matrix-html`, or a new `just lab-matrix`)."""
    assert cli.main(["matrix-html", str(BENCH / "matrix.json"), "--output", str(tmp_path / "page.html")]) == 0
    assert (tmp_path / "page.html").read_text() == (BENCH / "matrix.html").read_text()


def test_a_file_that_is_no_matrix_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "matrix.json"
    bogus.write_text('{"cells": []}')
    with pytest.raises(LabError) as refused:
        matrix_html.read(bogus)
    assert str(refused.value) == (
        f"{bogus}: not a list of matrix cells; give a matrix.json written by `python -m netns matrix`"
    )
