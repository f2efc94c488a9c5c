"""Link impairments of a network in the topology: delay, jitter, loss, duplication and rate (``impair:``).

A network's ``impair:`` mapping (or ``up --impair NETWORK:KEY=VALUE,...``) is applied at every member's
interface on that network, so each direction of the link is impaired once: a delay of 50ms adds 50ms one way
and 100ms to a round trip. Which kernel mechanism builds each one: netns/rules/impair.py.

This module is pure: the ``Impairment`` model, parsing with errors that name the YAML path, and descriptions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

KEYS = ("delay", "jitter", "loss", "duplicate", "rate")
PERMILLE = 1000  # loss and duplicate resolution: 0.1%
DELAY_MAX_MS = 60_000.0
RATE_MIN_BIT = 8_000
RATE_MAX_BIT = 10_000_000_000

_TIME_RE = re.compile(r"^(\d+(?:\.\d+)?)(us|ms|s)$")
_PERCENT_RE = re.compile(r"^(\d+(?:\.\d+)?)%$")
_RATE_RE = re.compile(r"^(\d+(?:\.\d+)?)(bit|kbit|mbit|gbit)$")
_BARE_RE = re.compile(r"^-?\d+(?:\.\d+)?$")
_TIME_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
_RATE_UNITS = {"bit": 1, "kbit": 1_000, "mbit": 1_000_000, "gbit": 1_000_000_000}

Report = Callable[[str, str], None]  # (yaml path, "what is wrong; the fix")


@dataclass(frozen=True, slots=True)
class Impairment:
    """Impairments of one network. ``loss``/``duplicate`` are in tenths of a percent; ``rate`` in bit/s."""

    delay_ms: float | None = None
    jitter_ms: float | None = None
    loss: int | None = None
    duplicate: int | None = None
    rate: int | None = None

    def as_dict(self) -> dict[str, str]:
        """The canonical YAML form (``{"delay": "50ms", "loss": "20%"}``); ``parse`` reads it back."""
        result = {}
        if self.delay_ms is not None:
            result["delay"] = _ms(self.delay_ms)
        if self.jitter_ms is not None:
            result["jitter"] = _ms(self.jitter_ms)
        if self.loss is not None:
            result["loss"] = _percent(self.loss)
        if self.duplicate is not None:
            result["duplicate"] = _percent(self.duplicate)
        if self.rate is not None:
            result["rate"] = _rate(self.rate)
        return result

    def parts(self) -> list[tuple[str, str]]:
        """``(kind, text)`` for each impairment: ``("delay", "delay 50ms ±10ms")``, ``("loss", "loss 20%")``."""
        d = self.as_dict()
        result = []
        if "delay" in d:
            result.append(("delay", f"delay {d['delay']}" + (f" ±{d['jitter']}" if "jitter" in d else "")))
        result += [(key, f"{key} {d[key]}") for key in ("loss", "duplicate", "rate") if key in d]
        return result

    def describe(self) -> str:
        return ", ".join(text for _, text in self.parts()) or "none"


def _ms(value: float) -> str:
    return f"{value / 1000:g}s" if value >= 1000 and value % 1000 == 0 else f"{value:g}ms"


def _percent(permille: int) -> str:
    return f"{permille / 10:g}%"


def _rate(bits: int) -> str:
    for unit in ("gbit", "mbit", "kbit"):
        if bits % _RATE_UNITS[unit] == 0:
            return f"{bits // _RATE_UNITS[unit]}{unit}"
    return f"{bits}bit"


def parse_time(value: Any) -> tuple[float | None, str]:
    """Milliseconds from ``50ms``, ``1s``, ``500us``; or (None, "what is wrong; the fix")."""
    text = str(value).strip()
    if isinstance(value, bool) or _BARE_RE.fullmatch(text):
        return None, f"{text} has no unit; write it like 50ms or 1s"
    match = _TIME_RE.fullmatch(text)
    if not match:
        return None, f"{text} is not a duration; write it like 50ms or 1s"
    ms = float(match[1]) * _TIME_UNITS[match[2]]
    if ms > DELAY_MAX_MS:
        return None, f"{text} is more than {_ms(DELAY_MAX_MS)}; give at most {_ms(DELAY_MAX_MS)}"
    return round(ms, 3), ""


def parse_percent(value: Any) -> tuple[int | None, str]:
    """Tenths of a percent from ``20%`` or ``0.5%`` (0% to 100%); or (None, "what is wrong; the fix")."""
    text = str(value).strip()
    if isinstance(value, bool) or _BARE_RE.fullmatch(text):
        return None, f"{text} has no percent sign; write a percentage from 0% to 100% like 20%"
    match = _PERCENT_RE.fullmatch(text)
    if not match:
        return None, f"{text} is not a percentage; write one from 0% to 100% like 20% or 0.5%"
    tenths = float(match[1]) * 10
    if tenths > PERMILLE:
        return None, f"{text} is more than 100%; give a percentage from 0% to 100%"
    if abs(tenths - round(tenths)) > 1e-9:
        return None, f"{text} is finer than the 0.1% resolution; round it to {round(tenths) / 10:g}%"
    return round(tenths), ""


def parse_rate(value: Any) -> tuple[int | None, str]:
    """Bits per second from ``1mbit``, ``500kbit``, ``10mbit``; or (None, "what is wrong; the fix")."""
    text = str(value).strip()
    if isinstance(value, bool) or _BARE_RE.fullmatch(text):
        return None, f"{text} has no unit; write it in bits per second like 1mbit or 500kbit"
    if text.lower().endswith("bps"):
        return None, f"{text} would be bytes per second in tc; write bits per second like 1mbit or 500kbit"
    match = _RATE_RE.fullmatch(text)
    if not match:
        return None, f"{text} is not a rate; write it in bits per second like 1mbit or 500kbit"
    bits = round(float(match[1]) * _RATE_UNITS[match[2]])
    if not RATE_MIN_BIT <= bits <= RATE_MAX_BIT:
        return None, f"{text} is outside {_rate(RATE_MIN_BIT)} to {_rate(RATE_MAX_BIT)}; give a rate in that range"
    return bits, ""


def parse(value: Any, path: str, report: Report) -> Impairment | None:
    """Check an ``impair:`` mapping; report every problem as ``(path, message)``; None if there was one."""
    if not isinstance(value, dict):
        report(path, f"must be a mapping of {', '.join(KEYS)}, not {type(value).__name__}")
        return None
    ok = True
    for key in value:
        if key not in KEYS:
            report(f"{path}.{key}", f"unknown key; allowed keys are {', '.join(KEYS)}")
            ok = False
    if not value:
        report(path, f"empty; give at least one of {', '.join(KEYS)}, or remove impair")
        return None
    found: dict[str, Any] = {}
    parsers: dict[str, Callable[[Any], tuple[Any, str]]] = {
        "delay": parse_time,
        "jitter": parse_time,
        "loss": parse_percent,
        "duplicate": parse_percent,
        "rate": parse_rate,
    }
    for key, parser in parsers.items():
        if key not in value:
            continue
        parsed, problem = parser(value[key])
        if problem:
            report(f"{path}.{key}", problem)
            ok = False
        found[key] = parsed
    if "jitter" in value and "delay" not in value:
        report(
            f"{path}.jitter",
            "jitter varies the delay around its mean, so it needs a delay; add delay (e.g. 50ms) or remove jitter",
        )
        ok = False
    if not ok:
        return None
    return Impairment(
        found.get("delay"), found.get("jitter"), found.get("loss"), found.get("duplicate"), found.get("rate")
    )


def parse_override(text: str) -> tuple[str, dict[str, str]] | str:
    """``NETWORK:KEY=VALUE,...`` (the ``--impair`` argument) -> (network, mapping), or a problem message."""
    network, sep, rest = text.partition(":")
    if not sep or not network or not rest:
        return "write it as NETWORK:KEY=VALUE[,KEY=VALUE...], e.g. wan10:delay=50ms,loss=20%"
    mapping: dict[str, str] = {}
    for item in rest.split(","):
        key, eq, value = item.partition("=")
        if not eq or not key.strip() or not value.strip():
            return f"{item!r} is not KEY=VALUE; write it like delay=50ms"
        mapping[key.strip()] = value.strip()
    return network, mapping


def from_dict(data: Mapping[str, Any]) -> Impairment:
    """Read back ``Impairment.as_dict()`` (from the lab's state file); raises ValueError if it does not parse."""
    problems: list[str] = []
    result = parse(dict(data), "impair", lambda path, message: problems.append(f"{path}: {message}"))
    if result is None:
        raise ValueError("; ".join(problems))
    return result
