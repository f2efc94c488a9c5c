"""Headless Chromium for the browser tests and the docs' screenshots, driven from its command line (no driver).

A page here records what it rendered, or the error it hit, as JSON in its own DOM (``<pre id="report">``);
``--dump-dom`` prints the DOM once the page's virtual time budget is spent, and ``--screenshot`` takes its picture.
Debian's ``chromium`` (apt-get install chromium); Mermaid from the npm registry, pinned in package.json and
package-lock.json beside this file (``npm ci --prefix tests/browser``), loaded from node_modules: nothing is
fetched from the network (the browser's name resolution is switched off as well).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MERMAID = HERE / "node_modules" / "mermaid" / "dist" / "mermaid.min.js"
NAMES = ("chromium", "chromium-browser")
BUDGET_MS = 20_000  # virtual time for a page to render
_REPORT = re.compile(r'<pre id="report"[^>]*>(.*?)</pre>', re.DOTALL)


def executable() -> str | None:
    """Chromium's path, or None."""
    return next((found for name in NAMES if (found := shutil.which(name))), None)


def missing() -> str | None:
    """Why the browser tests cannot run here (naming the fix), or None."""
    if executable() is None:
        return "headless Chromium is not installed (apt-get install chromium)"
    if not MERMAID.exists():
        return f"Mermaid is not installed in {HERE / 'node_modules'} (npm ci --prefix tests/browser)"
    return None


class Chromium:
    """One headless Chromium per call, with a fresh profile, no sandbox as root, and nothing that reaches out."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _run(self, page: Path, *flags: str, timeout: float = 120.0) -> str:
        with tempfile.TemporaryDirectory(prefix="punch-chromium-") as profile:
            command = [
                self.path,
                "--headless",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--host-resolver-rules=MAP * ~NOTFOUND",
                f"--user-data-dir={profile}",
                f"--virtual-time-budget={BUDGET_MS}",
                *(["--no-sandbox"] if os.geteuid() == 0 else []),
                *flags,
                page.resolve().as_uri(),
            ]
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"chromium exited {done.returncode}: {done.stderr.strip()[-2000:]}")
        return done.stdout

    def report(self, page: Path, width: int = 1100, height: int = 900) -> dict[str, Any]:
        """What ``page`` recorded in its ``<pre id="report">`` once rendered in a ``width`` x ``height`` window."""
        dom = self._run(page, f"--window-size={width},{height}", "--dump-dom")
        found = _REPORT.search(dom)
        if found is None:
            raise RuntimeError(f"no report in the page's DOM: {dom[:500]}")
        text = html.unescape(found[1])
        try:
            facts: dict[str, Any] = json.loads(text)
        except json.JSONDecodeError:
            raise RuntimeError(f"the page reported no JSON (it did not finish?): {text[:200]!r}") from None
        return facts

    def screenshot(self, page: Path, png: Path, width: int, height: int) -> None:
        """A picture of ``page`` in a window of ``width`` x ``height`` pixels."""
        self._run(page, "--hide-scrollbars", f"--window-size={width},{height}", f"--screenshot={png.resolve()}")


def _script(value: str) -> str:
    """``value`` as a JavaScript string literal that cannot end the <script> it stands in."""
    return json.dumps(value).replace("</", "<\\/")


def mermaid_page(diagram: str, page: Path) -> Path:
    """Write a page that renders ``diagram`` with Mermaid and reports ``error`` (null if none), ``messages`` (each
    arrow's text), ``notes``, ``participants``, and the drawing's ``width`` and ``height``."""
    page.write_text(
        f"""<!doctype html>
<html><head><meta charset="utf-8"><title>punch diagram</title>
<script src="{MERMAID.as_uri()}"></script>
<style>body {{ margin: 16px; background: #ffffff; }} #report {{ display: none; }}</style></head>
<body><div id="diagram"></div><pre id="report">the page's script did not run</pre>
<script>
const report = (facts) => {{ document.getElementById("report").textContent = JSON.stringify(facts); }};
window.addEventListener("error", (event) => report({{error: String(event.message)}}));
(async () => {{
  try {{
    if (typeof mermaid === "undefined") throw new Error("mermaid.min.js did not load");
    mermaid.initialize({{startOnLoad: false, securityLevel: "strict", sequence: {{useMaxWidth: false}}}});
    const {{svg}} = await mermaid.render("sequence", {_script(diagram)});
    const box = document.getElementById("diagram");
    box.innerHTML = svg;
    const drawn = box.querySelector("svg").getBoundingClientRect();
    report({{
      error: null,
      messages: [...box.querySelectorAll(".messageText")].map((text) => text.textContent),
      notes: box.querySelectorAll("rect.note").length,
      participants: box.querySelectorAll(".actor-top").length,
      width: Math.ceil(drawn.width) + 32,
      height: Math.ceil(drawn.height) + 32,
    }});
  }} catch (error) {{
    report({{error: String((error && error.message) || error)}});
  }}
}})();
</script></body></html>
""",
        encoding="utf-8",
    )
    return page


def matrix_page(matrix_html: Path, page: Path, focus: str = "") -> Path:
    """A copy of ``matrix_html`` that reports ``error`` (null if none), ``cells`` (each coloured cell's
    ``data-kind``, its computed background colour and whether its theory text shows on hover), and its ``width``
    and ``height``; ``focus``: the id of a cell to focus (its theory shows, as on hover) for a screenshot."""
    checker = f"""<pre id="report">the checker did not run</pre>
<script>
(() => {{
  const report = (facts) => {{ document.getElementById("report").textContent = JSON.stringify(facts); }};
  const focus = {_script(focus)};
  const check = (attempt) => {{
    try {{
      // A headless window may take a turn to have the focus: look again (virtual time) until the focused cell's
      // style has applied, at most 20 times, then report what shows.
      const target = focus ? document.getElementById(focus) : null;
      if (target && document.activeElement !== target) target.focus({{preventScroll: true}});
      const shown = target ? getComputedStyle(target.querySelector(".why")).display !== "none" : true;
      if (!shown && attempt < 20) {{ setTimeout(() => check(attempt + 1), 50); return; }}
      const cells = [...document.querySelectorAll("td[data-kind]")].map((cell) => {{
        const why = cell.querySelector(".why");
        return {{
          kind: cell.dataset.kind,
          background: getComputedStyle(cell).backgroundColor,
          why: why ? why.textContent : "",
          whyHidden: why ? getComputedStyle(why).display === "none" : true,
        }};
      }});
      document.getElementById("report").style.display = "none";
      const page = document.documentElement;
      report({{error: null, cells, width: page.scrollWidth, height: page.scrollHeight}});
    }} catch (error) {{
      report({{error: String((error && error.message) || error)}});
    }}
  }};
  check(0);
}})();
</script>
"""
    text = matrix_html.read_text(encoding="utf-8")
    if "</body>" not in text:
        raise RuntimeError(f"{matrix_html} has no </body>")
    page.write_text(text.replace("</body>", checker + "</body>", 1), encoding="utf-8")
    return page
