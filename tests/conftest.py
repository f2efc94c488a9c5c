"""What every test shares: punch's per-user files (identity, known peers) live in a directory of the test run's own
(``XDG_CONFIG_HOME``, inherited by every peer the tests start), never in the user's ~/.config."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

_CONFIG = tempfile.mkdtemp(prefix="punch-tests-config-")
os.environ["XDG_CONFIG_HOME"] = _CONFIG
atexit.register(shutil.rmtree, _CONFIG, ignore_errors=True)
