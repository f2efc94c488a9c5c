"""A story (punch.diagram.story) as a Mermaid ``sequenceDiagram``: GitHub renders it in a ```` ```mermaid ````
block, and so does any Mermaid renderer (mermaid.js; ``mmdc`` for SVG or PNG).

Each participant is a column with its name and addresses; each arrow says when it left (milliseconds since the
first datagram), what it carried, where it went and how it ended; notes stand over the peer that logged them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from punch.diagram.cast import host_of
from punch.diagram.story import Arrow, Story

BREAK = "<br/>"
TIMES, TO = "\N{MULTIPLICATION SIGN}", "\N{EN DASH}"  # in "1.0-9.0 ms check x5", typeset
# Mermaid's entity codes for the characters that would end a statement or open markup in a label
_ESCAPES = str.maketrans({"#": "#35;", ";": "#59;", "<": "#lt;", ">": "#gt;", "\n": " ", "\r": " "})


def escape(text: str) -> str:
    """``text`` safe in a Mermaid label; its ``<br/>`` stay line breaks."""
    return BREAK.join(part.translate(_ESCAPES) for part in text.split(BREAK))


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def arrow_text(arrow: Arrow, start: float) -> str:
    """``12.3 ms check, TTL 2 → 192.0.2.14:4000, dies here``; a run of 5 arrows: ``1.0-9.0 ms ... x5`` (an en dash
    and a multiplication sign)."""
    when = f"{_ms(arrow.t - start)}"
    if arrow.count > 1:
        when += f"{TO}{_ms(arrow.until - start)}"
    where = ""
    remotes = list(dict.fromkeys(arrow.remotes))
    if len(remotes) == 1:
        where = f" → {remotes[0]}"
    elif remotes:
        ips = {host_of(r) for r in remotes}
        where = f" → {len(remotes)} ports of {ips.pop()}" if len(ips) == 1 else f" → {len(remotes)} addresses"
    count = f" {TIMES}{arrow.count}" if arrow.count > 1 else ""
    outcome = f", {arrow.outcome}" if arrow.outcome else ""
    return f"{when} ms {arrow.words}{where}{count}{outcome}"


def render(story: Story, names: Mapping[str, str] | None = None, sources: Sequence[str] = ()) -> str:
    """The Mermaid text; ``names`` renames participants (punch.diagram.cast.Cast.columns), ``sources`` (the trace
    files) are named in a comment."""
    columns, column = story.cast.columns(story.used(), names or {})
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(story.start)) + f".{int(story.start * 1000) % 1000:03d}"
    lines = [
        "sequenceDiagram",
        f"    %% punch diagram of {', '.join(sources) or 'traces'}: ms since the first datagram, {started} UTC",
    ]
    lines += [f"    participant {ident} as {escape(BREAK.join(label))}" for ident, label in columns]
    for step in story.steps:
        if isinstance(step, Arrow):
            lines.append(f"    {column[step.frm]}{step.line}{column[step.to]}: {escape(arrow_text(step, story.start))}")
        else:
            lines.append(f"    Note over {column[step.over]}: {escape(step.words)}")
    return "\n".join(lines) + "\n"


def markdown(diagram: str) -> str:
    """The diagram in a fenced ```` ```mermaid ```` block, as GitHub renders it."""
    return f"```mermaid\n{diagram}```\n"
