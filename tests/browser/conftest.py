"""Browser fixtures: headless Chromium with Mermaid from tests/browser/node_modules (tests/browser/chromium.py).

Every test here is skipped, with the fix in the reason, unless Debian's ``chromium`` is installed (apt-get install
chromium) and Mermaid is (``npm ci --prefix tests/browser``); with PUNCH_REQUIRE_BROWSER=1 (.ci/run) they fail
instead.

``chromium`` -> :class:`tests.browser.chromium.Chromium` (``.report(page)``, ``.screenshot(page, png, w, h)``)
"""

from __future__ import annotations

import os

import pytest

from tests.browser.chromium import Chromium, executable, missing


@pytest.fixture(scope="session")
def chromium() -> Chromium:
    reason = missing()
    if reason is not None:
        if os.environ.get("PUNCH_REQUIRE_BROWSER") == "1":
            pytest.fail(f"PUNCH_REQUIRE_BROWSER=1, but {reason}")
        pytest.skip(reason)
    path = executable()
    assert path is not None
    return Chromium(path)
