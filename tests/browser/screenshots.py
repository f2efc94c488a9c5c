"""The screenshots in docs/img/, taken in headless Chromium as the browser tests render the pictures:
`just docs-screenshots` (needs chromium and `npm ci --prefix tests/browser`).

    docs/img/sequence-early-checks.png   docs/diagrams/early-checks.mmd, rendered by Mermaid
    docs/img/matrix.png                  bench/matrix.html, one cell focused to show its theory

Not a test module. Run it after `just docs-diagrams` or a new matrix.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tests.browser.chromium import Chromium, executable, matrix_page, mermaid_page, missing

ROOT = Path(__file__).resolve().parent.parent.parent
DIAGRAM = ROOT / "docs" / "diagrams" / "early-checks.mmd"
MATRIX = ROOT / "bench" / "matrix.html"
FOCUS = "cell-4"  # full-cone / symmetric under the home firewall: a predicted cell with a long theory
MAX_HEIGHT = 16_000  # pixels; Chromium's screenshots stop somewhere above


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.browser.screenshots", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "img", help="where the PNGs go (docs/img)")
    args = parser.parse_args()
    reason = missing()
    path = executable()
    if reason is not None or path is None:
        print(f"screenshots: {reason}", file=sys.stderr)
        return 1
    chromium = Chromium(path)
    args.output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="punch-screenshots-") as scratch:
        pages = Path(scratch)
        shots = (
            (mermaid_page(DIAGRAM.read_text(encoding="utf-8"), pages / "diagram.html"), "sequence-early-checks.png"),
            (matrix_page(MATRIX, pages / "matrix.html", focus=FOCUS), "matrix.png"),
        )
        for page, name in shots:
            report = chromium.report(page)
            if report.get("error") is not None:
                print(f"screenshots: {page.name} did not render: {report['error']}", file=sys.stderr)
                return 1
            png = args.output / name
            chromium.screenshot(page, png, int(report["width"]) + 16, min(int(report["height"]) + 16, MAX_HEIGHT))
            print(f"wrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
