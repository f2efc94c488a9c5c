"""Sequence diagrams of real punches, from the traces (``--trace``) of a server and its peers: ``punch diagram``.

traces (read and check the files) -> flights (join each send to its receipt) -> cast (who the columns are) ->
story (arrows and notes, in time order) -> mermaid (the text GitHub renders).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from punch.diagram import mermaid
from punch.diagram.story import story
from punch.diagram.traces import TraceError, read_all

__all__ = ["TraceError", "draw"]


def draw(paths: Sequence[Path], names: Mapping[str, str] | None = None) -> str:
    """The Mermaid sequence diagram of the traces in ``paths`` (TraceError if one is not a trace)."""
    return mermaid.render(story(read_all(paths)), names, [path.name for path in paths])
