"""The one base error of the netns lab; every error the lab raises on purpose derives from it.

Messages are one line that name what went wrong and the fix, because the CLI prints them as they are.
"""

from __future__ import annotations


class LabError(Exception):
    """Base of every error raised on purpose by the lab."""


class TopologyError(LabError):
    """A topology file with problems; ``problems`` holds every one, each prefixed with its YAML path."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


class KernelError(LabError):
    """The kernel (netlink, a namespace file, a helper like iptables-restore) refused a request."""


class ShardError(LabError):
    """Shards of the connectivity matrix that cannot be merged into one (netns/matrix/merge.py): a usage error."""
