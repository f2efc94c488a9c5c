"""Handles for tests that run programs in a lab (used by tests/e2e/conftest.py; no pytest import here).

Everything goes through the lab's CLI (``python -m netns``) and ``ip netns exec``, exactly as a user
would, so a test exercises the real entry points. See tests/e2e/conftest.py for the fixtures.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from netns import naming


def run_cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """``python -m netns ARGS``, output captured as text (never raises on a non-zero exit)."""
    return subprocess.run(
        [sys.executable, "-m", "netns", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def unique_name() -> str:
    """A fresh lab name: ``t`` + 6 random hex digits (matches the lab-name rule, never collides)."""
    return "t" + secrets.token_hex(3)


def namespaces_of(name: str) -> list[str]:
    """Namespaces whose name carries lab ``name``'s prefix, read straight from /run/netns."""
    try:
        entries = os.listdir("/run/netns")
    except FileNotFoundError:
        return []
    return sorted(ns for ns in entries if ns.startswith(naming.prefix(name)))


class Lab:
    """A running lab: ``.name``, ``.logdir``, ``.namespace``, ``.exec``, ``.spawn``, ``.cli``, ``.down``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.logdir = naming.state_dir(name)
        self._children: list[subprocess.Popen[Any]] = []

    def namespace(self, node: str) -> str:
        return naming.namespace(self.name, node)

    def exec(
        self,
        node: str,
        *cmd: str,
        timeout: float = 30.0,
        input: str | None = None,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` inside ``node``'s namespace and wait; output captured as text."""
        return subprocess.run(
            ["ip", "netns", "exec", self.namespace(node), *cmd],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def spawn(self, node: str, *cmd: str, **popen_kwargs: Any) -> subprocess.Popen[Any]:
        """Start a long-running ``cmd`` inside ``node``; stdout/stderr are pipes unless overridden.

        It lives in the namespace, so ``down`` kills it; ``down`` here also reaps it.
        """
        popen_kwargs.setdefault("stdout", subprocess.PIPE)
        popen_kwargs.setdefault("stderr", subprocess.PIPE)
        child: subprocess.Popen[Any] = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace(node), *cmd], **popen_kwargs
        )
        self._children.append(child)
        return child

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``python -m netns ARGS`` (pass ``--name`` yourself)."""
        return run_cli(*args)

    def down(self) -> None:
        """``python -m netns down --name NAME`` (must succeed; idempotent), then reap spawned processes."""
        done = run_cli("down", "--name", self.name)
        if done.returncode != 0:
            raise AssertionError(f"down of lab {self.name} failed: {done.stderr}")
        for child in self._children:
            child.kill()  # normally dead already: this only makes sure communicate() cannot hang
            child.communicate(timeout=10)
        self._children.clear()

    def assert_gone(self) -> None:
        """Fail unless no namespace with the lab's prefix and no state dir remain."""
        left = namespaces_of(self.name)
        if left:
            raise AssertionError(f"lab {self.name} left namespaces behind: {', '.join(left)}")
        if self.logdir.exists():
            raise AssertionError(f"lab {self.name} left {self.logdir} behind")


class LabFactory:
    """``factory(firewall="home", topology=None, nat=None, args=()) -> Lab``: brings up one more lab per call.

    ``firewall`` overrides every router's (``up --firewall``); None keeps what the topology says.

    ``nat`` is a preset name (``up --nat``: full-cone, restricted-cone, port-restricted-cone, symmetric, cgnat,
    none) given to every router; None keeps what the topology says. ``args`` go to ``up`` as they are (e.g.
    ``["--nat", "nat10=symmetric", "--capture", DIR]``).
    """

    def __init__(self) -> None:
        self.labs: list[Lab] = []

    def __call__(
        self,
        firewall: str | None = "home",
        topology: Path | None = None,
        nat: str | None = None,
        args: Sequence[str] = (),
    ) -> Lab:
        lab = Lab(unique_name())
        up = ["up", "--name", lab.name] + (["--firewall", firewall] if firewall is not None else [])
        if topology is not None:
            up += ["--topology", str(topology)]
        if nat is not None:
            up += ["--nat", nat]
        self.labs.append(lab)
        done = run_cli(*up, *args)
        if done.returncode != 0:
            raise AssertionError(f"up of lab {lab.name} failed: {done.stderr}")
        return lab

    def close(self) -> None:
        """Tear down every lab made here (all of them, even if one fails), then check nothing remains."""
        errors = []
        for lab in self.labs:
            try:
                lab.down()
            except AssertionError as exc:
                errors.append(str(exc))
        for lab in self.labs:
            try:
                lab.assert_gone()
            except AssertionError as exc:
                errors.append(str(exc))
        if errors:
            raise AssertionError("; ".join(errors))
