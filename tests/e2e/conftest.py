"""End-to-end fixtures: real network namespaces and the kernel's own NAT, built by ``python -m netns``.

Every test in tests/e2e is skipped, with the reason, unless we are root and ``ip``, ``iptables``,
``iptables-restore`` and ``conntrack`` are installed.

Fixtures
--------
The handles live in :mod:`netns.testing` (import ``Lab``, ``LabFactory``, ``run_cli``, ``unique_name``,
``namespaces_of`` from there for annotations and helpers).

``lab`` -> :class:`Lab`
    A lab brought up (through the CLI, ``python -m netns up``) from the packaged default topology under a
    unique name (``t`` + 6 random hex digits, so labs of parallel or crashed runs never collide), and
    always torn down afterwards with ``python -m netns down``; teardown asserts that no namespace with the
    lab's prefix and no state dir remain. Routers use ``firewall: home`` unless parametrized indirectly::

        @pytest.mark.parametrize("lab", ["home", "none"], indirect=True)
        def test_x(lab: Lab) -> None: ...

    ``request.param`` is a firewall kind ("home" or "none"), or a dict of :meth:`LabFactory.__call__`
    keyword arguments, e.g. ``{"firewall": "none", "topology": path}`` or ``{"firewall": "home", "nat":
    "full-cone"}`` (``nat``: an RFC 4787 preset for every router, ``up --nat``).

``lab_factory`` -> :class:`LabFactory`
    ``lab_factory(firewall="home", topology=None, nat=None) -> Lab`` brings up one more lab per call (for several
    labs side by side, or a custom topology); every lab it made is torn down and checked at the end.

``netns_cli`` -> ``(*args) -> CompletedProcess[str]``: runs ``python -m netns ARGS`` (never raises).

:class:`Lab`
    ``.name`` (str), ``.logdir`` (Path, ``/run/netns-lab/NAME``), ``.namespace(node) -> str``,
    ``.exec(node, *cmd, timeout=30.0, input=None, check=False) -> CompletedProcess[str]`` (runs ``cmd``
    inside the node's namespace, output captured as text), ``.spawn(node, *cmd, **popen_kwargs) -> Popen``
    (a long-running process in the node; stdout/stderr are pipes unless overridden; ``down`` kills it,
    teardown reaps it), ``.cli(*args) -> CompletedProcess[str]`` (``python -m netns ARGS``, as given),
    ``.down()`` (``python -m netns down --name NAME``, asserted to succeed; idempotent),
    ``.assert_gone()`` (no namespace with the lab's prefix and no state dir remain).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from netns.testing import Lab, LabFactory, run_cli

TOOLS = ("ip", "iptables", "iptables-restore", "conntrack")


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "e2e lab tests need root (network namespaces, veths, iptables)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"e2e lab tests need {', '.join(missing)} installed"
    return None


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM (a CI runner's timeout, `kill`) acts as Ctrl-C does: pytest unwinds and every lab fixture's
    teardown brings its lab down, instead of the process dying with namespaces left behind."""
    signal.signal(signal.SIGTERM, _interrupted)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _skip_reason()
    if reason is None:
        return
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def lab_factory() -> Iterator[LabFactory]:
    factory = LabFactory()
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def lab(request: pytest.FixtureRequest, lab_factory: LabFactory) -> Lab:
    param = getattr(request, "param", "home")
    kwargs: dict[str, Any] = param if isinstance(param, dict) else {"firewall": param}
    return lab_factory(**kwargs)


@pytest.fixture
def netns_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_cli
