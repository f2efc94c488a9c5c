"""The connectivity matrix as a picture: ``matrix.html``, one self-contained page (inline CSS, no script, nothing
fetched) written beside matrix.md and matrix.json from matrix.json's cells (netns/matrix/report.py; again from an
existing file: ``python -m netns matrix-html bench/matrix.json``).

A coloured grid per router firewall kind (rows: peer10's NAT preset, columns: peer14's), and one for the same-NAT
and CGNAT cells. Each cell's colour is the path most trials took: direct (a LAN path too), predicted (port
prediction), mapped (a router's mapped port), relay, or failed (no trial succeeded); it shows the trials that
succeeded, the median punch time, and on hover (or keyboard focus, or as the page's #fragment) what RFC 4787 theory
allows there. A cell where some trials failed, or took another path, is outlined.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from netns.errors import LabError
from netns.matrix.cells import PAIR_PRESETS

KINDS = {  # kind -> (what it means, background colour, text colour)
    "direct": ("direct: the peers' own packets, through both NATs (or over their LAN)", "#1a7f37", "#ffffff"),
    "predicted": ("predicted: a direct path found by port prediction", "#0969da", "#ffffff"),
    "mapped": ("mapped: a direct path through a port a router maps (PCP, NAT-PMP, UPnP IGD)", "#8250df", "#ffffff"),
    "relay": ("relay: through the server", "#bc4c00", "#ffffff"),
    "failed": ("failed: no trial succeeded", "#cf222e", "#ffffff"),
}
_PATH_KINDS = {
    "direct": "direct",
    "direct-lan": "direct",
    "predicted": "predicted",
    "mapped": "mapped",
    "relay": "relay",
}

_STYLE = """
body { font: 14px/1.45 -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; margin: 24px; color: #1f2328; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; }
table.grid { border-collapse: separate; border-spacing: 4px; }
th { font-weight: 600; padding: 4px 8px; text-align: center; }
th.row { text-align: right; }
td.cell { width: 132px; height: 62px; border-radius: 6px; text-align: center; vertical-align: middle;
  position: relative; cursor: help; }
td.cell .path { font-weight: 700; } td.cell .trials, td.cell .ms { font-size: 12px; }
td.cell.mixed { box-shadow: inset 0 0 0 3px #ffd33d; }
td.cell .why { display: none; position: absolute; z-index: 2; left: 50%; top: 100%; margin-top: 4px; width: 340px;
  transform: translateX(-50%); background: #24292f; color: #ffffff; padding: 8px 10px; border-radius: 6px;
  text-align: left; font-size: 12px; font-weight: 400; }
td.cell:hover .why, td.cell:focus .why, td.cell:target .why { display: block; }
td.name { text-align: left; padding: 4px 8px; }
.legend span { display: inline-block; padding: 2px 10px; border-radius: 4px; margin: 0 6px 6px 0; }
"""


def kind(cell: Mapping[str, Any]) -> str:
    """direct, predicted, mapped, relay or failed: the path most trials of a matrix.json cell took."""
    paths: Mapping[str, int] = cell.get("paths") or {}
    if cell.get("error") or not cell.get("successes") or not paths:
        return "failed"
    most = max(paths.items(), key=lambda item: item[1])[0]
    return _PATH_KINDS.get(most, "direct")


def _td(cell: Mapping[str, Any], ident: str) -> str:
    paths: Mapping[str, int] = cell.get("paths") or {}
    what = kind(cell)
    main = max(paths.items(), key=lambda item: item[1])[0] if paths and what != "failed" else "failed"
    mixed = what != "failed" and (cell.get("successes") != cell.get("trials") or len(paths) > 1)
    others = ", ".join(f"{n} {path}" for path, n in paths.items() if path != main)
    median = cell.get("median_ms")
    why = cell.get("theory") or "no theory recorded"
    if cell.get("error"):
        why += f" | could not run: {cell['error']}"
    elif cell.get("failures"):
        why += f" | first failure: {cell['failures'][0]}"
    _, background, colour = KINDS[what]
    lines = [
        f'<div class="path">{html.escape(main)}</div>',
        f'<div class="trials">{cell.get("successes", 0)}/{cell.get("trials", 0)}'
        + (f" ({html.escape(others)})" if others else "")
        + "</div>",
        f'<div class="ms">{median:.0f} ms</div>' if isinstance(median, (int, float)) else '<div class="ms">-</div>',
        f'<div class="why">{html.escape(str(cell.get("cell", "")))}: {html.escape(why)}</div>',
    ]
    classes = f"cell {what}" + (" mixed" if mixed else "")
    return (
        f'<td id="{ident}" class="{classes}" data-kind="{what}" tabindex="0" '
        f'style="background: {background}; color: {colour}">' + "".join(lines) + "</td>"
    )


def _pair_grid(cells: Sequence[Mapping[str, Any]], firewall: str, start: int) -> tuple[list[str], int]:
    """The grid's lines, its cells numbered on from ``start`` (their ids), and the last number."""
    by_pair = {(c["nat"].get("nat10"), c["nat"].get("nat14")): c for c in cells}
    presets = [p for p in PAIR_PRESETS if any(p in pair for pair in by_pair)]
    presets += sorted({p for pair in by_pair for p in pair if p not in presets})
    lines = [
        f"<h2>Router firewall <code>{html.escape(firewall)}</code></h2>",
        f'<table class="grid" data-firewall="{html.escape(firewall)}">',
        "<tr><th>nat10 \\ nat14</th>" + "".join(f"<th>{html.escape(p)}</th>" for p in presets) + "</tr>",
    ]
    number = start
    for a in presets:
        row = [f'<th class="row">{html.escape(a)}</th>']
        for b in presets:
            cell = by_pair.get((a, b))
            if cell is None:
                row.append("<td></td>")
            else:
                number += 1
                row.append(_td(cell, f"cell-{number}"))
        lines.append("<tr>" + "".join(row) + "</tr>")
    return [*lines, "</table>"], number


def page(cells: Sequence[Mapping[str, Any]], source: str = "matrix.json") -> str:
    """The page for the cells of a matrix.json (``source`` names it)."""
    pairs = [c for c in cells if c.get("group") == "pairs"]
    tables = [
        ("Same NAT and double NAT (CGNAT)", [c for c in cells if c.get("group") in ("same-nat", "cgnat")]),
        ("Networks where traversal fails in the wild", [c for c in cells if c.get("group") == "networks"]),
    ]
    trials = sorted({int(c.get("trials", 0)) for c in cells})
    legend = "".join(
        f'<span style="background: {background}; color: {colour}">{html.escape(text)}</span>'
        for text, background, colour in KINDS.values()
    )
    body = [
        "<h1>Connectivity matrix through real kernel NAT</h1>",
        f"<p>From <code>{html.escape(source)}</code>: {len(cells)} cells, "
        f"{' or '.join(map(str, trials)) or 'no'} trial(s) each, every cell a lab of its own "
        "(<code>just lab-matrix</code>; the machine and date are in matrix.md). Rows are peer10's NAT (nat10), "
        "columns peer14's NAT (nat14); a cell shows the path most trials took, the trials that succeeded, and the "
        "median punch time. Hover over a cell (or focus it) for what RFC 4787 theory allows there; an outlined "
        "cell had trials that failed or took another path.</p>",
        f'<p class="legend">{legend}</p>',
    ]
    number = 0
    for firewall in dict.fromkeys(str(c.get("firewall")) for c in pairs):
        grid, number = _pair_grid([c for c in pairs if str(c.get("firewall")) == firewall], firewall, number)
        body += grid
    for title, others in tables:
        if not others:
            continue
        body += [
            f"<h2>{html.escape(title)}</h2>",
            '<table class="grid others">',
            "<tr><th>cell</th><th>peers</th><th>result</th></tr>",
        ]
        for cell in others:
            number += 1
            peers = " ↔ ".join(str(p) for p in cell.get("peers", ()))
            body.append(
                f'<tr><td class="name">{html.escape(str(cell.get("cell", "")))}</td>'
                f'<td class="name">{html.escape(peers)}</td>{_td(cell, f"cell-{number}")}</tr>'
            )
        body.append("</table>")
    head = (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        "<title>Connectivity matrix through real kernel NAT</title>\n"
        f"<style>{_STYLE}</style>\n</head>\n"
    )
    return head + "<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"


def read(path: Path) -> list[dict[str, Any]]:
    """The cells of a matrix.json; LabError naming the file and the fix if it is not one."""
    fix = "give a matrix.json written by `python -m netns matrix`"
    try:
        cells = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise LabError(f"{path}: cannot read it as JSON ({getattr(error, 'strerror', None) or error}); {fix}") from None
    if not isinstance(cells, list) or not all(isinstance(c, dict) and isinstance(c.get("nat"), dict) for c in cells):
        raise LabError(f"{path}: not a list of matrix cells; {fix}")
    return cells


def write(cells: Sequence[Mapping[str, Any]], path: Path, source: str = "matrix.json") -> Path:
    """Write the page to ``path``; its path."""
    path.write_text(page(cells, source), encoding="utf-8")
    return path
