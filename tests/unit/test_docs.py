"""README.md and docs/ stay true to the code: generated regions fresh, links and anchors resolving, every name of
code a page mentions importable or present, and the Quick start in the shape .ci/run runs (no root, no sockets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.docgen import layout, links, references, regions
from tools.docgen.__main__ import ROOT, pages, stale
from tools.docgen.regions import RegionError

pytestmark = pytest.mark.unit

CHECKED = [*pages(ROOT), ROOT / "CHANGELOG.md"]


def test_every_generated_region_is_fresh() -> None:
    assert stale(ROOT) == []


@pytest.mark.parametrize("page", CHECKED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_and_anchor_resolves(page: Path) -> None:
    assert links.broken(page, ROOT) == []


@pytest.mark.parametrize("page", CHECKED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_name_of_code_on_the_page_exists(page: Path) -> None:
    assert references.problems(page, ROOT) == []


def test_the_layout_names_every_module_and_no_other() -> None:
    page = (ROOT / "docs" / "layout.md").read_text(encoding="utf-8")
    named = {
        target.removeprefix("../")
        for target in links.links(ROOT / "docs" / "layout.md")
        if target.endswith(layout.SOURCES)
    }
    assert named == set(layout.modules(ROOT))
    assert regions.begin("layout") in page


def test_the_quick_start_holds_the_two_blocks_ci_runs() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    fences = [line for line in section.splitlines() if line.startswith("```")]
    assert fences == ["```sh", "```", "```sh", "```"]
    assert "just lab-demo" in section.split("```")[1]
    assert "just test" in section.split("```")[3]


# -- the machinery itself, on pages made up here ---------------------------------------------------------------


def test_a_region_is_filled_and_the_rest_of_the_page_kept() -> None:
    text = f"before\n{regions.begin('x:y')}\nold\n{regions.end('x:y')}\nafter\n"
    filled = regions.fill(text, "page.md", lambda name: f"new for {name}\n")
    assert filled == f"before\n{regions.begin('x:y')}\nnew for x:y\n\n{regions.end('x:y')}\nafter\n"


def test_a_region_without_its_end_is_refused_with_the_fix() -> None:
    with pytest.raises(RegionError) as error:
        regions.find(f"{regions.begin('x')}\nbody\n", "page.md")
    assert str(error.value) == "page.md: region x has no `<!-- END GENERATED: x -->` line; add it after the region"


def test_headings_give_githubs_anchors() -> None:
    assert links.slug("1. Register, then `Connect`: the server's part") == "1-register-then-connect-the-servers-part"


def test_a_link_to_a_missing_file_or_anchor_is_found(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# A heading\n\n## A heading\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#a-heading-1) [no file](gone.md) [no anchor](other.md#nowhere) `[not a link](gone.md)`\n"
    )
    assert links.broken(page, tmp_path) == [
        "page.md: link to gone.md points nowhere",
        "page.md: link to other.md#nowhere: no heading or anchor #nowhere there",
    ]


def test_names_of_code_that_are_gone_are_found(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "`punch.peer.client.RendezvousClient.register` `punch.peer.client.RendezvousClient.gone` "
        "`punch.nowhere.thing` `test_nowhere_at_all.py` `test_no_such_test`\n"
    )
    (tmp_path / "tests").mkdir()
    assert references.problems(page, tmp_path) == [
        "page.md: `punch.nowhere.thing`: punch has no nowhere",
        "page.md: `punch.peer.client.RendezvousClient.gone`: punch.peer.client.RendezvousClient has no gone",
        "page.md: `test_no_such_test` is no test under tests/",
        "page.md: `test_nowhere_at_all.py` is no file under tests/",
    ]


def test_a_name_the_code_has_and_the_generator_does_not_describe_stops_it() -> None:
    with pytest.raises(RegionError) as error:
        regions.check_described("gen", "the codec's attributes", ["PEER-ID", "NEW-ONE"], {"PEER-ID": "", "OLD": ""})
    assert str(error.value) == (
        "gen: the codec's attributes and its descriptions differ (undescribed: NEW-ONE; described but gone: OLD); "
        "describe each one there"
    )
