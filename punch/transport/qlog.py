"""--qlog: each QUIC connection's qlog (aioquic's JSON qlog: every packet, frame, loss and timer; qvis draws it) in a
directory, written when the link ends.

aioquic's own QuicFileLogger writes a trace only when the connection reaches its end (after the closing period of
three PTOs, RFC 9000 §10.2), which a peer that exits at once never waits for, and names the file by the connection's
first Destination Connection ID alone, which the client and the server share. Here the link ends the trace itself,
and the file is named ``ODCID-client.qlog`` or ``ODCID-server.qlog``, so two peers may share one directory.
"""

from __future__ import annotations

import json
from pathlib import Path

from aioquic.quic.logger import QLOG_VERSION, QuicLogger, QuicLoggerTrace


class QlogDirectory(QuicLogger):
    """A QuicLogger that writes each trace into ``directory`` when it ends, or at :meth:`flush`."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self._directory = directory

    def end_trace(self, trace: QuicLoggerTrace) -> None:
        """Write ``trace``; once only (aioquic ends it again at the end of the closing period, after a flush)."""
        if trace not in self._traces:
            return
        self._write(trace)
        self._traces.remove(trace)

    def flush(self) -> None:
        """Write the traces not ended yet (the link ended before its connection did)."""
        for trace in list(self._traces):
            self.end_trace(trace)

    def _write(self, trace: QuicLoggerTrace) -> None:
        content = trace.to_dict()
        role = content["vantage_point"]["type"]
        path = self._directory / f"{content['common_fields']['ODCID']}-{role}.qlog"
        document = {"qlog_format": "JSON", "qlog_version": QLOG_VERSION, "traces": [content]}
        path.write_text(json.dumps(document), encoding="utf-8")
